#!/bin/bash
# virtio-user <-> DPDK vhost-user throughput, 64-byte frames, DPDK vs this driver, same run.
#   (a) DPDK virtio-user txonly  -> DPDK vhost rxonly     figure: vhost Rx-pps
#   (b) ours  virtio-user tx     -> DPDK vhost rxonly     figure: vhost Rx-pps
#   (c) DPDK vhost txonly        -> DPDK virtio-user rxonly  figure: virtio-user Rx-pps
#   (d) DPDK vhost txonly        -> ours virtio-user rx      figure: our rx Mpps
# The vhost testpmd forwards on CPU 1 (main lcore 0); the virtio-user side polls on CPU 0.
# Figures are medians of the 1-s samples, dropping the first 2 and the last.
# Usage (root): drivers/virtio/bench.sh [secs=10] [runs=1]
set -u
SECS=${1:-10}; RUNS=${2:-1}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/ci/lib.sh"
HUGEDIR=$HUGE_DIR
SOCK=/tmp/pmd-virtio-bench.sock
LOGDIR=${LOGDIR:-/tmp/pmd-virtio-bench}; mkdir -p "$LOGDIR"
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not installed (apt-get install dpdk)"; exit 1; }
pmd_hugepages 1024 "$HUGEDIR" >/dev/null || exit 1
(cd "$ROOT" && cargo build --release -q -p pmd-virtio --example virtio_user_perf) || exit 1
PERF=$ROOT/target/release/examples/virtio_user_perf

# The figures (ci/lib.sh): testpmd_mpps LOG Rx-pps|Tx-pps nz, perf_mpps LOG (our *_perf
# lines), ratio A B.
vhost() { # mode log: vhost testpmd (server) in the background, fwd lcore on CPU 1
  rm -f $SOCK
  timeout -s INT $((SECS+8)) dpdk-testpmd -l 0,1 --main-lcore 0 -n 4 --huge-dir $HUGEDIR --file-prefix pvbA --no-pci \
    --vdev "net_vhost0,iface=$SOCK,queues=1" -- --forward-mode=$1 --txpkts=64 --nb-cores=1 --stats-period 1 >"$2" 2>&1 &
  VPID=$!
  for _ in $(seq 50); do [ -S $SOCK ] && break; sleep 0.1; done
  sleep 1
}
dpdk_virtio() { # mode log: DPDK virtio-user testpmd, fwd lcore on CPU 0
  timeout -s INT $SECS dpdk-testpmd -l 0,1 --main-lcore 1 -n 4 --huge-dir $HUGEDIR --file-prefix pvbB --no-pci \
    --single-file-segments --vdev "net_virtio_user0,path=$SOCK,queues=1" -- \
    --forward-mode=$1 --txpkts=64 --nb-cores=1 --stats-period 1 >"$2" 2>&1
}
our_virtio() { # mode log: ours, main lcore (the polling thread) on CPU 0
  timeout -s INT $((SECS+5)) "$PERF" -l 0 --no-pci --file-prefix pvbC \
    --vdev "net_virtio_user0,path=$SOCK,queue_size=256" -- $1 --duration $SECS >"$2" 2>&1
}

for i in $(seq 1 "$RUNS"); do
  vhost rxonly "$LOGDIR/a-vhost-$i.log"; dpdk_virtio txonly "$LOGDIR/a-virtio-$i.log"; wait $VPID
  A=$(testpmd_mpps "$LOGDIR/a-vhost-$i.log" Rx-pps nz)
  vhost rxonly "$LOGDIR/b-vhost-$i.log"; our_virtio tx "$LOGDIR/b-ours-$i.log"; kill -INT $VPID 2>/dev/null; wait $VPID
  B=$(testpmd_mpps "$LOGDIR/b-vhost-$i.log" Rx-pps nz); BO=$(perf_mpps "$LOGDIR/b-ours-$i.log")
  vhost txonly "$LOGDIR/c-vhost-$i.log"; dpdk_virtio rxonly "$LOGDIR/c-virtio-$i.log"; wait $VPID
  C=$(testpmd_mpps "$LOGDIR/c-virtio-$i.log" Rx-pps nz)
  vhost txonly "$LOGDIR/d-vhost-$i.log"; our_virtio rx "$LOGDIR/d-ours-$i.log"; kill -INT $VPID 2>/dev/null; wait $VPID
  D=$(perf_mpps "$LOGDIR/d-ours-$i.log")
  echo "run $i (64 B, ${SECS}s):"
  echo "  virtio-user -> vhost:  DPDK $A Mpps | ours $B Mpps (our tx count $BO Mpps) | ours/DPDK $(ratio $B $A)"
  echo "  vhost -> virtio-user:  DPDK $C Mpps | ours $D Mpps | ours/DPDK $(ratio $D $C)"
done
rm -f $SOCK
dpdk_cleanup pvbA pvbB pvbC
echo "logs in $LOGDIR"
