#!/usr/bin/env bash
# vagrant-libvirt lab peer: a real libvirtd (started by hand: this machine class has no systemd)
# confined to a network namespace, and a small Debian box built locally with debootstrap
# (no internet: Debian's archive is the only image source).
#
#   tests/peers/vmlab.sh start   netns + virtlogd + virtlockd + libvirtd   (idempotent)
#   tests/peers/vmlab.sh box     build the box file once (cached), print its path
#   tests/peers/vmlab.sh status  what is running
#   tests/peers/vmlab.sh stop    end the daemons we started (by PID), delete the netns
#
# Facts this relies on (measured on this machine class):
# - /dev/kvm here is kvm-pvm: stock guest kernels crawl on it, so the lab VM runs under TCG
#   (libvirt driver "qemu", cpu_mode "maximum").
# - the host kernel has no partition parsing or device-mapper: the root partition is
#   reached with an offset loop device, and grub.cfg is written by hand.
# - everything that talks to guest addresses (vagrant, ssh, our inv) must run inside the
#   netns, so that no traffic leaves this machine's own test namespaces.
set -euo pipefail

NS=${OSK8S_VMLAB_NS:-osk8s-vmlab}
CACHE=${OSK8S_CACHE:-/var/cache/osk8s-test}
RUN=${OSK8S_VMLAB_RUN:-/run/osk8s-vmlab}
BOX_NAME=${OSK8S_BOX_NAME:-osk8s-debian12}
BOX_VERSION=4            # bump when the image recipe below changes (4: the image is read back before it is published)
BOX_FILE=$CACHE/$BOX_NAME-v$BOX_VERSION.box
MIRROR=${OSK8S_DEBIAN_MIRROR:-http://deb.debian.org/debian}
VAGRANT_PUB=${OSK8S_VAGRANT_PUB:-$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1)}

log() { printf '[vmlab] %s\n' "$*" >&2; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  mkdir -p "$RUN" /run/libvirt
  if ! ip netns list | grep -qw "$NS"; then
    ip netns add "$NS"
    ip netns exec "$NS" ip link set lo up
    log "netns $NS created"
  fi
  for d in virtlogd virtlockd; do
    if alive "$RUN/$d.pid"; then continue; fi
    ip netns exec "$NS" /usr/sbin/$d -d -p "$RUN/$d.pid"
    log "$d started (pid $(cat "$RUN/$d.pid"))"
  done
  if ! alive "$RUN/libvirtd.pid"; then
    ip netns exec "$NS" /usr/sbin/libvirtd -d -p "$RUN/libvirtd.pid"
    log "libvirtd started (pid $(cat "$RUN/libvirtd.pid"))"
  fi
  for _ in $(seq 60); do
    virsh -c qemu:///system version >/dev/null 2>&1 && { log "libvirtd answers"; return 0; }
    sleep 1
  done
  log "libvirtd did not answer within 60 s"; return 1
}

