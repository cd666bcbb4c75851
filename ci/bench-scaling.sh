#!/usr/bin/env bash
# Scaling from one forwarding lcore to two, ours and DPDK 22.11 side by side, same arguments:
#
#   null-io   testpmd io on two net_null ports; 1 lcore: --lcores 0@0,1@1 --nb-cores=1,
#             one queue per port; 2 lcores: --lcores 0@0,1@0,2@1 --nb-cores=2 --rxq=2 --txq=2
#             (the main lcore shares CPU 0 with forwarding lcore 1: this machine has two
#             CPUs; testpmd's main lcore wakes once a second for --stats-period)
#   ring-io   the same on one net_ring loopback port with --tx-first
#   memif-io  the same on two memif ports of one process, a server and a client on one
#             socket (a loopback), with --tx-first: each frame is copied into the
#             client's buffers and out again (1 and 2 rings each way)
#   l2fwd     l2fwd on two net_null ports; 1 lcore: -l 1 -q 2; 2 lcores: -l 0,1 -q 1 (each
#             lcore forwards one port; both l2fwds forward on the main lcore too). DPDK: its
#             l2fwd example
#
# Runs alternate which side goes first. Prints per case the median rate at 1 and 2 lcores
# for each side, the scaling (2-lcore rate / 1-lcore rate) of each, ours/DPDK at 2 lcores,
# and TSC cycles per packet per forwarding lcore (lcores x TSC Hz / rate). Writes
# target/bench/scaling.md.
#
# Usage: ci/bench-scaling.sh [SECS=8] [RUNS=3]   (root; about 16 x SECS x RUNS seconds)
set -uo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
SECS=${1:-8}; RUNS=${2:-3}
OUT=target/bench; LOGS=$OUT/scaling-logs; rm -rf "$LOGS"; mkdir -p "$LOGS"
bash ci/setup.sh --dpdk >/dev/null
cargo build --release -q -p testpmd -p l2fwd || exit 1
DL2=$(dpdk_example l2fwd "$OUT")
[ -n "$DL2" ] || { echo "ci/bench-scaling.sh: DPDK's l2fwd example did not build"; exit 1; }
EAL="-n 4 --huge-dir $HUGE_DIR --no-pci"
TSC_HZ=$(tsc_hz)
trap 'dpdk_cleanup sc_dpdk sc_ours' EXIT

# one WHO CASE LCORES LOG: one run; prints the rate (Mpps)
one() {
  local who=$1 case=$2 n=$3 log=$4 bin lc
  if [ "$case" = l2fwd ]; then
    bin=target/release/l2fwd; [ "$who" = dpdk ] && bin=$DL2
    if [ "$n" = 1 ]; then lc="-l 1"; q=2; else lc="-l 0,1"; q=1; fi
    timeout -s INT "$SECS" "$bin" $lc $EAL --file-prefix sc_$who --vdev net_null0 --vdev net_null1 \
      -- -p 0x3 -q $q -T 1 >"$log" 2>&1
    l2fwd_mpps "$log"
    return
  fi
  bin=target/release/testpmd; [ "$who" = dpdk ] && bin=dpdk-testpmd
  local vdevs="--vdev net_null0 --vdev net_null1" app="--forward-mode=io"
  [ "$case" = ring-io ] && { vdevs="--vdev net_ring0"; app="--forward-mode=io --tx-first"; }
  if [ "$case" = memif-io ]; then
    local m=/tmp/sc-memif-$who.sock
    vdevs="--vdev net_memif0,role=server,socket=$m --vdev net_memif1,role=client,socket=$m"
    app="--forward-mode=io --tx-first"
  fi
  if [ "$n" = 1 ]; then lc="--lcores 0@0,1@1"; app="$app --nb-cores=1"
  else lc="--lcores 0@0,1@0,2@1"; app="$app --nb-cores=2 --rxq=2 --txq=2"; fi
  timeout -s INT "$SECS" "$bin" $lc $EAL --file-prefix sc_$who $vdevs -- $app --stats-period 1 >"$log" 2>&1
  testpmd_mpps "$log" Tx-pps
}

declare -A V
for case in null-io ring-io memif-io l2fwd; do
  for n in 1 2; do
    o=(); d=()
    for i in $(seq 1 "$RUNS"); do
      order=$(bench_order "$i")
      for who in $order; do
        r=$(one "$who" "$case" "$n" "$LOGS/$case-$n-$who-$i.log")
        if [ "$who" = ours ]; then o+=("$r"); else d+=("$r"); fi
      done
      dpdk_cleanup sc_dpdk sc_ours
    done
    V[$case-$n-ours]=$(median "${o[@]}"); V[$case-$n-dpdk]=$(median "${d[@]}")
    echo "$case, $n lcore(s): ours ${o[*]}, DPDK ${d[*]}" >&2
  done
done

{
  echo "| case | ours 1 lcore | ours 2 lcores | ours scaling | DPDK 1 lcore | DPDK 2 lcores | DPDK scaling | ours/DPDK at 2 lcores | cycles/pkt per lcore at 2, ours / DPDK |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for case in null-io ring-io memif-io l2fwd; do
    o1=${V[$case-1-ours]} o2=${V[$case-2-ours]} d1=${V[$case-1-dpdk]} d2=${V[$case-2-dpdk]}
    echo "| $case | $o1 | $o2 | $(ratio "$o2" "$o1") | $d1 | $d2 | $(ratio "$d2" "$d1") | $(ratio "$o2" "$d2") | $(cycles_per_pkt "$TSC_HZ" "$o2" 2 1) / $(cycles_per_pkt "$TSC_HZ" "$d2" 2 1) |"
  done
  echo "(ci/bench-scaling.sh $SECS $RUNS on $(date -u +%F), Mpps, medians of $RUNS; logs in $LOGS)"
} | tee "$OUT/scaling.md"
