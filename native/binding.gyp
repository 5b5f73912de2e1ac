{
  "targets": [
    {
      "target_name": "ebpf_napi_loader",
      "sources": ["src/loader.cc", "src/safe_open.cc", "src/process_exit.cc", "src/pidfd.cc", "src/heap_trim.cc", "src/dw_loader.c"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "../bpf/build",
        "../bpf/tracee/headers"
      ],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-Wall", "<!@(pkg-config --cflags libbpf)"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "<!@(pkg-config --cflags libbpf)"],
      "libraries": ["<!@(pkg-config --libs libbpf)"]
    }
  ]
}
