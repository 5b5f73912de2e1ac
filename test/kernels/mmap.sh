#!/bin/sh
# Exec mappings in the qemu guest: an image binary (dwexec) maps a shared
# library with PROT_EXEC, as ld.so does for LD_PRELOAD. The library that came
# with the image is not reported; the one dropped into the running container
# is (drift.exec_mapping). $1 is a work dir holding lower/ (the "image").
set -e
W=$1
mkdir -p "$W/lower/lib" "$W/u" "$W/w" "$W/m"
cp /lib/libdwpreload.so "$W/lower/lib/libimg.so"
mount -t overlay overlay -o "lowerdir=$W/lower,upperdir=$W/u,workdir=$W/w" "$W/m"
cp /lib/libdwpreload.so "$W/m/tmp/libdrop.so"
chroot "$W/m" /bin/dwexec mmap /lib/libimg.so
chroot "$W/m" /bin/dwexec mmap /tmp/libdrop.so
umount "$W/m" 2>/dev/null || umount -l "$W/m"
