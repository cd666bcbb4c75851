#!/usr/bin/env bash
# What the telemetry socket costs the data path: l2fwd (release) forwarding between two
# net_null ports on one lcore (CPU 0), SECS seconds a run, with telemetry on and read once
# a second by a client on CPU 1 (one connection, /ethdev/stats,0 then /l2fwd/stats,0 each
# second, as a dashboard would), against --no-telemetry; RUNS runs each, the two modes
# taking turns to go first. Prints per run l2fwd's own final line (Mpps and TSC cycles per
# packet), then the medians and their ratio. Goal (issue 14): within 1%.
#
# Usage: ci/bench-telemetry.sh [SECS=10] [RUNS=3]   (root: telemetry's runtime directory)
set -uo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
SECS=${1:-10}; RUNS=${2:-3}
case $SECS$RUNS in *[!0-9]*|'') echo "usage: ci/bench-telemetry.sh [SECS] [RUNS] (whole numbers)" >&2; exit 2 ;; esac
[ "$SECS" -ge 3 ] || { echo "ci/bench-telemetry.sh: SECS must be at least 3" >&2; exit 2; }
echo "ci/bench-telemetry.sh: building l2fwd (release)" >&2
cargo build --release -q -p l2fwd || exit 1
L2FWD=$PWD/target/release/l2fwd
LOGS=$(mktemp -d /tmp/pmd-bench-tel.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT

# poll PREFIX SECS: reads the app's stats once a second over one connection (CPU 1).
poll() {
  taskset -c 1 python3 - "$1" "$2" <<'PY'
import json, socket, sys, time
path = "/var/run/dpdk/%s/dpdk_telemetry.v2" % sys.argv[1]
end = time.time() + float(sys.argv[2])
while not __import__("os").path.exists(path):
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(path)
json.loads(s.recv(1024))
n = 0
while time.time() < end:
    for c in ("/ethdev/stats,0", "/l2fwd/stats,0"):
        s.send(c.encode())
        json.loads(s.recv(16384))
        n += 1
    time.sleep(1)
print("telemetry replies:", n)
PY
}

# one MODE TAG: prints l2fwd's Mpps and cycles per packet.
one() {
  local mode=$1 tag=$2 extra=() prefix=pmd-bt-$$-$2
  [ "$mode" = off ] && extra=(--no-telemetry)
  "$L2FWD" -l 0 --no-huge --file-prefix "$prefix" "${extra[@]}" --vdev net_null0 --vdev net_null1 \
    -- -p 0x3 -q 2 -T 0 --duration "$SECS" > "$LOGS/$tag.log" 2>&1 &
  local pid=$!
  [ "$mode" = on ] && poll "$prefix" "$((SECS - 1))" > "$LOGS/$tag.poll" 2>&1
  wait $pid
  sed -n 's/.*: \([0-9.]*\) Mpps, \([0-9.]*\) TSC cycles per packet.*/\1 \2/p' "$LOGS/$tag.log"
}

echo "load before: $(uptime)"
echo "| run | telemetry | Mpps | cycles/packet |"
echo "|---|---|---|---|"
on=(); off=()
for i in $(seq 1 "$RUNS"); do
  order="on off"; [ $((i % 2)) = 0 ] && order="off on"
  for m in $order; do
    read -r mpps cyc < <(one "$m" "$m-$i")
    echo "| $i | $m$([ "$m" = on ] && echo " (read every second)") | ${mpps:-nan} | ${cyc:-nan} |"
    if [ "$m" = on ]; then on+=("${mpps:-nan}"); else off+=("${mpps:-nan}"); fi
  done
done
mon=$(median "${on[@]}"); moff=$(median "${off[@]}")
echo "median Mpps: on $mon, off $moff; on/off = $(ratio "$mon" "$moff")"
