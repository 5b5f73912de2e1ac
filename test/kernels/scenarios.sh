#!/bin/sh
# The exec scenarios of the kernel matrix, run the same way on the host (in
# private mount and pid namespaces) and in the qemu guest. $1 is a work dir
# holding lower/ (the "image"); every exec carries a dwscen-* marker argument,
# every #! script a dwscript-* one.
set -e
W=$1
# Image scripts, and rm for the script that deletes itself.
printf '#!/bin/sh\ntrue\n' > "$W/lower/bin/img-script.sh"
cp "$W/lower/bin/img-script.sh" "$W/lower/bin/img-script2.sh"
chmod 0755 "$W/lower/bin/img-script.sh" "$W/lower/bin/img-script2.sh"
ln -sf busybox "$W/lower/bin/rm"
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
  /bin/img-script.sh dwscript-lower
  printf "#!/bin/sh\nrm -f \"\$0\"\n" > /tmp/gone.sh; chmod 0755 /tmp/gone.sh; /tmp/gone.sh dwscript-new
  [ ! -e /tmp/gone.sh ]
  echo "# changed" >> /bin/img-script2.sh; /bin/img-script2.sh dwscript-copied
  printf "#!/bin/sh\ntrue\n" > /dev/shm/shm.sh; chmod 0755 /dev/shm/shm.sh; /dev/shm/shm.sh dwscript-tmpfs
'
# Overlays mounted inside the container (dwnest-*): a read-only one over a
# directory the container wrote, one whose layers are on a tmpfs of its own,
# an image binary through one, and one entered with chroot.
chroot "$W/m" /bin/busybox sh -c '
  set -e
  b=/bin/busybox
  $b mkdir -p /tmp/n/l1 /tmp/n/l2 /tmp/n/m /tmp/i/m /tmp/t
  $b cp /bin/busybox /tmp/n/l1/busybox
  $b mount -t overlay overlay -o lowerdir=/tmp/n/l1:/tmp/n/l2 /tmp/n/m
  /tmp/n/m/busybox true dwnest-ro
  $b mount -t tmpfs tmpfs /tmp/t
  $b mkdir /tmp/t/l /tmp/t/u /tmp/t/w /tmp/t/m
  $b cp /bin/busybox /tmp/t/l/busybox
  $b mount -t overlay overlay -o lowerdir=/tmp/t/l,upperdir=/tmp/t/u,workdir=/tmp/t/w /tmp/t/m
  /tmp/t/m/busybox true dwnest-tmpfs
  $b cp /bin/busybox /tmp/t/m/busybox-up; /tmp/t/m/busybox-up true dwnest-tmpfs-upper
  $b mount -t overlay overlay -o lowerdir=/bin:/tmp/n/l2 /tmp/i/m
  /tmp/i/m/busybox true dwnest-image
  $b chroot /tmp/n/m /busybox true dwnest-chroot
  # Busy when another sensor on the machine is reading a file in it right now: detach lazily then.
  for m in /tmp/i/m /tmp/t/m /tmp/t /tmp/n/m; do $b umount $m 2>/dev/null || $b umount -l $m; done
'
# The same for the container root.
for m in "$W/m/dev/shm" "$W/m"; do umount "$m" 2>/dev/null || umount -l "$m"; done
