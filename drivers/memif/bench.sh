#!/bin/bash
# memif throughput, 64-byte frames, DPDK 22.11 vs this driver, same run
# (shared/dpdk-baseline.md section (c): server txonly forwards on CPU 1, client rxonly on CPU 0).
#   (a) DPDK server txonly -> DPDK client rxonly   figure: DPDK client Rx-pps
#   (b) DPDK server txonly -> ours client rx       figure: our rx Mpps
#   (c) ours server tx     -> DPDK client rxonly   figure: DPDK client Rx-pps
# Ratios: (b)/(a) for our receive side, (c)/(a) for our transmit side.
# Figures are medians of the 1-s samples, dropping the first 2 and the last. The last column is
# the CPU idle % (vmstat, 1 s) just before each case: below ~95 another job was running.
# Usage (root): drivers/memif/bench.sh [secs=20] [runs=3]
set -u
SECS=${1:-20}; RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/ci/lib.sh"
HUGEDIR=$HUGE_DIR
SOCK=/tmp/pmd-memif-bench.sock      # abstract name (DPDK's default socket-abstract=yes)
LOGDIR=${LOGDIR:-/tmp/pmd-memif-bench}; mkdir -p "$LOGDIR"
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not installed (apt-get install -y dpdk)"; exit 1; }
pmd_hugepages 1024 "$HUGEDIR" >/dev/null || exit 1
(cd "$ROOT" && cargo build --release -q -p pmd-memif --example memif_perf) || exit 1
PERF=$ROOT/target/release/examples/memif_perf
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  dpdk_cleanup pmbA pmbB pmbC pmbD
}
trap cleanup EXIT

# The figures (ci/lib.sh): testpmd_mpps LOG Rx-pps|Tx-pps nz, perf_mpps LOG (our *_perf
# lines), ratio A B.
dpdk_server() { # log: DPDK server txonly in the background, fwd lcore on CPU 1
  timeout -s INT $((SECS+8)) dpdk-testpmd -l 0,1 --main-lcore 0 -n 4 --huge-dir $HUGEDIR --file-prefix pmbA --no-pci \
    --vdev net_memif0,role=server,socket=$SOCK -- --forward-mode=txonly --txpkts=64 --nb-cores=1 --stats-period 1 >"$1" 2>&1 &
  SPID=$!; PIDS+=($SPID); sleep 3
}
our_server() { # log: ours, server tx on CPU 1, in the background
  timeout -s INT $((SECS+8)) "$PERF" -l 1 --no-pci --file-prefix pmbC \
    --vdev net_memif0,role=server,socket=$SOCK -- tx --duration $((SECS+4)) >"$1" 2>&1 &
  SPID=$!; PIDS+=($SPID); sleep 1
}
dpdk_client() { # log: DPDK client rxonly, fwd lcore on CPU 0
  timeout -s INT $SECS dpdk-testpmd -l 0,1 --main-lcore 1 -n 4 --huge-dir $HUGEDIR --file-prefix pmbB --no-pci \
    --vdev net_memif0,role=client,socket=$SOCK -- --forward-mode=rxonly --nb-cores=1 --stats-period 1 >"$1" 2>&1
}
our_client() { # log: ours, client rx on CPU 0
  timeout -s INT $((SECS+5)) "$PERF" -l 0 --no-pci --file-prefix pmbD \
    --vdev net_memif0,role=client,socket=$SOCK -- rx --duration $SECS >"$1" 2>&1
}
stop_server() { kill -INT $SPID 2>/dev/null; wait $SPID 2>/dev/null; dpdk_cleanup pmbA; }
idle() { vmstat 1 2 | tail -1 | awk '{print $15}'; }   # CPU idle % over 1 s, before a case

echo "load before: $(uptime)"
ROWS=()
for i in $(seq 1 "$RUNS"); do
  IA=$(idle); dpdk_server "$LOGDIR/a-server-$i.log"; dpdk_client "$LOGDIR/a-client-$i.log"; stop_server
  A=$(testpmd_mpps "$LOGDIR/a-client-$i.log" Rx-pps nz); AT=$(testpmd_mpps "$LOGDIR/a-server-$i.log" Tx-pps nz)
  IB=$(idle); dpdk_server "$LOGDIR/b-server-$i.log"; our_client "$LOGDIR/b-ours-$i.log"; stop_server
  B=$(perf_mpps "$LOGDIR/b-ours-$i.log"); BT=$(testpmd_mpps "$LOGDIR/b-server-$i.log" Tx-pps nz)
  IC=$(idle); our_server "$LOGDIR/c-ours-$i.log"; dpdk_client "$LOGDIR/c-client-$i.log"; stop_server
  C=$(testpmd_mpps "$LOGDIR/c-client-$i.log" Rx-pps nz); CT=$(perf_mpps "$LOGDIR/c-ours-$i.log")
  ROWS+=("| $i | $A (srv tx $AT) | $B (srv tx $BT) | $(ratio $B $A) | $C (our tx $CT) | $(ratio $C $A) | $IA/$IB/$IC |")
done
echo
echo "memif, 64-byte frames, ${SECS}s per case, Mpps (medians of 1-s samples)"
echo "| run | (a) DPDK srv -> DPDK cli | (b) DPDK srv -> our cli | (b)/(a) | (c) our srv -> DPDK cli | (c)/(a) | idle% before a/b/c |"
echo "|---|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo "logs in $LOGDIR"
