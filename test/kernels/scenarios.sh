#!/bin/sh
# The exec scenarios of the kernel matrix, run the same way on the host (in
# private mount and pid namespaces) and in the qemu guest. $1 is a work dir
# holding lower/ (the "image"); every exec carries a dwscen-* marker argument.
set -e
W=$1
mkdir -p "$W/u" "$W/w" "$W/m"
mount -t overlay overlay -o "lowerdir=$W/lower,upperdir=$W/u,workdir=$W/w" "$W/m"
mount -t tmpfs tmpfs "$W/m/dev/shm"
chroot "$W/m" /bin/sh -c '
  /bin/busybox-img true dwscen-lower
  cp /bin/busybox /tmp/busybox-new; /tmp/busybox-new true dwscen-new
  echo >> /bin/busybox-img; /bin/busybox-img true dwscen-copied
  chmod 0755 /bin/busybox-chmod; /bin/busybox-chmod true dwscen-chmod
  /bin/dwexec memfd /bin/busybox busybox true dwscen-memfd
  cp /bin/busybox /dev/shm/busybox-shm; /dev/shm/busybox-shm true dwscen-tmpfs
'
umount "$W/m/dev/shm" "$W/m"
