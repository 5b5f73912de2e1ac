// Process exits without polling and without a kernel hook: a pidfd (tied to
// one process, never to a reused pid) becomes readable when its thread group
// has exited. A thread waits on all of them and stamps the wall-clock time as
// it wakes, so the stamp does not wait for the JS event loop. No policy here
// (which processes, what a window is: src/enrich/package-windows.ts).
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>

#include "process_exit.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace {

Napi::Error ErrnoError(Napi::Env env, const std::string &what, int err) {
  const char *name = strerrorname_np(err);
  auto error = Napi::Error::New(env, what + ": " + strerror(err));
  error.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

uint64_t Now(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// pidfdOpen(pid) → fd, or throws (ESRCH: no such process any more).
Napi::Value PidfdOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "pidfdOpen(pid)");
  long fd = syscall(SYS_pidfd_open, info[0].As<Napi::Number>().Int32Value(), 0);
  if (fd < 0) throw ErrnoError(env, "pidfd_open", errno);
  return Napi::Number::New(env, double(fd));
}

// clocks() → the realtime, boottime and monotonic clocks read back to back
// (the tightest of three tries), and the USER_HZ of /proc/<pid>/stat.
Napi::Value Clocks(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t best = UINT64_MAX, real = 0, boot = 0, mono = 0;
  for (int i = 0; i < 3; i++) {
    uint64_t a = Now(CLOCK_MONOTONIC), b = Now(CLOCK_BOOTTIME), r = Now(CLOCK_REALTIME), c = Now(CLOCK_MONOTONIC);
    if (c - a < best) best = c - a, real = r, boot = b, mono = a + (c - a) / 2;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("realtimeNs", Napi::BigInt::New(env, real));
  o.Set("boottimeNs", Napi::BigInt::New(env, boot));
  o.Set("monotonicNs", Napi::BigInt::New(env, mono));
  o.Set("clkTck", Napi::Number::New(env, double(sysconf(_SC_CLK_TCK))));
  return o;
}

struct Exited {
  uint32_t token;
  uint64_t realtime_ns;
};

// What the waiting thread and the JS object share. The thread is never
// joined: at teardown Node may finalize the object while it holds the
// thread-safe function's lock, which a joined thread could be waiting for.
// The last owner (the thread, once stopped) closes the fds.
struct Shared {
  std::mutex mu;
  std::unordered_map<uint32_t, int> fds;
  int ep = -1, stop_fd = -1;
  bool stopped = false;
  Napi::ThreadSafeFunction tsfn;

  ~Shared() {
    for (auto &kv : fds) close(kv.second);
    if (ep >= 0) close(ep);
    if (stop_fd >= 0) close(stop_fd);
  }

  bool Forget(uint32_t token) {  // with mu held
    auto it = fds.find(token);
    if (it == fds.end()) return false;
    epoll_ctl(ep, EPOLL_CTL_DEL, it->second, nullptr);
    close(it->second);
    fds.erase(it);
    return true;
  }
};

constexpr uint64_t kStopTag = UINT64_MAX;

void Run(std::shared_ptr<Shared> sh) {
  epoll_event evs[32];
  for (bool stop = false; !stop;) {
    int n = epoll_wait(sh->ep, evs, 32, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    uint64_t now = Now(CLOCK_REALTIME);
    for (int i = 0; i < n && !stop; i++) {
      if (evs[i].data.u64 == kStopTag) {
        stop = true;
        break;
      }
      uint32_t token = uint32_t(evs[i].data.u64);
      {
        std::lock_guard<std::mutex> lk(sh->mu);
        if (sh->stopped) {
          stop = true;
          break;
        }
        if (!sh->Forget(token)) continue;  // removed meanwhile
      }
      auto *item = new Exited{token, now};
      auto status = sh->tsfn.NonBlockingCall(item, [](Napi::Env env, Napi::Function cb, Exited *e) {
        cb.Call({Napi::Number::New(env, e->token), Napi::BigInt::New(env, e->realtime_ns)});
        delete e;
      });
      if (status != napi_ok) delete item;
    }
  }
  sh->tsfn.Release();
}

class ExitWatcher : public Napi::ObjectWrap<ExitWatcher> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("ExitWatcher", DefineClass(env, "ExitWatcher",
        {InstanceMethod("add", &ExitWatcher::Add), InstanceMethod("remove", &ExitWatcher::Remove),
         InstanceMethod("close", &ExitWatcher::Close)}));
  }

  // new ExitWatcher(onExit(token, realtimeNs)): onExit runs on the JS thread.
  explicit ExitWatcher(const Napi::CallbackInfo &info) : Napi::ObjectWrap<ExitWatcher>(info), sh_(std::make_shared<Shared>()) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "new ExitWatcher(onExit)");
    sh_->stop_fd = eventfd(0, EFD_CLOEXEC);
    sh_->ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kStopTag;
    if (sh_->stop_fd < 0 || sh_->ep < 0 || epoll_ctl(sh_->ep, EPOLL_CTL_ADD, sh_->stop_fd, &ev)) {
      int err = errno;
      sh_->stopped = true;
      throw ErrnoError(env, "exit watcher", err);
    }
    sh_->tsfn = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "driftwatch-exits", 0, 1);
    sh_->tsfn.Unref(env);  // watching exits never keeps the process alive by itself
    std::thread(Run, sh_).detach();
  }

  ~ExitWatcher() override { Stop(); }

 private:
  // add(pidfd, token): the watcher owns the fd from here on and closes it.
  Napi::Value Add(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "add(pidfd, token)");
    int fd = info[0].As<Napi::Number>().Int32Value();
    uint32_t token = info[1].As<Napi::Number>().Uint32Value();
    std::lock_guard<std::mutex> lk(sh_->mu);
    if (sh_->stopped) {
      close(fd);
      throw Napi::Error::New(env, "exit watcher is closed");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = token;
    bool dup = sh_->fds.count(token) > 0;
    if (dup || epoll_ctl(sh_->ep, EPOLL_CTL_ADD, fd, &ev)) {
      int err = dup ? EEXIST : errno;
      close(fd);
      throw ErrnoError(env, "watch pidfd", err);
    }
    sh_->fds[token] = fd;
    return env.Undefined();
  }

  // remove(token): stop watching (closes the fd); false when it already fired.
  Napi::Value Remove(const Napi::CallbackInfo &info) {
    uint32_t token = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    std::lock_guard<std::mutex> lk(sh_->mu);
    return Napi::Boolean::New(info.Env(), !sh_->stopped && sh_->Forget(token));
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    Stop();
    return info.Env().Undefined();
  }

  void Stop() {
    std::lock_guard<std::mutex> lk(sh_->mu);
    if (sh_->stopped) return;
    sh_->stopped = true;
    uint64_t one = 1;
    if (write(sh_->stop_fd, &one, sizeof(one)) < 0) {}
  }

  std::shared_ptr<Shared> sh_;
};

}  // namespace

void ProcessExitInit(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("clocks", Napi::Function::New(env, Clocks, "clocks"));
  ExitWatcher::Init(env, exports);
}
