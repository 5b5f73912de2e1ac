// pidfd_send_signal(2) for N-API (pidfd.cc).
#pragma once
#include <napi.h>

void PidfdInit(Napi::Env env, Napi::Object exports);
