#!/usr/bin/env bash
# Tests the PCI path (vfio-pci behind a virtual IOMMU; uio_pci_generic with physical addresses when
# there is none; the binding guard; bad inputs) inside QEMU guests: the host's own PCI devices are
# never bound, unbound or reset. Needs root (it installs packages).
#
#   ci/vm/test.sh            install, build, boot both guests, print a summary; non-zero on any failure
#
# Steps: ci/vm/install.sh; cargo build --release -p pmd-setup -p pci-check -p l2fwd, and
# frame-blast of pmd-testkit;
# ci/vm/build-initramfs.sh; ci/vm/run-guest.sh iommu and noiommu, one at a time; each console is
# saved to target/vm/<mode>.log. A binary that does not build is left out of the guest and its
# checks FAIL "binary missing".
# The iommu guest also measures a forwarding rate on the looped igb pair with DPDK's own testpmd
# (when the host has it) and with our l2fwd; their GUEST-BENCH lines and ratio are printed. A check
# may SKIP (e.g. no dpdk-testpmd on the host): that is not a failure.
# The vhost mode (ci/vm/vhost-guest.sh) boots a guest twice whose virtio-net is served by our
# net_vhost through l2fwd: ping and a TCP transfer each boot, the second a VM restart, the third
# migrated live (to a file, into a second QEMU) during its transfer.
# Environment: VM_MODES (default "iommu noiommu vhost"), VM_TIMEOUT (per guest, default 240 s; vhost 180 s),
# VM_NO_BUILD=1 (no cargo build: take the binaries already in target/release, e.g. while the
# crates are being edited), DPDK_TESTPMD (build-initramfs.sh: empty leaves DPDK out).
set -uo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "ci/vm/test.sh: run as root (installs QEMU and a kernel)" >&2; exit 1; }
out=target/vm
mkdir -p "$out"
rm -f "$out"/build*.log
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }
T0=$(now)

# 1. packages
t=$(now)
echo "ci/vm/test.sh: QEMU and the guest kernel (installed on first use: a few minutes)"
bash ci/vm/install.sh || { echo "ci/vm/test.sh: install failed" >&2; exit 1; }
t_install=$(secs "$t" "$(now)")

# 2. our binaries (one package at a time if the pair does not build, so one broken crate does not hide the other)
t=$(now)
built=()
# l2fwd and frame-blast (crate pmd-testkit) drive the guest's l2fwd-virtio-* checks;
# port-filters (crate pmd-examples) the igbvf-filters check.
bins=(pmd-setup pci-check l2fwd frame-blast port-filters)
[ "${VM_NO_BUILD:-0}" = 1 ] || echo "ci/vm/test.sh: building ${bins[*]} (release; several minutes the first time)"
pkg_of() { case $1 in frame-blast) echo "pmd-testkit --bin frame-blast" ;; port-filters) echo "pmd-examples --bin port-filters" ;; *) echo "$1 --bins" ;; esac; }
all_built() { local b; for b in "${bins[@]}"; do [ -x "target/release/$b" ] || return 1; done; }
# (--bins, not --bin NAME: a --bin filter applies to every -p package and would skip the others.)
if [ "${VM_NO_BUILD:-0}" = 1 ]; then
  for p in "${bins[@]}"; do
    if [ -x "target/release/$p" ]; then built+=("$p"); else echo "ci/vm/test.sh: VM_NO_BUILD=1 and target/release/$p missing: its checks will FAIL \"binary missing\"" >&2; fi
  done
elif cargo build --release -q -p pmd-setup -p pci-check -p l2fwd -p pmd-testkit -p pmd-examples --bins 2> "$out/build.log" \
   && all_built; then
  built=("${bins[@]}")
else
  for p in "${bins[@]}"; do
    # shellcheck disable=SC2046
    if cargo build --release -q -p $(pkg_of "$p") 2> "$out/build-$p.log"; then built+=("$p")
    else echo "ci/vm/test.sh: $p does not build (see $out/build-$p.log): its checks will FAIL \"binary missing\"" >&2
         grep -m3 -E '^error' "$out/build-$p.log" | sed 's/^/    /' >&2; fi
  done
fi
t_build=$(secs "$t" "$(now)")

# 3. initramfs
t=$(now)
echo "ci/vm/test.sh: building the guest initramfs"
VM_BINARIES="${built[*]:-}" bash ci/vm/build-initramfs.sh "$out/initramfs.cpio.gz" || { echo "ci/vm/test.sh: initramfs build failed" >&2; exit 1; }
t_initramfs=$(secs "$t" "$(now)")

