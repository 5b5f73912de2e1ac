// ebpf-napi-loader: the N-API face of dw_loader.c. No policy here: options in,
// errors out as JS Errors with an errno code, bytes into a caller's Buffer.
#include <napi.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <linux/types.h>
#include <mutex>
#include <string>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>

#include "dw_loader.h"
#include "events.h"
#include "process_exit.h"
#include "pidfd.h"
#include "heap_trim.h"
#include "safe_open.h"

namespace {

// Waits for the ring buffer to become readable on its own thread and tells
// JS once per arm(). The kernel wakes readers only for the first record
// after the ring was empty, so an idle sensor sleeps here instead of polling.
class RingWatcher {
 public:
  RingWatcher(Napi::Env env, Napi::Function cb, int ring_fd) {
    tsfn_ = Napi::ThreadSafeFunction::New(env, cb, "driftwatch-ring", 0, 1);

    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (stop_fd_ < 0 || ep_ < 0 || Add(ring_fd, 1) || Add(stop_fd_, 2)) {
      err_ = errno ? errno : EINVAL;
      return;
    }
    thread_ = std::thread([this] { Run(); });
  }

  ~RingWatcher() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    uint64_t one = 1;
    if (stop_fd_ >= 0 && write(stop_fd_, &one, sizeof(one)) < 0) {}
    if (thread_.joinable()) thread_.join();
    if (ep_ >= 0) close(ep_);
    if (stop_fd_ >= 0) close(stop_fd_);
    tsfn_.Release();
  }

  int error() const { return err_; }

  void Arm() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      armed_ = true;
    }
    cv_.notify_one();
  }

 private:
  int Add(int fd, uint32_t tag) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = tag;
    return epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }

  void Run() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [this] { return armed_ || stop_; });
        if (stop_) return;
      }
      epoll_event ev{};
      int n = epoll_wait(ep_, &ev, 1, -1);  // level-triggered: records left since the drain count
      if (n < 0 && errno == EINTR) continue;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_ || n < 0) return;
        if (ev.data.u32 != 1) continue;
        armed_ = false;
      }
      tsfn_.NonBlockingCall();
    }
  }

  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false, stop_ = false;
  int ep_ = -1, stop_fd_ = -1, err_ = 0;
};

const char *ErrnoCode(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case E2BIG: return "E2BIG";
    case ENOSPC: return "ENOSPC";
    case ENOTSUP: return "ENOTSUP";
    case ESRCH: return "ESRCH";
    case EBUSY: return "EBUSY";
    default: return "EBPF";
  }
}

