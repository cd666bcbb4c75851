#!/usr/bin/env bash
# The main job on an embedded default: l2fwd bridging two veth pairs with af_packet ports,
# between two private network namespaces that ping each other *through* l2fwd.
#
#   host A (ns pmd-demo-a)          l2fwd (ns pmd-demo-fwd)            host B (ns pmd-demo-b)
#   pa_out 198.18.0.1  <--veth-->  pa_in = port 0 <=> port 1 = pb_in  <--veth-->  pb_out 198.18.0.2
#   MAC 02:00:00:00:00:00                                              MAC 02:00:00:00:00:01
#
# l2fwd rewrites each frame's destination MAC to 02:00:00:00:00:<out port>, so the hosts get
# their MACs set to exactly those; ARP and ICMP then work end to end. Runs a ping check, a
# flood ping, then stops l2fwd with SIGINT and shows its final counters, the one rate of the
# run (frames l2fwd forwarded for the flood ping per second) and a last line
# `demo: PASS ...` or `demo: FAIL: <why>` (the exit status says the same).
#
# Usage: ci/demo.sh [SECONDS_OF_FLOOD=5]      (root; sets the machine up on first use)
# Environment: HUGE_DIR (hugetlbfs mount for l2fwd's memory, default /mnt/pmd-huge).
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD=${1:-5}
bash ci/setup.sh
[ -x target/release/l2fwd ] || echo "demo: building l2fwd (release; about a minute on 2 cores the first time)"
cargo build --release -q -p l2fwd
source ci/netns.sh
FWD=pmd-demo-fwd A=pmd-demo-a B=pmd-demo-b
L2PID=
LOG=
VERDICT=
cleanup() {
  local rc=$?
  [ -n "$L2PID" ] && kill -INT "$L2PID" 2>/dev/null && wait "$L2PID" 2>/dev/null
  ns_cleanup
  [ -n "$LOG" ] && rm -f "$LOG"
  # Whatever stopped the script, its last line is the verdict.
  [ -n "$VERDICT" ] || VERDICT="demo: FAIL: stopped early (exit status $rc; see the output above)"
  echo; echo "$VERDICT"
  case $VERDICT in "demo: PASS"*) exit 0 ;; *) [ "$rc" != 0 ] && exit "$rc"; exit 1 ;; esac
}
trap cleanup EXIT
fail() { VERDICT="demo: FAIL: $*"; exit 1; }
for ns in $FWD $A $B; do ip netns del $ns 2>/dev/null || true; done
ns_add $FWD; ns_add $A; ns_add $B
ns_veth $FWD pa_in $A pa_out 02:00:00:00:00:00
ns_veth $FWD pb_in $B pb_out 02:00:00:00:00:01
ip -n $A addr add 198.18.0.1/24 dev pa_out
ip -n $B addr add 198.18.0.2/24 dev pb_out

LOG=$(mktemp /tmp/pmd-demo-l2fwd.XXXXXX)
ip netns exec $FWD ./target/release/l2fwd -l 0 --huge-dir "${HUGE_DIR:-/mnt/pmd-huge}" --file-prefix demo \
  --vdev net_af_packet0,iface=pa_in --vdev net_af_packet1,iface=pb_in -- -p 0x3 -q 2 -T 2 >"$LOG" 2>&1 &
L2PID=$!
for _ in $(seq 50); do grep -q "^Lcore" "$LOG" && break; sleep 0.1; done
grep -q "^Lcore" "$LOG" || { cat "$LOG"; fail "l2fwd did not start (its output is above)"; }
sed -n '/^Port 0 (/,/^Lcore.*RX port 1/p' "$LOG"

echo; echo "== ping 198.18.0.2 from host A, through l2fwd =="
ip netns exec $A ping -c 3 -W 2 198.18.0.2 || fail "host A cannot ping host B through l2fwd"
echo; echo "== flood ping for ${FLOOD}s =="
flood=$(ip netns exec $A timeout -s INT "$FLOOD" ping -f -q 198.18.0.2 || true)
echo "$flood"

kill -INT "$L2PID"; l2rc=0; wait "$L2PID" || l2rc=$?; L2PID=
echo; echo "== l2fwd final counters =="
# The counters only: l2fwd's own rate lines (the last -T period's, after the flood ended, and
# the average over its whole run, idle time included) would not be the flood's rate.
sed -n '/Closing port 0/,$p' "$LOG" | grep -v -E '^(Total rate \(Mpps\)|Forwarded [0-9]+ packets in)' || true

sent=$(grep -o 'Total packets sent: *[0-9]*' "$LOG" | tail -1 | grep -o '[0-9]*$' || true)
read -r tx rx < <(sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.*/\1 \2/p' <<<"$flood") || true
[ "$l2rc" = 0 ] || fail "l2fwd exited with status $l2rc on SIGINT"
[ -n "${rx:-}" ] && [ "$rx" -gt 0 ] || fail "the flood ping got no reply through l2fwd"
# Each reply is two frames through l2fwd (request A -> B, reply B -> A). ping -f sends the
# next request when a reply comes back (or after 10 ms): a round-trip-bound rate, not
# l2fwd's capacity (ci/bench measures that).
echo; echo "rate: $((2 * rx)) frames forwarded for the flood ping in ${FLOOD} s = $(awk -v n=$((2 * rx)) -v s="$FLOOD" 'BEGIN {printf "%.0f", n / s}') frames/s (ping -f keeps about one request in flight: bound by the round trip, not by l2fwd)"
# The request in flight when ping is stopped may go unanswered.
[ "$rx" -ge $((tx - 1)) ] || fail "the flood ping lost $((tx - rx)) of $tx requests"
[ -n "$sent" ] && [ "$sent" -ge $((2 * rx)) ] ||
  fail "l2fwd counted ${sent:-no} frames sent, fewer than the $((2 * rx)) the ping replies need"
VERDICT="demo: PASS: ping through l2fwd works; $rx of $tx flood pings answered, l2fwd forwarded $sent frames in all"