stop() {
  # Only what we started, by PID: libvirtd first so it does not respawn helpers.
  for d in libvirtd virtlockd virtlogd; do
    if alive "$RUN/$d.pid"; then
      pid=$(cat "$RUN/$d.pid"); kill "$pid"
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      log "$d (pid $pid) stopped"
    fi
    rm -f "$RUN/$d.pid"
  done
  # qemu processes of lab domains belong to this lab; end any still running (their PIDs
  # are in libvirt's per-domain pid files).
  for f in /run/libvirt/qemu/*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f"); kill "$pid" 2>/dev/null && log "qemu (pid $pid, $(basename "$f" .pid)) stopped" || true
  done
  if ip netns list | grep -qw "$NS"; then ip netns del "$NS"; log "netns $NS deleted"; fi
}

status() {
  ip netns list | grep -w "$NS" || echo "netns $NS: absent"
  for d in virtlogd virtlockd libvirtd; do
    if alive "$RUN/$d.pid"; then echo "$d: running (pid $(cat "$RUN/$d.pid"))"; else echo "$d: stopped"; fi
  done
  [[ -f $BOX_FILE ]] && echo "box: $BOX_FILE" || echo "box: not built"
}

build_box() {
  if [[ -f $BOX_FILE ]]; then echo "$BOX_FILE"; return 0; fi
  [[ -n $VAGRANT_PUB ]] || { log "vagrant's insecure public key not found: install the vagrant package"; return 1; }
  mkdir -p "$CACHE"
  # one builder at a time: two runs on one machine (two checkouts, or CI beside a developer) would
  # otherwise both build, and race for loop devices
  exec 9>"$CACHE/box.lock"
  flock 9
  if [[ -f $BOX_FILE ]]; then echo "$BOX_FILE"; return 0; fi
  W=$(mktemp -d "$CACHE/box-build.XXXXXX"); PL=""; DL=""   # globals: the EXIT trap reads them
  local t0=$SECONDS
  mkdir -p "$W/mnt"
  cleanup() {
    set +e
    for d in sys proc dev/pts dev; do mountpoint -q "$W/mnt/$d" && umount "$W/mnt/$d"; done
    mountpoint -q "$W/mnt" && umount "$W/mnt"
    [[ -n $PL ]] && losetup -d "$PL"; [[ -n $DL ]] && losetup -d "$DL"
    rm -rf "$W"
  }
  trap cleanup EXIT
  truncate -s 8G "$W/disk.raw"
  printf 'label: dos\nstart=2048,type=83,bootable\n' | sfdisk -q "$W/disk.raw"
  local sectors
  sectors=$(sfdisk -J "$W/disk.raw" | python3 -c 'import json,sys;print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["size"])')
  PL=$(losetup -f --show -o $((2048 * 512)) --sizelimit $((sectors * 512)) "$W/disk.raw")
  DL=$(losetup -f --show "$W/disk.raw")
  mkfs.ext4 -q -L rootfs "$PL"
  mount "$PL" "$W/mnt"
  log "debootstrap bookworm (about 2 minutes)"
  debootstrap --variant=minbase \
    --include=systemd-sysv,udev,linux-image-amd64,grub-pc,openssh-server,sudo,ifupdown,isc-dhcp-client,iproute2,netbase,ca-certificates,python3,rsync,less,procps,kmod,dbus,git,curl \
    bookworm "$W/mnt" "$MIRROR" >"$W/debootstrap.log" 2>&1 || { tail -20 "$W/debootstrap.log" >&2; return 1; }
  local uuid; uuid=$(blkid -s UUID -o value "$PL")
  echo "UUID=$uuid / ext4 errors=remount-ro 0 1" >"$W/mnt/etc/fstab"
  echo osk8s-box >"$W/mnt/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 osk8s-box\n' >"$W/mnt/etc/hosts"
  printf 'auto lo\niface lo inet loopback\nallow-hotplug eth0\niface eth0 inet dhcp\n' >"$W/mnt/etc/network/interfaces"
  for d in dev dev/pts proc sys; do mount --bind "/$d" "$W/mnt/$d"; done
  chroot "$W/mnt" /bin/bash -euc '
    useradd -m -s /bin/bash -U vagrant
    echo vagrant:vagrant | chpasswd
    echo "vagrant ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/vagrant; chmod 440 /etc/sudoers.d/vagrant
    install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
    echo "UseDNS no" >/etc/ssh/sshd_config.d/vagrant.conf
    sed -i "s/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty0 console=ttyS0,115200 net.ifnames=0 biosdevname=0\"/; s/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/" /etc/default/grub
    ssh-keygen -A                        # host keys baked in: generating them at boot costs ~25 s under TCG
    systemctl mask e2scrub_reap.service  # ~28 s under TCG, no use in a lab VM
    apt-get clean; rm -rf /var/lib/apt/lists/*'
  install -m 600 -o 1000 -g 1000 "$VAGRANT_PUB" "$W/mnt/home/vagrant/.ssh/authorized_keys"
  chroot "$W/mnt" grub-install --target=i386-pc --modules="part_msdos ext2" "$DL" >"$W/grub-install.log" 2>&1 ||
    { tail -20 "$W/grub-install.log" >&2; return 1; }
  # update-grub writes no menu entry when / is a file-backed loop device: write it ourselves.
  cat >"$W/mnt/boot/grub/grub.cfg" <<GRUB
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $uuid
menuentry 'Debian GNU/Linux' {
  linux /vmlinuz root=UUID=$uuid ro console=tty0 console=ttyS0,115200 net.ifnames=0 biosdevname=0
  initrd /initrd.img
}
GRUB
  for d in sys proc dev/pts dev; do umount "$W/mnt/$d"; done
  fstrim "$W/mnt" >/dev/null 2>&1 || true
  umount "$W/mnt"
  # Each loop device caches its own blocks: flush both, detach them and wait until they are gone
  # before reading disk.raw. Read too early, the file lacked part of the metadata (a box whose
  # /boot/grub had no grub.cfg: the VM stopped at GRUB's prompt and vagrant waited for an IP).
  blockdev --flushbufs "$PL" "$DL"
  losetup -d "$PL" "$DL"
  local i; for i in $(seq 50); do losetup -l -n -O NAME | grep -qxE "$PL|$DL" || break; sleep 0.2; done
  PL=""; DL=""; sync "$W/disk.raw"
  # read the file back, as the VM will, before publishing the box
  PL=$(losetup -r -f --show -o $((2048 * 512)) --sizelimit $((sectors * 512)) "$W/disk.raw")
  local f missing=()
  e2fsck -fn "$PL" >"$W/e2fsck.log" 2>&1 || missing+=("a clean file system (e2fsck: $(tail -1 "$W/e2fsck.log"))")
  for f in boot/grub/grub.cfg boot/grub/i386-pc/normal.mod vmlinuz initrd.img etc/fstab home/vagrant/.ssh/authorized_keys; do
    debugfs -R "stat /$f" "$PL" 2>/dev/null | grep -qE 'Type: (regular|symlink)' || missing+=("$f")
  done
  losetup -d "$PL"; PL=""
  ((${#missing[@]} == 0)) || { log "the box image lacks ${missing[*]}: not published"; return 1; }
  qemu-img convert -O qcow2 "$W/disk.raw" "$W/box.img"; rm -f "$W/disk.raw"
  echo '{"provider":"libvirt","format":"qcow2","virtual_size":8}' >"$W/metadata.json"
  printf 'Vagrant.configure("2") do |c|\n  c.vm.provider :libvirt do |l|\n    l.driver = "qemu"\n  end\nend\n' >"$W/Vagrantfile"
  tar -C "$W" -cf "$BOX_FILE.part" metadata.json Vagrantfile box.img
  mv "$BOX_FILE.part" "$BOX_FILE"
  trap - EXIT; rm -rf "$W"
  log "box built in $((SECONDS - t0)) s: $BOX_FILE"
  echo "$BOX_FILE"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  box) build_box ;;
  *) echo "usage: $0 start|box|status|stop" >&2; exit 2 ;;
esac