[[noreturn]] void ThrowErrno(Napi::Env env, const std::string &what, int err) {
  if (err < 0) err = -err;
  std::string log = dw_last_log();
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  auto error = Napi::Error::New(env, what + ": " + strerror(err));
  error.Set("code", Napi::String::New(env, ErrnoCode(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("libbpfLog", Napi::String::New(env, log));
  throw error;
}

const char *const kStatNames[DW_STAT_MAX] = {"exec_seen",      "exec_emitted",   "exec_filtered",
                                             "ringbuf_full",   "scratch_miss",   "ovl_unresolved",
                                             "path_truncated", "cgroup_v1_fallback",
                                             "mmap_exec_seen", "mmap_exec_emitted",
                                             "ovl_nested",     "ovl_unfollowed",
                                             "prevented",      "denied",         "would_prevent",
                                             "prevent_excepted", "prevent_path_long", "prevent_failed",
                                             "prevent_script_unseen", "script_unseen",
                                             "watch_emitted",  "watch_inline",   "watch_no_operand",
                                             "watch_held",     "watch_hold_failed"};

uint32_t OptU32(const Napi::Object &o, const char *key) {
  return o.Has(key) && o.Get(key).IsNumber() ? o.Get(key).As<Napi::Number>().Uint32Value() : 0;
}

class Loader : public Napi::ObjectWrap<Loader> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "Loader",
        {InstanceMethod("load", &Loader::Load), InstanceMethod("attach", &Loader::Attach),
         InstanceMethod("consume", &Loader::Consume),
         InstanceMethod("watch", &Loader::Watch), InstanceMethod("arm", &Loader::Arm), InstanceMethod("unwatch", &Loader::Unwatch),
         InstanceMethod("programs", &Loader::Programs), InstanceMethod("attachProgram", &Loader::AttachProgram), InstanceMethod("stats", &Loader::Stats),
         InstanceMethod("overlayPath", &Loader::OverlayPath),
         InstanceMethod("programStats", &Loader::ProgramStats), InstanceMethod("benchGenerate", &Loader::BenchGenerate),
         InstanceMethod("mapUpdate", &Loader::MapUpdate), InstanceMethod("mapDelete", &Loader::MapDelete),
         InstanceMethod("mapClear", &Loader::MapClear), InstanceMethod("close", &Loader::Close)});
    exports.Set("Loader", cls);
    Napi::Array names = Napi::Array::New(env, DW_STAT_MAX);
    for (uint32_t i = 0; i < DW_STAT_MAX; i++) names.Set(i, kStatNames[i]);
    exports.Set("statNames", names);
    return exports;
  }

  explicit Loader(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Loader>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    dw_loader_opts opts{};
    opts.emit_all = o.Has("emitAll") && o.Get("emitAll").ToBoolean();
    opts.ignore_tgid = OptU32(o, "ignoreTgid");
    opts.ring_bytes = OptU32(o, "ringBufferBytes");
    opts.bench = o.Has("benchGenerator") && o.Get("benchGenerator").ToBoolean();
    opts.host_mnt_ns = OptU32(o, "hostMntNs");
    opts.host_pid_ns = OptU32(o, "hostPidNs");
    opts.ovl_force_facts = o.Has("ovlForceFacts") && o.Get("ovlForceFacts").ToBoolean();
    if (o.Has("watchPrefilter") && !o.Get("watchPrefilter").IsUndefined()) {
      Napi::Value v = o.Get("watchPrefilter");
      if (!v.IsBuffer() || v.As<Napi::Buffer<uint8_t>>().Length() != sizeof(opts.watch_pre)) {
        Napi::TypeError::New(env, "watchPrefilter: expected a 32-byte Buffer").ThrowAsJavaScriptException();
        return;
      }
      memcpy(opts.watch_pre, v.As<Napi::Buffer<uint8_t>>().Data(), sizeof(opts.watch_pre));
      opts.watch_pre_set = 1;
    }
    std::string hook = o.Has("scriptHook") && o.Get("scriptHook").IsString() ? o.Get("scriptHook").As<Napi::String>().Utf8Value() : "none";
    if (hook == "lsm") opts.script_hook = DW_SCRIPT_HOOK_LSM;
    else if (hook == "fentry") opts.script_hook = DW_SCRIPT_HOOK_FENTRY;
    else if (hook == "none") opts.script_hook = DW_SCRIPT_HOOK_NONE;
    else {
      Napi::TypeError::New(env, "scriptHook: expected lsm, fentry or none").ThrowAsJavaScriptException();
      return;
    }
    std::string mmap = o.Has("mmapHook") && o.Get("mmapHook").IsString() ? o.Get("mmapHook").As<Napi::String>().Utf8Value() : "none";
    if (mmap == "lsm") opts.mmap_hook = DW_MMAP_HOOK_LSM;
    else if (mmap == "fentry") opts.mmap_hook = DW_MMAP_HOOK_FENTRY;
    else if (mmap == "tracepoint") opts.mmap_hook = DW_MMAP_HOOK_TRACEPOINT;
    else if (mmap == "none") opts.mmap_hook = DW_MMAP_HOOK_NONE;
    else {
      Napi::TypeError::New(env, "mmapHook: expected lsm, fentry, tracepoint or none").ThrowAsJavaScriptException();
      return;
    }
    int err = dw_loader_open(&opts, &l_);
    if (err) ThrowErrno(env, "open BPF object", err);
  }

  ~Loader() override {
    delete watcher_;
    dw_loader_close(l_);
  }

 private:
  dw_loader *Open(Napi::Env env) {
    if (!l_) throw Napi::Error::New(env, "loader is closed");
    return l_;
  }

  Napi::Value Load(const Napi::CallbackInfo &info) {
    int err = dw_loader_load(Open(info.Env()));
    if (err) ThrowErrno(info.Env(), "load BPF programs", err);
    return info.Env().Undefined();
  }

  Napi::Value Attach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const char *names[16];
    size_t count = 0;
    int err = dw_loader_attach(Open(env), names, 16, &count);
    if (err) ThrowErrno(env, "attach BPF programs", err);
    Napi::Array arr = Napi::Array::New(env, count);
    for (size_t i = 0; i < count; i++) arr.Set(uint32_t(i), names[i]);
    return arr;
  }

  Napi::Value Programs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const char *names[16];
    size_t count = 0;
    dw_loader_programs(Open(env), names, 16, &count);
    Napi::Array arr = Napi::Array::New(env, count);
    for (size_t i = 0; i < count; i++) arr.Set(uint32_t(i), names[i]);
    return arr;
  }

  Napi::Value AttachProgram(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "attachProgram(name)");
    std::string name = info[0].As<Napi::String>();
    const char *section = nullptr;
    int err = dw_loader_attach_one(Open(env), name.c_str(), &section);
    if (err) ThrowErrno(env, "attach " + name, err);
    return Napi::String::New(env, section);
  }

  // Drains into the caller's Buffer; returns the bytes written.
  Napi::Value Consume(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    dw_loader *l = Open(env);
    if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(env, "consume(buffer)");
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    size_t written = 0;
    int err = dw_loader_consume(l, buf.Data(), buf.Length(), &written);
    if (err == -ENOSPC) throw Napi::RangeError::New(env, "consume buffer is smaller than one record");
    if (err) ThrowErrno(env, "consume ring buffer", err);
    return Napi::Number::New(env, double(written));
  }

  // watch(onReadable): onReadable runs (on the JS thread) once after each
  // arm() when the ring buffer has records. Replaces an earlier watch.
  Napi::Value Watch(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    dw_loader *l = Open(env);
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "watch(onReadable)");
    int fd = dw_loader_ring_fd(l);
    if (fd < 0) ThrowErrno(env, "watch ring buffer (load first)", fd);
    delete watcher_;
    watcher_ = new RingWatcher(env, info[0].As<Napi::Function>(), fd);
    if (int err = watcher_->error()) {
      delete watcher_;
      watcher_ = nullptr;
      ThrowErrno(env, "watch ring buffer", err);
    }
    return env.Undefined();
  }

  Napi::Value Arm(const Napi::CallbackInfo &info) {
    if (!watcher_) throw Napi::Error::New(info.Env(), "arm: not watching");
    watcher_->Arm();
    return info.Env().Undefined();
  }

  Napi::Value Unwatch(const Napi::CallbackInfo &info) {
    delete watcher_;
    watcher_ = nullptr;
    return info.Env().Undefined();
  }

  Napi::Value OverlayPath(const Napi::CallbackInfo &info) {
    return Napi::String::New(info.Env(), dw_loader_overlay_path(Open(info.Env())));
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    dw_loader *l = Open(env);
    uint64_t v[DW_STAT_MAX];
    int err = dw_loader_stats(l, v, DW_STAT_MAX);
    if (err) ThrowErrno(env, "read counters", err);
    Napi::Object out = Napi::Object::New(env);
    for (uint32_t i = 0; i < DW_STAT_MAX; i++) out.Set(kStatNames[i], Napi::Number::New(env, double(v[i])));
    out.Set("records_delivered", Napi::Number::New(env, double(dw_loader_records_delivered(l))));
    out.Set("records_pending", Napi::Number::New(env, dw_loader_has_pending(l)));
    return out;
  }

  Napi::Value ProgramStats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    dw_loader *l = Open(env);
    Napi::Array arr = Napi::Array::New(env);
    const char *name;
    uint32_t id;
    uint64_t rt, cnt, miss;
    int rc;
    for (size_t i = 0; (rc = dw_loader_prog_info(l, i, &name, &id, &rt, &cnt, &miss)) != -ENOENT; i++) {
      if (rc) continue; // not loaded (the benchmark generator unless asked for): nothing to report
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", name);
      o.Set("id", Napi::Number::New(env, id));
      o.Set("runTimeNs", Napi::Number::New(env, double(rt)));
      o.Set("runCount", Napi::Number::New(env, double(cnt)));
      o.Set("recursionMisses", Napi::Number::New(env, double(miss)));
      arr.Set(arr.Length(), o);
    }
    return arr;
  }

  // Kernel-side synthetic records for the delivery benchmark.
  Napi::Value BenchGenerate(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    dw_loader *l = Open(env);
    uint32_t count = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    uint32_t templates = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
    uint32_t written = 0, dropped = 0;
    int err = dw_loader_bench_run(l, count, templates, &written, &dropped);
    if (err) ThrowErrno(env, "run benchmark generator (open with benchGenerator: true)", err);
    Napi::Object o = Napi::Object::New(env);
    o.Set("written", Napi::Number::New(env, written));
    o.Set("dropped", Napi::Number::New(env, dropped));
    return o;
  }

  // Map entries as bytes; their layout is src/prevent/maps.ts's business.
  Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsBuffer() || !info[2].IsBuffer())
      throw Napi::TypeError::New(env, "mapUpdate(name, key, value)");
    std::string name = info[0].As<Napi::String>();
    auto key = info[1].As<Napi::Buffer<uint8_t>>();
    auto value = info[2].As<Napi::Buffer<uint8_t>>();
    int err = dw_loader_map_update(Open(env), name.c_str(), key.Data(), key.Length(), value.Data(), value.Length());
    if (err) ThrowErrno(env, "update map " + name, err);
    return env.Undefined();
  }

  Napi::Value MapDelete(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer()) throw Napi::TypeError::New(env, "mapDelete(name, key)");
    std::string name = info[0].As<Napi::String>();
    auto key = info[1].As<Napi::Buffer<uint8_t>>();
    int err = dw_loader_map_delete(Open(env), name.c_str(), key.Data(), key.Length());
    if (err == -ENOENT) return Napi::Boolean::New(env, false);
    if (err) ThrowErrno(env, "delete from map " + name, err);
    return Napi::Boolean::New(env, true);
  }

  Napi::Value MapClear(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "mapClear(name)");
    std::string name = info[0].As<Napi::String>();
    int n = dw_loader_map_clear(Open(env), name.c_str());
    if (n < 0) ThrowErrno(env, "clear map " + name, n);
    return Napi::Number::New(env, n);
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    delete watcher_;  // its thread waits on the ring's fd: stop it first
    watcher_ = nullptr;
    dw_loader_close(l_);
    l_ = nullptr;
    return info.Env().Undefined();
  }

  dw_loader *l_ = nullptr;
  RingWatcher *watcher_ = nullptr;
};

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  SafeOpenInit(env, exports);
  ProcessExitInit(env, exports);
  PidfdInit(env, exports);
  HeapTrimInit(env, exports);
  return Loader::Init(env, exports);
}

}  // namespace

NODE_API_MODULE(ebpf_napi_loader, InitModule)
