#!/usr/bin/env bash
# Boots the test guest under TCG and prints its console on stdout; returns when it powers off.
#
#   ci/vm/run-guest.sh iommu|noiommu|vhost INITRAMFS
#
# vhost:   plain q35 with one virtio-net on a vhost-user netdev (socket VHOST_SOCK; its memory a
#          shared memfd), served by our net_vhost (ci/vm/vhost-host.sh); VM_BOOT numbers the boot.
# iommu:   q35 with a virtual Intel IOMMU (interrupt remapping, caching mode), intel_iommu=on.
# noiommu: plain q35, no IOMMU.
# Six NICs, each on its own pcie-root-port (two igb on one bus collide over their VF slots), in this
# bus order: igb A, igb B (wired together on hub 0), virtio-net modern and transitional (hub 1),
# e1000e (hub 2), the guard virtio-net with MAC 52:54:00:99:00:01 (hub 3); six more
# virtio-net for the l2fwd checks (three in noiommu mode; see below). -netdev hubport needs
# no host privileges and nothing leaves QEMU. Host devices are never touched.
# Environment: VM_TIMEOUT (seconds before QEMU is killed, default 240; the guest's own watchdog
# powers it off 30 s before), KROOT (the unpacked guest kernel, default target/vm/kernel), KVER,
# VM_MONITOR (a path: QEMU's human monitor listens there, for `set_link ID off|on` on the
# igb l2fwd pair's port 0, whose device id is lnk0, and in iommu mode the modern virtio
# pair's port 0, lnk1; and for `migrate`), VM_INCOMING (a migration URI: the VM is not booted
# but loaded from there, QEMU's -incoming), VM_MIGRATE=1 (vhost mode: the guest streams its
# TCP transfer slowly, for a migration during it).
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 iommu|noiommu|vhost INITRAMFS" >&2; exit 2; }
mode=$1; initrd=$2
[ -r "$initrd" ] || { echo "$0: $initrd not readable" >&2; exit 1; }
kroot=${KROOT:-$(cd "$(dirname "$0")/../.." && pwd)/target/vm/kernel}
kver=${KVER:-$(ls "$kroot/lib/modules" | sort -V | tail -1)}
case $mode in
  iommu)   machine=(-machine q35,kernel-irqchip=split -device intel-iommu,intremap=on,caching-mode=on); append="intel_iommu=on" ;;
  noiommu) machine=(-machine q35); append="" ;;
  vhost)   machine=(-machine q35); append="pmdvm.boot=${VM_BOOT:-1} pmdvm.migrate=${VM_MIGRATE:-0}" ;;
  *) echo "$0: mode must be iommu, noiommu or vhost" >&2; exit 2 ;;
esac
mem=(-m 1G)
if [ "$mode" = vhost ]; then
  # One virtio-net whose back end is ours: guest memory shared (memfd) so the back end can map it,
  # the netdev on the vhost-user socket VHOST_SOCK (our net_vhost listens there).
  [ -S "${VHOST_SOCK:-}" ] || { echo "$0: vhost mode: VHOST_SOCK must name a listening socket" >&2; exit 2; }
  mem=(-m 1G -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem)
  devs=(-chardev "socket,id=vh0,path=$VHOST_SOCK" -netdev "vhost-user,id=n0,chardev=vh0"
        -device "virtio-net-pci,netdev=n0,mac=52:54:00:00:05:01,romfile=")
