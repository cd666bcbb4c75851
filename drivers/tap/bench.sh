#!/bin/bash
# Tap transmit throughput, 64-byte IPv4/UDP frames, DPDK's net_tap vs ours, same run.
#   (a) DPDK testpmd --forward-mode=txonly on net_tap0,iface=dtap0
#   (b) ours: tap_perf tx on net_tap0,iface=dtap0
# Both run inside a private network namespace (made and removed here) with the data path
# polling on CPU 1 (testpmd: main lcore 0, forwarding lcore 1; ours: -l 1). The figure is
# the kernel interface's rx_packets delta over SECS seconds, after a 5 s warm-up (what
# the kernel actually received), as in ../shared/dpdk-baseline.md section (e).
# Usage (root): drivers/tap/bench.sh [SECS=10] [RUNS=3]
set -u
SECS=${1:-10}; RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/ci/lib.sh"
HUGEDIR=$HUGE_DIR
NS=pmdtapbench$$
PFX_D=pmdtapbd$$; PFX_O=pmdtapbo$$
LOGDIR=${LOGDIR:-/tmp/pmd-tap-bench}; mkdir -p "$LOGDIR"
WARM=5
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not installed (apt-get install dpdk)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
pmd_hugepages 1024 "$HUGEDIR" >/dev/null || exit 1
(cd "$ROOT" && cargo build --release -q -p pmd-tap --example tap_perf) || exit 1
PERF=$ROOT/target/release/examples/tap_perf

cleanup() {
  [ -n "${PID:-}" ] && kill -INT "$PID" 2>/dev/null && sleep 1 && kill -KILL "$PID" 2>/dev/null
  ip netns del $NS 2>/dev/null
  dpdk_cleanup $PFX_D $PFX_O
}
trap cleanup EXIT
ip netns add $NS
ip netns exec $NS sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n $NS link set lo up

cnt() { ip netns exec $NS cat /sys/class/net/dtap0/statistics/rx_packets 2>/dev/null || echo 0; }
# measure LOG: waits for dtap0, warms up, counts for SECS, stops the sender; prints Mpps
measure() {
  for _ in $(seq 100); do ip -n $NS link show dtap0 >/dev/null 2>&1 && break; sleep 0.1; done
  sleep $WARM
  local r1 r2; r1=$(cnt); sleep "$SECS"; r2=$(cnt)
  kill -INT "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=
  # The next sender must create its own dtap0: wait until this one's is gone.
  for _ in $(seq 100); do ip -n $NS link show dtap0 >/dev/null 2>&1 || break; sleep 0.1; done
  rate_mpps $((r2 - r1)) "$SECS"
}
# rate_mpps, ratio and median: ci/lib.sh.

DS=(); OS=()
for i in $(seq 1 "$RUNS"); do
  ip netns exec $NS timeout -s INT $((SECS+WARM+20)) dpdk-testpmd -l 0,1 --main-lcore 0 -n 4 --huge-dir $HUGEDIR \
    --file-prefix $PFX_D --no-pci --vdev net_tap0,iface=dtap0 -- \
    --forward-mode=txonly --txpkts=64 --nb-cores=1 --stats-period 1 >"$LOGDIR/dpdk-$i.log" 2>&1 &
  PID=$!
  D=$(measure)
  dpdk_cleanup $PFX_D
  ip netns exec $NS timeout -s INT $((SECS+WARM+20)) "$PERF" -l 1 --no-pci --huge-dir $HUGEDIR --file-prefix $PFX_O \
    --vdev net_tap0,iface=dtap0 -- tx >"$LOGDIR/ours-$i.log" 2>&1 &
  PID=$!
  O=$(measure)
  dpdk_cleanup $PFX_O
  DS+=("$D"); OS+=("$O")
  echo "run $i (64 B, ${SECS}s): kernel dtap0 rx  DPDK net_tap $D Mpps | ours $O Mpps | ours/DPDK $(ratio "$O" "$D")"
done
DM=$(median "${DS[@]}"); OM=$(median "${OS[@]}")
echo "median of $RUNS: DPDK net_tap $DM Mpps | ours $OM Mpps | ours/DPDK $(ratio "$OM" "$DM")"
echo "logs in $LOGDIR"
