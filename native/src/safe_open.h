// openat2(2) as an async N-API function (safe_open.cc).
#pragma once
#include <napi.h>

void SafeOpenInit(Napi::Env env, Napi::Object exports);