# 4. the guests, one at a time
common="modules nics sysfs-bind hugepages-reserve hugepages-mount status status-json guard bad-malformed bad-malformed-addr bad-nodev bad-driver"
expect_iommu="$common iommu-groups bind-igb bind-virtio-modern bind-virtio-legacy pci-igb pci-virtio-modern pci-virtio-legacy unbind-igb unbind-virtio-modern unbind-virtio-legacy l2fwd-virtio-modern l2fwd-virtio-packed l2fwd-igb l2fwd-igb-adaptive l2fwd-igb-link l2fwd-virtio-adaptive l2fwd-virtio-link l2fwd-virtio-jumbo dpdk-igb-testpmd l2fwd-igb-loop sriov-guard sriov-create igbvf-filters igbvf-promisc-refused l2fwd-igbvf l2fwd-igbvf-adaptive l2fwd-igbvf-link dpdk-igbvf-testpmd l2fwd-igbvf-loop sriov-remove"
expect_vhost="vhost-ping-1 vhost-tcp-1 vhost-host-tcp-1 vhost-ping-2 vhost-tcp-2 vhost-host-tcp-2 vhost-ping-3 vhost-migrate vhost-tcp-3 vhost-ping-after-3 vhost-host-tcp-3 vhost-migrate-log vhost-l2fwd"
expect_noiommu="$common noiommu-refused bind-uio-e1000e bind-uio-igb pci-uio-e1000e pci-uio-igb unbind-uio-e1000e unbind-uio-igb l2fwd-virtio-legacy l2fwd-virtio-legacy-adaptive l2fwd-igb-uio l2fwd-igb-uio-adaptive l2fwd-virtio-modern-uio-adaptive l2fwd-igbvf-uio sriov-uio-remove"
status=0
declare -A wall qrc
for mode in ${VM_MODES:-iommu noiommu vhost}; do
  echo "ci/vm/test.sh: booting the $mode guest (TCG; a minute or two, at most ${VM_TIMEOUT:-240} s, vhost ${VM_TIMEOUT:-180} s)..."
  t=$(now)
  if [ "$mode" = vhost ]; then
    : > "$out/$mode.raw"
    VM_TIMEOUT=${VM_TIMEOUT:-180} bash ci/vm/vhost-guest.sh "$out/initramfs.cpio.gz" "$out/$mode.raw" < /dev/null >> "$out/$mode.raw" 2>&1
  else
    # The link checks: each time the guest prints "GUEST-LINK-READY ID[.TAG]", QEMU device ID's
    # link goes down for 3 s through QEMU's monitor (set_link), then up again (once per
    # ID.TAG: a device's link may be taken down for more than one check).
    mon=$out/$mode.monitor; rm -f "$mon"; : > "$out/$mode.raw"
    ( done_ids=" "
      for _ in $(seq 3000); do
        for tok in $(grep -ao 'GUEST-LINK-READY [a-z0-9.]*' "$out/$mode.raw" 2>/dev/null | awk '{print $2}'); do
          case $done_ids in *" $tok "*) continue ;; esac
          done_ids="$done_ids$tok "; id=${tok%%.*}
          ci/vm/monitor.py "$mon" "set_link $id off" >/dev/null; sleep 3; ci/vm/monitor.py "$mon" "set_link $id on" >/dev/null
        done
        sleep 0.1
      done ) &
    linker=$!
    VM_MONITOR=$mon VM_TIMEOUT=${VM_TIMEOUT:-240} bash ci/vm/run-guest.sh "$mode" "$out/initramfs.cpio.gz" < /dev/null > "$out/$mode.raw" 2>&1
    kill $linker 2>/dev/null; wait $linker 2>/dev/null; rm -f "$mon"
  fi
  qrc[$mode]=$?
  wall[$mode]=$(secs "$t" "$(now)")
  # the console without carriage returns and terminal escapes
  tr -d '\r' < "$out/$mode.raw" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' > "$out/$mode.log"; rm -f "$out/$mode.raw"
done

