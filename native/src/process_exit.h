#pragma once
#include <napi.h>

void ProcessExitInit(Napi::Env env, Napi::Object exports);
