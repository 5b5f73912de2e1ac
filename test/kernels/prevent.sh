#!/bin/sh
# Prevention scenarios for the kernel matrix guest (BPF-LSM active): each
# drifted payload would write a marker; the exec must fail with EPERM and the
# shell go on; $2 tags the output lines (one phase per way of stopping).
# $1 is a work dir holding lower/ (the "image"). The guest's own
# root is a tmpfs, so the container's namespaces are entered from inside the
# overlay (chroot first, then unshare), never by a binary of the guest root.
W=$1
T=$2
for a in unshare ls grep tr; do ln -sf busybox "$W/lower/bin/$a"; done
mkdir -p "$W/u" "$W/w" "$W/m"
mount -t overlay overlay -o "lowerdir=$W/lower,upperdir=$W/u,workdir=$W/w" "$W/m" || exit 1
mount -t tmpfs tmpfs "$W/m/dev/shm" || exit 1
chroot "$W/m" /bin/unshare -m -p -f /bin/sh -c 'T=$0
  /bin/busybox-img true; echo "DWPREV$T lower rc=$?"
  cp /bin/busybox /tmp/busybox-new; /tmp/busybox-new sh -c "echo ran > /tmp/marker-new"; echo "DWPREV$T new rc=$?"
  printf "#!/bin/sh\necho ran > /tmp/marker-script\n" > /tmp/dropped.sh; chmod 0755 /tmp/dropped.sh; /tmp/dropped.sh; echo "DWPREV$T script rc=$?"
  /bin/dwexec memfd /bin/busybox busybox sh -c "echo ran > /tmp/marker-memfd"; echo "DWPREV$T memfd rc=$?"
  cp /bin/busybox /dev/shm/busybox-shm; /dev/shm/busybox-shm sh -c "echo ran > /tmp/marker-shm"; echo "DWPREV$T tmpfs rc=$?"
  echo "DWPREV$T markers: $(ls /tmp | grep marker | tr "\n" " ")end"
' "$T" 2>&1
umount "$W/m/dev/shm" "$W/m"
