#!/usr/bin/env bash
# Boots the test guest under TCG and prints its console on stdout; returns when it powers off.
#
#   ci/vm/run-guest.sh iommu|noiommu INITRAMFS
#
# iommu:   q35 with a virtual Intel IOMMU (interrupt remapping, caching mode), intel_iommu=on.
# noiommu: plain q35, no IOMMU.
# Six NICs, each on its own pcie-root-port (two igb on one bus collide over their VF slots), in this
# bus order: igb A, igb B (wired together on hub 0), virtio-net modern and transitional (hub 1),
# e1000e (hub 2), the guard virtio-net with MAC 52:54:00:99:00:01 (hub 3). -netdev hubport needs
# no host privileges and nothing leaves QEMU. Host devices are never touched.
# Environment: VM_TIMEOUT (seconds before QEMU is killed, default 240; the guest's own watchdog
# powers it off 30 s before), KVER.
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 iommu|noiommu INITRAMFS" >&2; exit 2; }
mode=$1; initrd=$2
[ -r "$initrd" ] || { echo "$0: $initrd not readable" >&2; exit 1; }
kver=${KVER:-$(ls /lib/modules | sort -V | tail -1)}
case $mode in
  iommu)   machine=(-machine q35,kernel-irqchip=split -device intel-iommu,intremap=on,caching-mode=on); append="intel_iommu=on" ;;
  noiommu) machine=(-machine q35); append="" ;;
  *) echo "$0: mode must be iommu or noiommu" >&2; exit 2 ;;
esac
nics=(
  "igb,mac=52:54:00:00:00:01 hubid=0"
  "igb,mac=52:54:00:00:00:02 hubid=0"
  "virtio-net-pci,mac=52:54:00:00:01:01 hubid=1"
  "virtio-net-pci,mac=52:54:00:00:01:02,disable-modern=on,disable-legacy=off hubid=1"
  "e1000e,mac=52:54:00:00:02:01 hubid=2"
  "virtio-net-pci,mac=52:54:00:99:00:01 hubid=3"
)
devs=()
i=0
for n in "${nics[@]}"; do
  i=$((i + 1))
  dev=${n% *}; hub=${n##*=}
  devs+=(-device "pcie-root-port,id=rp$i,chassis=$i,slot=$i,bus=pcie.0,addr=$(printf '0x%x' $((0x10 + i)))"
         -netdev "hubport,id=n$i,hubid=$hub" -device "$dev,netdev=n$i,bus=rp$i,romfile=")
done
timeout_s=${VM_TIMEOUT:-240}
fg=(); [ -t 0 ] && fg=(--foreground)   # run by hand in a terminal: QEMU keeps the tty
exec timeout "${fg[@]}" -k 5 "$timeout_s" qemu-system-x86_64 "${machine[@]}" -accel tcg -cpu max -m 1G -smp 1 \
  -kernel "/boot/vmlinuz-$kver" -initrd "$initrd" \
  -append "console=ttyS0 quiet panic=-1 pmdvm.mode=$mode pmdvm.watchdog=$((timeout_s > 60 ? timeout_s - 30 : timeout_s / 2)) $append" \
  -nographic -no-reboot -nodefaults -serial stdio -vga none "${devs[@]}"
