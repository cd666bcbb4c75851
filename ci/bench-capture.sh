#!/usr/bin/env bash
# What a live capture costs the data path, ours and DPDK's side by side (issue 14):
# testpmd in io mode between two net_null ports (main lcore CPU 0, forwarding lcore
# CPU 1), SECS seconds a run, once with nothing capturing and once with a capture tool
# on CPU 0 capturing port 0 both ways (rx and tx, 64-byte frames) into /dev/null from
# the second second to the end:
#   ours:  testpmd + pmd-dumpcap   (the capture socket beside telemetry; --no-huge)
#   DPDK:  dpdk-testpmd + dpdk-dumpcap 22.11 (pdump needs DPDK's multi-process mode:
#          hugepage files in $HUGE_DIR and a runtime directory, removed after each run)
# Same EAL and testpmd arguments on both sides except the memory options above; the
# four cases take turns going first. Prints per run the forwarding rate (median of
# testpmd's per-second Rx-pps summed over the ports, warm-up and last second dropped),
# cycles per packet (the TSC rate over that rate: the forwarding lcore polls without
# pause), and the tool's own count of packets seen and dropped; then medians and ratios.
#
# Usage: ci/bench-capture.sh [SECS=10] [RUNS=3]   (root: hugepages, runtime directories)
set -uo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
SECS=${1:-10}; RUNS=${2:-3}
case $SECS$RUNS in *[!0-9]*|'') echo "usage: ci/bench-capture.sh [SECS] [RUNS] (whole numbers)" >&2; exit 2 ;; esac
[ "$SECS" -ge 6 ] || { echo "ci/bench-capture.sh: SECS must be at least 6" >&2; exit 2; }
command -v dpdk-testpmd >/dev/null && command -v dpdk-dumpcap >/dev/null ||
  { echo "ci/bench-capture.sh: dpdk-testpmd and dpdk-dumpcap missing: run ci/setup.sh --dpdk" >&2; exit 1; }
echo "ci/bench-capture.sh: building testpmd and pmd-dumpcap (release)" >&2
cargo build --release -q -p testpmd -p pmd-dumpcap || exit 1
pmd_hugepages 256 "$HUGE_DIR" >/dev/null || { echo "ci/bench-capture.sh: no hugepages for DPDK" >&2; exit 1; }
OURS=$PWD/target/release/testpmd
OUR_DUMPCAP=$PWD/target/release/pmd-dumpcap
LOGS=$(mktemp -d /tmp/pmd-bench-cap.XXXXXX)
PREFIXES=()
cleanup() { dpdk_cleanup "${PREFIXES[@]}"; rm -rf "$LOGS"; }
trap cleanup EXIT
MHZ=$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)

# one SIDE MODE TAG: runs testpmd (and the tool when MODE=on); prints "Mpps seen dropped".
one() {
  local side=$1 mode=$2 tag=$3 prefix=pmd-bc-$$-$3 app mem tool
  PREFIXES+=("$prefix")
  if [ "$side" = ours ]; then
    app=$OURS; mem=(--no-huge -m 512); tool=$OUR_DUMPCAP
  else
    app=dpdk-testpmd; mem=(--huge-dir "$HUGE_DIR" -m 512); tool=dpdk-dumpcap
  fi
  "$app" -l 0-1 --no-pci "${mem[@]}" --file-prefix "$prefix" --vdev net_null0 --vdev net_null1 \
    -- --forward-mode=io --stats-period=1 > "$LOGS/$tag.log" 2>&1 < /dev/null &
  local pid=$!
  sleep 1
  if [ "$mode" = on ]; then
    taskset -c 0 "$tool" --file-prefix="$prefix" -i 0 -s 2176 -w /dev/null \
      -a "duration:$((SECS - 2))" > "$LOGS/$tag.cap" 2>&1
  else
    sleep "$((SECS - 2))"
  fi
  sleep 1
  kill -INT "$pid"; wait "$pid"
  dpdk_cleanup "$prefix"
  local mpps seen dropped
  mpps=$(testpmd_mpps "$LOGS/$tag.log" Rx-pps)
  read -r seen dropped < <(sed -n "s|.*received/dropped on interface '[^']*': *\([0-9]*\)/\([0-9]*\).*|\1 \2|p" \
    "$LOGS/$tag.cap" 2>/dev/null | head -1)
  echo "$mpps ${seen:--} ${dropped:--}"
}

cycles() { python3 -c "import sys; m=float(sys.argv[2]); print(f'{float(sys.argv[1])/m:.1f}' if m > 0 else 'nan')" "$MHZ" "$1" 2>/dev/null || echo nan; }

echo "load before: $(uptime)"
echo "| run | side | capture | Mpps | cycles/packet | tool: seen / dropped |"
echo "|---|---|---|---|---|---|"
declare -A R
for i in $(seq 1 "$RUNS"); do
  order="ours:off dpdk:off ours:on dpdk:on"
  [ $((i % 2)) = 0 ] && order="dpdk:on ours:on dpdk:off ours:off"
  for c in $order; do
    side=${c%:*}; mode=${c#*:}
    read -r mpps seen dropped < <(one "$side" "$mode" "$side-$mode-$i")
    label=$([ "$side" = ours ] && echo "ours (testpmd$([ "$mode" = on ] && echo " + pmd-dumpcap"))" ||
            echo "DPDK (dpdk-testpmd$([ "$mode" = on ] && echo " + dpdk-dumpcap"))")
    echo "| $i | $label | $mode | ${mpps:-nan} | $(cycles "${mpps:-nan}") | $seen / $dropped |"
    R[$side-$mode]+="${mpps:-nan} "
  done
done
for side in ours dpdk; do
  # shellcheck disable=SC2086
  on=$(median ${R[$side-on]}); off=$(median ${R[$side-off]})
  echo "$side: median Mpps without capture $off, with $on; with/without = $(ratio "$on" "$off")"
done
# shellcheck disable=SC2086
echo "with capture, ours/DPDK = $(ratio "$(median ${R[ours-on]})" "$(median ${R[dpdk-on]})")"
