#!/bin/bash
# AF_XDP throughput over a veth pair, 64-byte frames: DPDK 22.11's net_af_xdp vs this driver,
# same run, same namespaces. Layout of ../shared/dpdk-baseline.md section (e):
#   netns pmdxb-a: va0 (02:00:00:00:00:01), the PMD's side;  netns pmdxb-b: vb0 (02:00:00:00:00:02), the kernel peer.
#   tx: DPDK testpmd txonly --vdev net_af_xdp0,iface=va0   vs  ours: af_xdp_perf tx
#       figure: vb0 rx_packets delta over SECS s (the peer's receive rate), after 3 s of warm-up
#   rx: afp_blast (AF_PACKET sendmmsg, 64 B, CPU 0) on vb0 for SECS s -> DPDK testpmd rxonly  vs  ours: af_xdp_perf rx
#       figure: packets the PMD received / generator time (as in the baseline; generator-bound)
# The PMD polls on CPU 1 (testpmd: main lcore 0, forwarding lcore 1; ours: -l 1).
# XDP_ARGS (e.g. ",busy_budget=0") is appended to both sides' --vdev: both drivers take DPDK's
# busy_budget (preferred busy polling, on by default with budget 64 in both).
# Usage (root): [XDP_ARGS=,k=v...] drivers/af_xdp/bench.sh [secs=10] [runs=1]
set -u
SECS=${1:-10}; RUNS=${2:-1}
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/ci/lib.sh"
HUGEDIR=$HUGE_DIR
NSA=pmdxb-a; NSB=pmdxb-b
LOGDIR=${LOGDIR:-/tmp/pmd-af-xdp-bench}; mkdir -p "$LOGDIR"
AFP_SRC=${AFP_BLAST_SRC:-$ROOT/../shared/dpdk-baseline/afp_blast.c}
BLAST=$ROOT/target/bench/afp_blast
[ "$(id -u)" = 0 ] || { echo "bench.sh: needs root (namespaces, AF_XDP)"; exit 1; }
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not installed (apt-get install dpdk)"; exit 1; }
[ -f "$AFP_SRC" ] || { echo "afp_blast.c not found at $AFP_SRC (set AFP_BLAST_SRC)"; exit 1; }
pmd_hugepages 1024 "$HUGEDIR" >/dev/null || exit 1
mkdir -p "$(dirname "$BLAST")" && cc -O2 -o "$BLAST" "$AFP_SRC" || exit 1
(cd "$ROOT" && cargo build --release -q -p pmd-af-xdp --example af_xdp_perf) || exit 1
PERF=$ROOT/target/release/examples/af_xdp_perf

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  ip netns del $NSA 2>/dev/null; ip netns del $NSB 2>/dev/null
  dpdk_cleanup pxbtx pxbrx pxbours
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cleanup
ip netns add $NSA && ip netns add $NSB || exit 1
for n in $NSA $NSB; do
  ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n $n link set lo up
done
ip link add va0 netns $NSA type veth peer name vb0 netns $NSB || exit 1
ip -n $NSA link set va0 address 02:00:00:00:00:01 up
ip -n $NSB link set vb0 address 02:00:00:00:00:02 up

