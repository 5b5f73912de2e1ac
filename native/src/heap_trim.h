// malloc_trim(3) for N-API (heap_trim.cc).
#pragma once
#include <napi.h>

void HeapTrimInit(Napi::Env env, Napi::Object exports);
