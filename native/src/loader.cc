// ebpf-napi-loader: a thin N-API class over libbpf and the embedded skeleton.
// All policy lives in TypeScript; this file only opens, configures, loads,
// attaches, drains the ring buffer into a caller-owned Buffer, reads counters
// and tears everything down.
#include <napi.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <linux/types.h>
#include <string>
#include <vector>

#include "events.h"
#include "tracee.skel.h"

namespace {

// libbpf prints through one global callback; keep the tail of the latest
// messages so a failed load can say why (verifier log, missing BTF...).
std::string g_libbpf_log;

int LibbpfPrint(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof(line), fmt, args);
  if (n > 0) {
    g_libbpf_log.append(line);
    if (g_libbpf_log.size() > 8192) g_libbpf_log.erase(0, g_libbpf_log.size() - 8192);
  }
  return 0;
}

const char *ErrnoCode(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case E2BIG: return "E2BIG";
    case ENOTSUP: return "ENOTSUP";
    case ESRCH: return "ESRCH";
    case EBUSY: return "EBUSY";
    default: return "EBPF";
  }
}

[[noreturn]] void ThrowErrno(Napi::Env env, const std::string &what, int err) {
  if (err < 0) err = -err;
  std::string msg = what + ": " + strerror(err);
  std::string log = g_libbpf_log;
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  auto error = Napi::Error::New(env, msg);
  error.Set("code", Napi::String::New(env, ErrnoCode(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("libbpfLog", Napi::String::New(env, log));
  throw error;
}

// Each record in the caller's buffer: [u32 len][u32 0][len bytes][pad to 8].
constexpr size_t kFrameHeader = 8;
inline size_t FrameSize(size_t len) { return (kFrameHeader + len + 7) & ~size_t(7); }

class Loader : public Napi::ObjectWrap<Loader> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "Loader",
        {InstanceMethod("load", &Loader::Load),
         InstanceMethod("attach", &Loader::Attach),
         InstanceMethod("consume", &Loader::Consume),
         InstanceMethod("stats", &Loader::Stats),
         InstanceMethod("programStats", &Loader::ProgramStats),
         InstanceMethod("close", &Loader::Close)});
    exports.Set("Loader", cls);
    exports.Set("statNames", StatNames(env));
    return exports;
  }

  explicit Loader(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Loader>(info) {
    Napi::Env env = info.Env();
    Napi::Object opts = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>()
                                                                 : Napi::Object::New(env);
    g_libbpf_log.clear();
    skel_ = tracee__open();
    if (!skel_) ThrowErrno(env, "open BPF object", errno);
    skel_->rodata->cfg_emit_all = opts.Has("emitAll") && opts.Get("emitAll").ToBoolean();
    if (opts.Has("ignoreTgid") && opts.Get("ignoreTgid").IsNumber())
      skel_->rodata->cfg_ignore_tgid = opts.Get("ignoreTgid").As<Napi::Number>().Uint32Value();
    if (opts.Has("ringBufferBytes") && opts.Get("ringBufferBytes").IsNumber()) {
      uint32_t bytes = opts.Get("ringBufferBytes").As<Napi::Number>().Uint32Value();
      int err = bpf_map__set_max_entries(skel_->maps.events, bytes);
      if (err) {
        Destroy();
        ThrowErrno(env, "ring buffer size must be a power of two multiple of the page size", err);
      }
    }
  }

  ~Loader() override { Destroy(); }

 private:
  static Napi::Array StatNames(Napi::Env env) {
    static const char *names[DW_STAT_MAX] = {"exec_seen",   "exec_emitted",   "exec_filtered",
                                             "ringbuf_full", "scratch_miss",  "ovl_unresolved",
                                             "path_truncated", "cgroup_v1_fallback"};
    Napi::Array arr = Napi::Array::New(env, DW_STAT_MAX);
    for (uint32_t i = 0; i < DW_STAT_MAX; i++) arr.Set(i, names[i]);
    return arr;
  }

  void RequireOpen(Napi::Env env) {
    if (!skel_) throw Napi::Error::New(env, "loader is closed");
  }

  Napi::Value Load(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    g_libbpf_log.clear();
    int err = tracee__load(skel_);
    if (err) ThrowErrno(env, "load BPF programs", err);
    rb_ = ring_buffer__new(bpf_map__fd(skel_->maps.events), &Loader::OnRecord, this, nullptr);
    if (!rb_) ThrowErrno(env, "open ring buffer", errno);
    return env.Undefined();
  }

  Napi::Value Attach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Napi::Array names = Napi::Array::New(env);
    struct bpf_program *prog;
    uint32_t i = 0;
    bpf_object__for_each_program(prog, skel_->obj) {
      if (!bpf_program__autoload(prog)) continue;
      g_libbpf_log.clear();
      struct bpf_link *link = bpf_program__attach(prog);
      if (!link) ThrowErrno(env, std::string("attach ") + bpf_program__section_name(prog), errno);
      links_.push_back(link);
      names.Set(i++, bpf_program__section_name(prog));
    }
    return names;
  }

  // Drains records into buf until the ring is empty or buf is full. A record
  // that does not fit is held here and delivered first next time: nothing
  // read from the kernel is ever dropped in this layer.
  Napi::Value Consume(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    if (!rb_) throw Napi::Error::New(env, "consume before load");
    if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(env, "consume(buffer)");
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    out_ = buf.Data();
    out_cap_ = buf.Length();
    out_len_ = 0;
    full_ = false;
    if (!pending_.empty()) {
      if (FrameSize(pending_.size()) > out_cap_) throw Napi::RangeError::New(env, "buffer smaller than one record");
      Append(pending_.data(), pending_.size());
      pending_.clear();
    }
    int n = ring_buffer__consume(rb_);
    if (n < 0 && n != -E2BIG /* our own stop signal */) ThrowErrno(env, "consume ring buffer", n);
    out_ = nullptr;
    return Napi::Number::New(env, double(out_len_));
  }

  static int OnRecord(void *ctx, void *data, size_t len) {
    auto *self = static_cast<Loader *>(ctx);
    if (self->full_ || FrameSize(len) > self->out_cap_ - self->out_len_) {
      // Keep it for the next call; returning an error stops this drain.
      self->pending_.assign(static_cast<uint8_t *>(data), static_cast<uint8_t *>(data) + len);
      self->full_ = true;
      return -E2BIG;
    }
    self->Append(data, len);
    return 0;
  }

  void Append(const void *data, size_t len) {
    uint8_t *dst = out_ + out_len_;
    uint32_t hdr[2] = {uint32_t(len), 0};
    memcpy(dst, hdr, kFrameHeader);
    memcpy(dst + kFrameHeader, data, len);
    size_t frame = FrameSize(len);
    memset(dst + kFrameHeader + len, 0, frame - kFrameHeader - len);
    out_len_ += frame;
    records_++;
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Napi::Object out = Napi::Object::New(env);
    Napi::Array names = StatNames(env);
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0) ThrowErrno(env, "count possible CPUs", ncpu);
    std::vector<__u64> values(ncpu);
    int fd = bpf_map__fd(skel_->maps.stats);
    for (__u32 key = 0; key < DW_STAT_MAX; key++) {
      double sum = 0;
      if (fd >= 0 && bpf_map_lookup_elem(fd, &key, values.data()) == 0)
        for (int c = 0; c < ncpu; c++) sum += double(values[c]);
      out.Set(names.Get(key), Napi::Number::New(env, sum));
    }
    out.Set("records_delivered", Napi::Number::New(env, double(records_)));
    out.Set("records_pending", Napi::Number::New(env, pending_.empty() ? 0 : 1));
    return out;
  }

  Napi::Value ProgramStats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    Napi::Array arr = Napi::Array::New(env);
    struct bpf_program *prog;
    uint32_t i = 0;
    bpf_object__for_each_program(prog, skel_->obj) {
      int fd = bpf_program__fd(prog);
      if (fd < 0) continue;
      struct bpf_prog_info pinfo;
      memset(&pinfo, 0, sizeof(pinfo));
      __u32 len = sizeof(pinfo);
      if (bpf_obj_get_info_by_fd(fd, &pinfo, &len)) continue;
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_program__name(prog));
      o.Set("id", Napi::Number::New(env, pinfo.id));
      o.Set("runTimeNs", Napi::Number::New(env, double(pinfo.run_time_ns)));
      o.Set("runCount", Napi::Number::New(env, double(pinfo.run_cnt)));
      o.Set("recursionMisses", Napi::Number::New(env, double(pinfo.recursion_misses)));
      arr.Set(i++, o);
    }
    return arr;
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    Destroy();
    return info.Env().Undefined();
  }

  void Destroy() {
    for (auto *link : links_) bpf_link__destroy(link);
    links_.clear();
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
    if (skel_) tracee__destroy(skel_);
    skel_ = nullptr;
  }

  struct tracee *skel_ = nullptr;
  struct ring_buffer *rb_ = nullptr;
  std::vector<struct bpf_link *> links_;
  std::vector<uint8_t> pending_;
  uint8_t *out_ = nullptr;
  size_t out_cap_ = 0;
  size_t out_len_ = 0;
  bool full_ = false;
  uint64_t records_ = 0;
};

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(LibbpfPrint);
  return Loader::Init(env, exports);
}

}  // namespace

NODE_API_MODULE(ebpf_napi_loader, InitModule)
