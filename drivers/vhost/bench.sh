#!/bin/bash
# vhost-user back ends compared: DPDK 22.11's net_vhost and ours, each serving DPDK's virtio-user
# (the same front end for both), same testpmd command line (our testpmd takes DPDK's), same run.
#   fe2vh  front end txonly (forwarding on CPU 0) -> back end rxonly (CPU 1)
#          figure: the back end's Rx-pps
#   vh2fe  back end txonly (CPU 1, --txpkts=SIZE) -> front end rxonly (CPU 0)
#          figure: the front end's Rx-pps
# at each frame size of SIZES (default "64 1514"; both sides --txpkts=SIZE). Within a run the two
# back ends alternate which goes first. Figures are medians of the 1-s samples (ci/lib.sh
# testpmd_mpps); cycles per packet = TSC Hz / pps of the one forwarding core that the figure's
# side runs. The last column is the CPU idle % just before the case (below ~95: something else
# ran).
# PACKED=1 makes the front end ask for packed rings (virtio-user's packed_vq=1), so both back
# ends serve packed rings; the default is split rings.
# OURS_BIN=PATH runs that testpmd as ours instead of this tree's (e.g. an older build, to see
# what a change did).
# Usage (root): [PACKED=1] [OURS_BIN=PATH] drivers/vhost/bench.sh [secs=12] [runs=2]
set -u
SECS=${1:-12}; RUNS=${2:-2}; SIZES=${SIZES:-64 1514}
FE_ARGS=""; RINGS=split
[ "${PACKED:-0}" = 1 ] && { FE_ARGS=",packed_vq=1"; RINGS=packed; }
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/ci/lib.sh"
HUGEDIR=$HUGE_DIR
SOCK=/tmp/pmd-vhost-bench.sock
LOGDIR=${LOGDIR:-/tmp/pmd-vhost-bench}; rm -rf "$LOGDIR"; mkdir -p "$LOGDIR"
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not installed (apt-get install -y dpdk)"; exit 1; }
pmd_hugepages 1024 "$HUGEDIR" >/dev/null || exit 1
(cd "$ROOT" && cargo build --release -q -p testpmd) || exit 1
OURS=${OURS_BIN:-$ROOT/target/release/testpmd}
EAL="-n 4 --huge-dir $HUGEDIR --no-pci"
BPID=""
cleanup() {
  [ -n "$BPID" ] && kill -INT "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null
  dpdk_cleanup pvbB pvbF
  rm -f "$SOCK"
}
trap cleanup EXIT
TSC_HZ=$(tsc_hz)
idle() { vmstat 1 2 | tail -1 | awk '{print $15}'; }

# one BIN MODE SIZE BACKLOG FRONTMODE FRONTLOG: the back end (BIN, in the background, forwarding
# on CPU 1) then DPDK's virtio-user front end (forwarding on CPU 0) for SECS.
one() {
  local bin=$1 mode=$2 size=$3 blog=$4 fmode=$5 flog=$6
  rm -f "$SOCK"
  timeout -s INT $((SECS + 8)) "$bin" -l 0,1 --main-lcore 0 $EAL --file-prefix pvbB \
    --vdev "net_vhost0,iface=$SOCK,queues=1" \
    -- --forward-mode="$mode" --txpkts="$size" --nb-cores=1 --stats-period 1 >"$blog" 2>&1 &
  BPID=$!
  for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
  sleep 1
  timeout -s INT "$SECS" dpdk-testpmd -l 0,1 --main-lcore 1 $EAL --single-file-segments --file-prefix pvbF \
    --vdev "net_virtio_user0,path=$SOCK,queues=1$FE_ARGS" \
    -- --forward-mode="$fmode" --txpkts="$size" --nb-cores=1 --stats-period 1 >"$flog" 2>&1
  kill -INT "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null; BPID=""
  dpdk_cleanup pvbB pvbF
}
cpp() { cycles_per_pkt "$TSC_HZ" "$1"; }

echo "load before: $(uptime)"
echo "rings: $RINGS"
echo "| size | dir | run | DPDK back end Mpps | ours Mpps | ours/DPDK | cycles/pkt DPDK / ours | idle% before |"
echo "|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
  for i in $(seq 1 "$RUNS"); do
    order=$(bench_order "$i")
    declare -A F=() I=()
    for who in $order; do
      bin=dpdk-testpmd; [ "$who" = ours ] && bin=$OURS
      I[fe2vh-$who]=$(idle)
      one "$bin" rxonly "$size" "$LOGDIR/fe2vh-$size-$who-$i.log" txonly "$LOGDIR/fe2vh-$size-$who-fe-$i.log"
      F[fe2vh-$who]=$(testpmd_mpps "$LOGDIR/fe2vh-$size-$who-$i.log" Rx-pps nz)
      I[vh2fe-$who]=$(idle)
      one "$bin" txonly "$size" "$LOGDIR/vh2fe-$size-$who-be-$i.log" rxonly "$LOGDIR/vh2fe-$size-$who-$i.log"
      F[vh2fe-$who]=$(testpmd_mpps "$LOGDIR/vh2fe-$size-$who-$i.log" Rx-pps nz)
    done
    for dir in fe2vh vh2fe; do
      d=${F[$dir-dpdk]}; o=${F[$dir-ours]}
      echo "| $size | $dir | $i ($order) | $d | $o | $(ratio "$o" "$d") | $(cpp "$d") / $(cpp "$o") | ${I[$dir-dpdk]}/${I[$dir-ours]} |"
    done
    unset F I
  done
done
echo "logs in $LOGDIR"