cnt() { ip netns exec $NSB cat /sys/class/net/vb0/statistics/$1; }
# rate_mpps COUNT SECONDS, perf_mpps LOG and ratio A B: ci/lib.sh.
load() { echo "load $(cut -d' ' -f1-3 /proc/loadavg), busiest: $(ps -eo pcpu,comm --sort=-pcpu --no-headers | head -2 | awk '{printf "%s(%s%%) ", $2, $1}')"; }
testpmd() { # mode prefix log [secs]: testpmd on va0 (net_af_xdp), forwarding on CPU 1, in the background
  ip netns exec $NSA timeout -s INT "$4" dpdk-testpmd -l 0,1 --main-lcore 0 -n 4 --huge-dir $HUGEDIR \
    --file-prefix "$2" --no-pci --vdev "net_af_xdp0,iface=va0${XDP_ARGS:-}" -- \
    --forward-mode="$1" --txpkts=64 --nb-cores=1 --stats-period 1 >"$3" 2>&1 &
  PIDS+=($!); BG=$!
}
ours() { # mode log secs: af_xdp_perf on va0, polling on CPU 1, in the background
  ip netns exec $NSA timeout -s INT "$(( $3 + 5 ))" "$PERF" -l 1 --no-pci --file-prefix pxbours \
    --vdev "net_af_xdp0,iface=va0${XDP_ARGS:-}" -- "$1" --duration "$3" >"$2" 2>&1 &
  PIDS+=($!); BG=$!
}
tx_window() { # after 3 s of warm-up, the peer's rx_packets delta over SECS s -> Mpps
  sleep 3
  local r1 d1 r2 d2; r1=$(cnt rx_packets); d1=$(cnt rx_dropped); sleep "$SECS"; r2=$(cnt rx_packets); d2=$(cnt rx_dropped)
  echo "$(rate_mpps $((r2 - r1)) "$SECS") $((d2 - d1))"
}
blast() { # runs the generator on vb0 (CPU 0) for SECS s; prints "sent seconds"
  local g; g=$(ip netns exec $NSB taskset -c 0 "$BLAST" vb0 "$SECS" 64 64)
  echo "$g" >>"$LOGDIR/blast.log"
  echo "$(echo "$g" | sed -n 's/.*sent=\([0-9]*\).*/\1/p') $(echo "$g" | sed -n 's/.* in \([0-9.]*\)s.*/\1/p')"
}

echo "af_xdp bench: 64-byte frames, ${SECS} s windows, $RUNS run(s), vdev net_af_xdp0,iface=va0${XDP_ARGS:-}; logs in $LOGDIR"
echo "before: $(load)"
for i in $(seq 1 "$RUNS"); do
  # (a) tx, DPDK
  testpmd txonly pxbtx "$LOGDIR/a-dpdk-tx-$i.log" $((SECS + 5)); read -r A AD < <(tx_window); wait $BG
  # (b) tx, ours
  ours tx "$LOGDIR/b-ours-tx-$i.log" $((SECS + 4)); read -r B BD < <(tx_window); wait $BG
  BO=$(perf_mpps "$LOGDIR/b-ours-tx-$i.log")
  # (c) rx, DPDK
  testpmd rxonly pxbrx "$LOGDIR/c-dpdk-rx-$i.log" $((SECS + 8)); sleep 4
  read -r CS CT < <(blast); kill -INT $BG 2>/dev/null; wait $BG
  CN=$(grep -A1 'Accumulated forward statistics' "$LOGDIR/c-dpdk-rx-$i.log" | awk '/RX-packets/{print $2}')
  C=$(rate_mpps "${CN:-0}" "$CT")
  # (d) rx, ours
  ours rx "$LOGDIR/d-ours-rx-$i.log" $((SECS + 8)); sleep 4
  read -r DS DT < <(blast); kill -INT $BG 2>/dev/null; wait $BG
  DN=$(sed -n 's/.*ipackets: \([0-9]*\).*/\1/p' "$LOGDIR/d-ours-rx-$i.log")
  D=$(rate_mpps "${DN:-0}" "$DT")
  echo "run $i:"
  echo "  tx va0 -> vb0 (vb0 rx_packets/s):  DPDK net_af_xdp $A Mpps (vb0 drops +$AD) | ours $B Mpps (drops +$BD; our own count $BO) | ours/DPDK $(ratio "$B" "$A")"
  echo "  rx vb0 -> va0 (received/gen time): DPDK net_af_xdp $C Mpps ($CN of $CS sent) | ours $D Mpps ($DN of $DS sent) | ours/DPDK $(ratio "$D" "$C")"
  echo "  generator: $(rate_mpps "$CS" "$CT") / $(rate_mpps "$DS" "$DT") Mpps offered; xstats: $(grep -o 'xdp_native=[0-9]*\|zero_copy=[0-9]*' "$LOGDIR/d-ours-rx-$i.log" | tr '\n' ' ')"
done
echo "after: $(load)"
