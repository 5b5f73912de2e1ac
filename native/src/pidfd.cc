// pidfd_send_signal(2), synchronous (it does not block): a process held
// stopped is killed or continued through a descriptor that names it (from
// pidfdOpen, process_exit.cc), never through a pid that may have been reused.
#include "pidfd.h"

#include <cerrno>
#include <cstring>
#include <csignal>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace {

Napi::Error SysError(Napi::Env env, const char *call, int err) {
  const char *name = strerrorname_np(err);
  auto error = Napi::Error::New(env, std::string(call) + ": " + strerror(err));
  error.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, call));
  return error;
}

Napi::Value PidfdSendSignal(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "pidfdSendSignal(fd, signal)");
  long r = syscall(SYS_pidfd_send_signal, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), nullptr, 0);
  if (r < 0) throw SysError(env, "pidfd_send_signal", errno);
  return env.Undefined();
}

}  // namespace

void PidfdInit(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdSendSignal", Napi::Function::New(env, PidfdSendSignal));
}
