#!/bin/busybox sh
# /init of the doctor guest: `driftwatch doctor` (Node, the addon, the
# self-test payload) on Debian's Linux 6.1. First with overlay not loaded (a
# thing broken on purpose: doctor and the self-test must name it), then with
# the module loaded and the #! script hook the kernel accepts (BPF-LSM), then
# with no script hook (scripts found on the exec's deferred fput list), then
# with the fentry hooks, then with the sys_enter_mmap tracepoint asked for.
# Output on the serial console between DWDOC-BEGIN/END markers.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null # syscall tracepoints attach through it
mkdir -p /data && mount -t tmpfs data /data
export PATH=/bin HOME=/tmp
echo "DWKERNEL $(uname -r)"
doc() { # $1 phase name; the environment carries the rest
  echo "DWDOC-BEGIN $1"
  /bin/node /app/bin/driftwatch.js doctor --json --data-dir /data
  echo "DWDOC-END $1 rc=$?"
}
doc no-overlay
insmod /lib/modules/overlay.ko
doc kernel-hook
DRIFTWATCH_SCRIPT_HOOK=none doc fallback
DRIFTWATCH_SCRIPT_HOOK=fentry doc fentry
DRIFTWATCH_SCRIPT_HOOK=none DRIFTWATCH_MMAP_TRACEPOINT=true doc mmap-tracepoint
echo DWDONE
# poweroff -f does not wait for the console: let the serial line drain what
# the phases printed (the tracepoint phase prints a lot), or its tail and the
# DWDONE line are lost.
sleep 3
poweroff -f