# 5. summary
echo
printf '%-8s %-22s %-5s %s\n' MODE CHECK RESULT DETAIL
for mode in ${VM_MODES:-iommu noiommu vhost}; do
  log=$out/$mode.log
  grep -a '^GUEST-CHECK ' "$log" | while read -r _ name res detail; do
    printf '%-8s %-22s %-5s %s\n' "$mode" "$name" "$res" "$(echo "$detail" | cut -c1-110)"
  done
done
echo
printf '%-8s %8s %7s %7s %7s %s\n' MODE WALL_S PASSED FAILED SKIPPED NOTES
for mode in ${VM_MODES:-iommu noiommu vhost}; do
  log=$out/$mode.log
  var=expect_$mode
  p=$(grep -ac '^GUEST-CHECK [^ ]* PASS' "$log"); f=$(grep -ac '^GUEST-CHECK [^ ]* FAIL' "$log"); sk=$(grep -ac '^GUEST-CHECK [^ ]* SKIP' "$log")
  notes=()
  missing=""; for c in ${!var}; do grep -aq "^GUEST-CHECK $c \(PASS\|FAIL\|SKIP\)" "$log" || missing="$missing $c"; done
  extra=""; for c in $(grep -a '^GUEST-CHECK ' "$log" | awk '{print $2}'); do case " ${!var} " in *" $c "*) ;; *) extra="$extra $c" ;; esac; done
  dup=$(grep -a '^GUEST-CHECK ' "$log" | awk '{print $2}' | sort | uniq -d | tr '\n' ' ')
  grep -aq '^GUEST-DONE ' "$log" || notes+=("GUEST-DONE missing")
  grep -aq '^GUEST-WATCHDOG' "$log" && notes+=("guest watchdog fired")
  [ "${qrc[$mode]}" = 0 ] || notes+=("qemu exit ${qrc[$mode]}$([ "${qrc[$mode]}" = 124 ] && echo ' (timeout)')")
  [ -z "$missing" ] || notes+=("checks missing:$missing")
  [ -z "$extra" ] || notes+=("unexpected checks:$extra")
  [ -z "$dup" ] || notes+=("duplicated checks: $dup")
  [ "$f" = 0 ] || notes+=("$f failed")
  [ ${#notes[@]} = 0 ] || status=1
  printf '%-8s %8s %7s %7s %7s %s\n' "$mode" "${wall[$mode]}" "$p" "$f" "$sk" "$(IFS=';'; echo "${notes[*]:-ok}")"
done
# 6. forwarding benchmark (iommu guest): DPDK testpmd and our l2fwd on the looped igb pair
# (GUEST-BENCH lines; how the figures are computed: guest-init.sh, "forwarding benchmark").
bench=$(for mode in ${VM_MODES:-iommu noiommu vhost}; do grep -a '^GUEST-BENCH ' "$out/$mode.log"; done)
if [ -n "$bench" ]; then
  echo
  printf '%s\n' "$bench"
  bpps() { printf '%s\n' "$bench" | awk -v n="$1" '$2 == n {for (i = 3; i <= NF; i++) if ($i ~ /^pps=/) {sub(/^pps=/, "", $i); print $i; exit}}'; }
  for pair in igb igbvf; do
    dp=$(bpps dpdk-$pair-testpmd); lp=$(bpps l2fwd-$pair-loop)
    if [ -n "$dp" ] && [ -n "$lp" ] && [ "$dp" -gt 0 ]; then
      awk -v l="$lp" -v d="$dp" -v p="$pair" 'BEGIN {printf "GUEST-BENCH ratio l2fwd-%s-loop/dpdk-%s-testpmd = %.2f (%d / %d pps)\n", p, p, l / d, l, d}'
    fi
  done
fi
echo
echo "timings: install ${t_install}s, cargo build ${t_build}s, initramfs ${t_initramfs}s, total $(secs "$T0" "$(now)")s"
echo "binaries in the guest: ${built[*]:-none}; console logs: $out/<mode>.log"
if [ $status != 0 ]; then
  echo
  echo "ci/vm/test.sh: FAILED. Failing checks with the output of their commands:"
  for mode in ${VM_MODES:-iommu noiommu vhost}; do
    # each FAIL line and the "  | " lines under it
    awk -v m="$mode" '/^GUEST-CHECK /{show = ($3 == "FAIL"); if (show) print m ": " $0; next}
                      /^  \| / {if (show) print m ":   " $0; next} {show = 0}' "$out/$mode.log"
    grep -a '^GUEST-WATCHDOG' "$out/$mode.log" | sed "s/^/$mode: /"
  done
fi
exit $status
