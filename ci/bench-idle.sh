#!/usr/bin/env bash
# Adaptive mode (l2fwd --idle-sleep USECS) against pure polling, same run: our pktgen (CPU 0)
# sends 64-byte UDP frames (to 2.1.1.1) over link A to the forwarder (CPU 1), which sends
# them over link B back to pktgen; at an idle trickle (1 pps), 10 kpps, 1 Mpps and full
# rate, SECS each, in pure polling and in adaptive mode at each idle threshold of IDLE_US
# (default "300 50": l3fwd-power's 300 µs, and 50 µs, short enough to sleep between the
# packets of 10 kpps), the modes taking turns to go first.
#   TRANSPORT=memif (default)  the links are memif: l2fwd serves, pktgen is the client.
#   TRANSPORT=virtio-user      the links are vhost-user: pktgen runs net_vhost, the forwarder
#                              virtio-user; a fourth mode runs DPDK's l3fwd-power example
#                              (dpdk-doc) --interrupt-only as the forwarder: DPDK's rx-interrupt
#                              loop on DPDK's virtio-user (it sleeps after 300 empty polls
#                              1 µs apart; it also looks up 2.1.1.1 in its LPM table and
#                              rewrites both MACs, which our l2fwd --no-mac-updating does not).
#                              DPDK's memif PMD has no rx interrupts, so memif has no DPDK row.
# Per mode and rate it prints:
#   CPU         user + system time of the forwarder process over the middle of pktgen's
#               run, its first 2 s and last 1 s left out (/proc/PID/stat), % of one core
#   rx Mpps     what pktgen received back
#   p50 / p99   pktgen's latency, µs (TSC timestamp in each frame; both processes on one
#               machine, so the clocks agree)
# Goals (issue 11): at full rate within 3% of polling; idle under 2% of a core; p99 at
# 10 kpps within 50 µs of polling's.
#
# Usage: [TRANSPORT=memif|virtio-user] ci/bench-idle.sh [SECS=8] [RUNS=1]
#        (builds l2fwd and pktgen in release mode, and for virtio-user DPDK's l3fwd-power
#        example; no root needed: unix sockets and memfd memory, every process --no-huge)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-8}; RUNS=${2:-1}
IDLE_US=${IDLE_US:-300 50}
case $SECS$RUNS in *[!0-9]*) echo "usage: ci/bench-idle.sh [SECS] [RUNS] (whole numbers)" >&2; exit 2 ;; esac
[ "$SECS" -ge 4 ] || { echo "ci/bench-idle.sh: SECS must be at least 4" >&2; exit 2; }
TRANSPORT=${TRANSPORT:-memif}
case $TRANSPORT in memif|virtio-user) ;; *) echo "ci/bench-idle.sh: TRANSPORT must be memif or virtio-user" >&2; exit 2 ;; esac
source ci/lib.sh
echo "ci/bench-idle.sh: building l2fwd and pktgen (release)" >&2
cargo build --release -q -p l2fwd -p pktgen || exit 1
L2FWD=$ROOT/target/release/l2fwd
PKTGEN=$ROOT/target/release/pktgen
if [ "$TRANSPORT" = virtio-user ]; then
  L3FWD_POWER=$(dpdk_example l3fwd-power "$ROOT/target/dpdk-examples") || exit 1
fi
LOGS=$(mktemp -d /tmp/pmd-bench-idle.XXXXXX)
FWPID="" PGPID=""
cleanup() {
  for p in $FWPID $PGPID; do kill -INT "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$LOGS" /var/run/dpdk/pib-fw-* /var/run/dpdk/pib-pg-* 2>/dev/null
}
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); k=sys.argv[2].split("."); v=d
for x in k: v=v[x]
print(v)' "$@"; }

# forwarder MODE TAG A B: starts the forwarder of MODE on links A and B in the background.
forwarder() {
  local mode=$1 tag=$2 a=$3 b=$4 extra=() vdevs=()
  case $TRANSPORT in
    memif) vdevs=(--vdev "net_memif0,role=server,socket=$a" --vdev "net_memif1,role=server,socket=$b") ;;
    virtio-user) vdevs=(--vdev "net_virtio_user0,path=$a" --vdev "net_virtio_user1,path=$b") ;;
  esac
  case $mode in
    dpdk-l3fwd-power)
      "$L3FWD_POWER" -l 1 --no-huge -m 512 --no-pci --log-level=user1:notice --file-prefix "pib-fw-$tag" \
        "${vdevs[@]}" -- -p 0x3 --config="(0,0,1),(1,0,1)" --interrupt-only --parse-ptype \
        >"$LOGS/fw-$tag.log" 2>&1 &
      ;;
    *)
      case $mode in adaptive-*) extra=(--idle-sleep "${mode#adaptive-}") ;; esac
      "$L2FWD" -l 1 --no-huge --file-prefix "pib-fw-$tag" "${vdevs[@]}" \
        -- -p 0x3 -q 2 -T 0 --no-mac-updating "${extra[@]}" >"$LOGS/fw-$tag.log" 2>&1 &
      ;;
  esac
  FWPID=$!
}

