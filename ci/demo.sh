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
# flood ping, then stops l2fwd with SIGINT and shows its final statistics.
#
# Usage: ci/demo.sh [SECONDS_OF_FLOOD=5]      (root; sets the machine up on first use)
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD=${1:-5}
bash ci/setup.sh
cargo build --release -q -p l2fwd
source ci/netns.sh
FWD=pmd-demo-fwd A=pmd-demo-a B=pmd-demo-b
L2PID=
cleanup() {
  [ -n "$L2PID" ] && kill -INT "$L2PID" 2>/dev/null && wait "$L2PID" 2>/dev/null
  ns_cleanup
}
trap cleanup EXIT
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
grep -q "^Lcore" "$LOG" || { cat "$LOG"; echo "demo: l2fwd did not start" >&2; exit 1; }
sed -n '/^Port 0 (/,/^Lcore.*RX port 1/p' "$LOG"

echo; echo "== ping 198.18.0.2 from host A, through l2fwd =="
ip netns exec $A ping -c 3 -W 2 198.18.0.2
echo; echo "== flood ping for ${FLOOD}s =="
ip netns exec $A timeout -s INT "$FLOOD" ping -f -q 198.18.0.2 || true

kill -INT "$L2PID"; wait "$L2PID" || true; L2PID=
echo; echo "== l2fwd final statistics =="
sed -n '/Closing port 0/,$p' "$LOG"
rm -f "$LOG"