fi
nics=(
  "igb,mac=52:54:00:00:00:01 hubid=0"
  "igb,mac=52:54:00:00:00:02 hubid=0"
  "virtio-net-pci,mac=52:54:00:00:01:01 hubid=1"
  "virtio-net-pci,mac=52:54:00:00:01:02,disable-modern=on,disable-legacy=off hubid=1"
  "e1000e,mac=52:54:00:00:02:01 hubid=2"
  "virtio-net-pci,mac=52:54:00:99:00:01 hubid=3"
)
# The l2fwd wiring: hub 1 also holds "gen" (kernel driver: the frame generator) with the two
# port-0 devices above (modern, transitional); hub 4 holds the port-1 devices (modern, iommu
# only; transitional in legacy mode) and "cap" (kernel driver: the capture). Found by MAC in the
# guest. The iommu guest forwards between the modern pair through vfio-pci, the noiommu guest
# between the legacy pair and between the modern pair through uio_pci_generic. In iommu mode the modern pair offers VIRTIO_F_ACCESS_PLATFORM (iommu_platform=on):
# without it QEMU's virtio devices bypass the virtual IOMMU and would read our IOVAs (= virtual
# addresses) as guest-physical ones. The iommu guest also has the packed-ring pair (packed=on,
# iommu_platform=on too; modern only): port 0 52:54:00:00:01:03 on hub 1, port 1
# 52:54:00:00:01:13 on hub 4, sharing gen and cap with the other pairs (one l2fwd at a time;
# frame-blast's run id tells the checks apart). They come after the modern port-0 device in bus
# order, so the first 1af4:1041 stays "virtio-modern".
extra=("virtio-net-pci,mac=52:54:00:00:03:01 hubid=1")
if [ "$mode" = iommu ]; then
  nics[2]="virtio-net-pci,mac=52:54:00:00:01:01,iommu_platform=on,id=lnk1 hubid=1"
  extra+=("virtio-net-pci,mac=52:54:00:00:01:11,iommu_platform=on hubid=4"
          "virtio-net-pci,mac=52:54:00:00:01:03,iommu_platform=on,packed=on hubid=1"
          "virtio-net-pci,mac=52:54:00:00:01:13,iommu_platform=on,packed=on hubid=4")
else
  # noiommu: the modern pair's port 1 too, for modern virtio-net through uio_pci_generic.
  extra+=("virtio-net-pci,mac=52:54:00:00:01:11 hubid=4")
fi
extra+=(
  "virtio-net-pci,mac=52:54:00:00:01:12,disable-modern=on,disable-legacy=off hubid=4"
  "virtio-net-pci,mac=52:54:00:00:03:02 hubid=4"
)
# The igb l2fwd pair (both modes): port 0 on hub 1 with gen, port 1 on hub 4 with cap. Last in
# bus order, so igb A and B (the hub-0 pair) stay the first two 8086:10c9 functions.
extra+=("igb,mac=52:54:00:00:04:01,id=lnk0 hubid=1" "igb,mac=52:54:00:00:04:11 hubid=4")
nics+=("${extra[@]}")
[ "$mode" = vhost ] && nics=()
[ "$mode" = vhost ] || devs=()
i=0
for n in "${nics[@]}"; do
  i=$((i + 1))
  dev=${n% *}; hub=${n##*=}
  devs+=(-device "pcie-root-port,id=rp$i,chassis=$i,slot=$i,bus=pcie.0,addr=$(printf '0x%x' $((0x10 + i)))"
         -netdev "hubport,id=n$i,hubid=$hub" -device "$dev,netdev=n$i,bus=rp$i,romfile=")
done
mon=(); [ -n "${VM_MONITOR:-}" ] && mon=(-monitor "unix:$VM_MONITOR,server=on,wait=off")
[ -n "${VM_INCOMING:-}" ] && mon+=(-incoming "$VM_INCOMING")
timeout_s=${VM_TIMEOUT:-240}
fg=(); [ -t 0 ] && fg=(--foreground)   # run by hand in a terminal: QEMU keeps the tty
exec timeout "${fg[@]}" -k 5 "$timeout_s" qemu-system-x86_64 "${machine[@]}" -accel tcg -cpu max "${mem[@]}" -smp 1 \
  -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$initrd" \
  -append "console=ttyS0 quiet panic=-1 pmdvm.mode=$mode pmdvm.watchdog=$((timeout_s > 60 ? timeout_s - 30 : timeout_s / 2)) $append" \
  -nographic -no-reboot -nodefaults -serial stdio -vga none "${mon[@]}" "${devs[@]}"
