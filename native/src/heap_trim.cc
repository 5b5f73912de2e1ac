// mallocTrim(): gives the C heap's free pages back to the kernel. glibc
// returns only the free top of an arena by itself; what start-up and a burst
// freed in the middle (libbpf's BTF, SQLite, nghttp2 buffers) stays resident
// until malloc_trim. Called once when the pipeline has gone quiet.
#include "heap_trim.h"

#include <malloc.h>

namespace {

Napi::Value MallocTrim(const Napi::CallbackInfo &info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

}  // namespace

void HeapTrimInit(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
}