# one MODE RATE_MPPS TAG: prints "cpu% rx_mpps p50_us p99_us"
one() {
  local mode=$1 rate=$2 tag=$3 vdevs=()
  local a=/tmp/pmd-idle-a-$$-$tag.sock b=/tmp/pmd-idle-b-$$-$tag.sock
  case $TRANSPORT in
    memif) vdevs=(--vdev "net_memif0,role=client,socket=$a" --vdev "net_memif1,role=client,socket=$b") ;;
    virtio-user) vdevs=(--vdev "net_vhost0,iface=$a" --vdev "net_vhost1,iface=$b") ;;
  esac
  # memif: the forwarder serves and starts first; vhost-user: pktgen's net_vhost listens,
  # and the forwarder connects within pktgen's 2-s wait for the link.
  [ "$TRANSPORT" = memif ] && { forwarder "$mode" "$tag" "$a" "$b"; sleep 1; }
  "$PKTGEN" -l 0 --no-huge --file-prefix "pib-pg-$tag" "${vdevs[@]}" \
    -- --tx-port 0 --rx-port 1 --rate "$rate" --duration "$SECS" -T 0 --dst-ip 2.1.1.1 --json \
    >"$LOGS/pktgen-$tag.json" 2>"$LOGS/pktgen-$tag.err" &
  PGPID=$!
  if [ "$TRANSPORT" = virtio-user ]; then
    for _ in $(seq 100); do [ -S "$a" ] && [ -S "$b" ] && break; sleep 0.02; done
    forwarder "$mode" "$tag" "$a" "$b"
  fi
  # The forwarder's CPU over the middle of pktgen's run (its start and end left out).
  local t0 c0 t1 c1
  sleep 2
  t0=$(date +%s.%N); c0=$(cpu_ticks "$FWPID")
  sleep "$((SECS - 3))"
  t1=$(date +%s.%N); c1=$(cpu_ticks "$FWPID")
  wait "$PGPID"; PGPID=""
  kill -INT "$FWPID"; wait "$FWPID" 2>/dev/null; FWPID=""
  rm -f "$a" "$b"
  local f=$LOGS/pktgen-$tag.json
  if ! json "$f" rx_mpps >/dev/null 2>&1; then
    echo "nan nan nan nan"; echo "ci/bench-idle.sh: pktgen $tag failed: $(tail -3 "$LOGS/pktgen-$tag.err")" >&2; return
  fi
  awk -v c="$((c1 - c0))" -v hz="$HZ" -v a="$t0" -v b="$t1" \
      -v rx="$(json "$f" rx_mpps)" -v p50="$(json "$f" latency_ns.p50)" -v p99="$(json "$f" latency_ns.p99)" \
      'BEGIN { printf "%.2f %.4f %.1f %.1f\n", 100 * c / hz / (b - a), rx, p50 / 1000, p99 / 1000 }'
}

echo "load before: $(uptime)"
modes="polling"
for us in $IDLE_US; do
  case $us in ''|*[!0-9]*) echo "ci/bench-idle.sh: IDLE_US must be whole microseconds" >&2; exit 2 ;; esac
  modes+=" adaptive-$us"
done
[ "$TRANSPORT" = virtio-user ] && modes+=" dpdk-l3fwd-power"
echo "transport: $TRANSPORT; forwarder on CPU 1, pktgen on CPU 0; 64-byte frames"
echo "| offered | run | mode | forwarder CPU % of a core | rx Mpps | p50 µs | p99 µs |"
echo "|---|---|---|---|---|---|---|"
for rate in 0.000001 0.01 1 0; do
  label=$rate
  case $rate in 0.000001) label="1 pps (idle)" ;; 0.01) label="10 kpps" ;; 1) label="1 Mpps" ;; 0) label="full rate" ;; esac
  for i in $(seq 1 "$RUNS"); do
    order=$modes; [ $((i % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$modes" | tac | tr '\n' ' ')
    for mode in $order; do
      read -r cpu rx p50 p99 < <(one "$mode" "$rate" "$mode-$i-${rate/./_}")
      echo "| $label | $i | $mode | $cpu | $rx | $p50 | $p99 |"
    done
  done
done
