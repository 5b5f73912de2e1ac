#!/bin/busybox sh
# /init of the kernel-matrix guest: proves the BPF object loads before the
# overlay module exists (phase 1), then classifies every scenario with the
# module loaded (phase 2), then loads the #! script hook as BPF-LSM (phase 3,
# kernel-side filtering) and as fentry (phase 4), which the host may refuse,
# and loads without CAP_SYS_ADMIN with overlay as a module (phase 5), then
# refuses drifted execs with EPERM through BPF-LSM (phase 6) and kills them
# at sched_process_exec without it (phase 7), then reports a dropped library
# mapped executable through lsm/mmap_file (phase 8), fentry/security_mmap_file
# (phase 9) and the opt-in sys_enter_mmap tracepoint (phase 10).
# Output goes to the serial console.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null # syscall tracepoints attach through it
echo "DWKERNEL $(uname -r)"
echo "DWLSM $(cat /sys/kernel/security/lsm 2>/dev/null)"
prepare() {
  mkdir -p "$1/lower/bin" "$1/lower/tmp" "$1/lower/dev/shm" "$1/lower/proc"
  cp /bin/busybox /bin/dwexec "$1/lower/bin/"
  cp /bin/busybox "$1/lower/bin/busybox-img"
  cp /bin/busybox "$1/lower/bin/busybox-chmod"
  ln -s busybox "$1/lower/bin/sh"; ln -s busybox "$1/lower/bin/true"; ln -s busybox "$1/lower/bin/cp"
  ln -s busybox "$1/lower/bin/chmod"; ln -s busybox "$1/lower/bin/echo"
}
phase() { # $1 name, $2 workdir, $3 loader arguments after the stop file, $4 command run while it is attached
  /bin/dwload "/tmp/stop-$1" $3 > "/tmp/$1.out" 2>&1 &
  pid=$!
  i=0
  while ! grep -q 'DWREADY\|DWERROR' "/tmp/$1.out" && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done
  prepare "$2"
  sh -c "$4" || echo "DWSCRIPTFAIL $1"
  touch "/tmp/stop-$1"
  wait $pid
  sed "s/^/$1 /" "/tmp/$1.out"
}
phase P1 /tmp/s1 'emit-all none' 'insmod /lib/modules/overlay.ko && unshare -m -p -f sh /scenarios.sh /tmp/s1'
phase P2 /tmp/s2 'emit-all none' 'unshare -m -p -f sh /scenarios.sh /tmp/s2'
phase P3 /tmp/s3 'filtered lsm' 'unshare -m -p -f sh /scenarios.sh /tmp/s3'
phase P4 /tmp/s4 'emit-all fentry' 'unshare -m -p -f sh /scenarios.sh /tmp/s4'
phase P5 /tmp/s5 'emit-all none no-sys-admin' 'unshare -m -p -f sh /scenarios.sh /tmp/s5'
phase P6 /tmp/s6 'filtered lsm prevent' 'sh /prevent.sh /tmp/s6 -lsm'
phase P7 /tmp/s7 'filtered none prevent' 'sh /prevent.sh /tmp/s7 -kill'
phase P8 /tmp/s8 'filtered lsm mmap-lsm' 'unshare -m -p -f sh /mmap.sh /tmp/s8'
phase P9 /tmp/s9 'filtered fentry mmap-fentry' 'unshare -m -p -f sh /mmap.sh /tmp/s9'
phase P10 /tmp/s10 'filtered none mmap-tracepoint' 'unshare -m -p -f sh /mmap.sh /tmp/s10'
echo DWDONE
# poweroff -f does not wait for the console: let the serial line drain what
# the phases printed (the tracepoint phase prints a lot), or its tail and the
# DWDONE line are lost.
sleep 3
poweroff -f
