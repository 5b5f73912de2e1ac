// openat2(2) for Node, which has no binding for it. Files the sensor reads on
// a container's behalf are opened relative to a directory fd with
// RESOLVE_IN_ROOT and friends, so symlinks the container planted cannot lead
// out of its root. No policy here (which flags, what to accept: safe-open.ts);
// the call runs on the libuv thread pool because a path inside a container can
// sit on a filesystem that answers slowly (FUSE, NFS).
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string>
#include <sys/syscall.h>
#include <unistd.h>

#include "safe_open.h"

namespace {

long Openat2(int dirfd, const char *path, uint64_t flags, uint64_t resolve) {
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = flags;
  how.resolve = resolve;
  return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

Napi::Error ErrnoError(Napi::Env env, const std::string &what, int err) {
  const char *name = strerrorname_np(err);
  auto error = Napi::Error::New(env, what + ": " + strerror(err));
  error.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, "openat2"));
  return error;
}

class Openat2Worker : public Napi::AsyncWorker {
 public:
  Openat2Worker(Napi::Env env, int dirfd, std::string path, uint64_t flags, uint64_t resolve)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), dirfd_(dirfd),
        path_(std::move(path)), flags_(flags), resolve_(resolve) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    long fd = Openat2(dirfd_, path_.c_str(), flags_, resolve_);
    if (fd < 0) err_ = errno;
    else fd_ = int(fd);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_) deferred_.Reject(ErrnoError(env, "openat2 " + path_, err_).Value());
    else deferred_.Resolve(Napi::Number::New(env, fd_));
  }

 private:
  Napi::Promise::Deferred deferred_;
  int dirfd_;
  std::string path_;
  uint64_t flags_, resolve_;
  int fd_ = -1;
  int err_ = 0;
};

// openat2(dirfd, path, flags, resolve) -> Promise<fd>
Napi::Value Openat2Async(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsNumber() || !info[3].IsNumber())
    throw Napi::TypeError::New(env, "openat2(dirfd: number, path: string, flags: number, resolve: number)");
  std::string path = info[1].As<Napi::String>();
  if (path.find('\0') != std::string::npos) throw Napi::TypeError::New(env, "openat2: path holds a NUL byte");
  auto *w = new Openat2Worker(env, info[0].As<Napi::Number>().Int32Value(), std::move(path),
                              uint64_t(info[2].As<Napi::Number>().Int64Value()),
                              uint64_t(info[3].As<Napi::Number>().Int64Value()));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void SafeOpenInit(Napi::Env env, Napi::Object exports) {
  exports.Set("openat2", Napi::Function::New(env, Openat2Async, "openat2"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("AT_FDCWD", Napi::Number::New(env, AT_FDCWD));
  c.Set("O_RDONLY", Napi::Number::New(env, O_RDONLY));
  c.Set("O_PATH", Napi::Number::New(env, O_PATH));
  c.Set("O_DIRECTORY", Napi::Number::New(env, O_DIRECTORY));
  c.Set("O_NOFOLLOW", Napi::Number::New(env, O_NOFOLLOW));
  c.Set("O_NONBLOCK", Napi::Number::New(env, O_NONBLOCK));
  c.Set("O_NOCTTY", Napi::Number::New(env, O_NOCTTY));
  c.Set("O_CLOEXEC", Napi::Number::New(env, O_CLOEXEC));
  c.Set("RESOLVE_NO_XDEV", Napi::Number::New(env, RESOLVE_NO_XDEV));
  c.Set("RESOLVE_NO_MAGICLINKS", Napi::Number::New(env, RESOLVE_NO_MAGICLINKS));
  c.Set("RESOLVE_NO_SYMLINKS", Napi::Number::New(env, RESOLVE_NO_SYMLINKS));
  c.Set("RESOLVE_BENEATH", Napi::Number::New(env, RESOLVE_BENEATH));
  c.Set("RESOLVE_IN_ROOT", Napi::Number::New(env, RESOLVE_IN_ROOT));
  exports.Set("openat2Constants", c);
}
