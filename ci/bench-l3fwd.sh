#!/usr/bin/env bash
# l3fwd side by side with DPDK 22.11's l3fwd example (issue 13): both read the same pcap
# of FLOWS IPv4/UDP flows, 64-byte frames on the wire (60 bytes without FCS), through
# net_pcap with infinite_rx=1 on port 0, route every packet to port 1 (net_null, which
# frees what it is given), one lcore (CPU 1), LPM and EM modes, same route files and
# the same application arguments:
#   -l 1 --no-pci --vdev net_pcap0,rx_pcap=FILE,infinite_rx=1 --vdev net_null0
#   -- -p 0x3 --config="(0,0,1)" --lookup=MODE --rule_ipv4=F --rule_ipv6=F --parse-ptype
# LPM routes: 16 /24 prefixes (198.18.K.0/24, DPDK's default table, pointed at port 1);
# EM routes: one per flow. DPDK's example is built from dpdk-doc's sources without its
# rx checksum offload request (ci/lib.sh dpdk_l3fwd: net_pcap has no such offload, and
# the forwarding never reads it). Memory: ours --no-huge -m 512; DPDK's -m 512 on
# hugepages with --in-memory.
#
# The figure: port 1's opackets over SECS seconds, read twice through each app's
# telemetry socket (the same dpdk_telemetry.v2 protocol on both sides) after 2 s of
# warm-up; cycles per packet = TSC rate / packet rate (the lcore polls without pause).
# RUNS runs; the sides take turns going first. Prints each run, then medians and ratios.
#
# Usage: ci/bench-l3fwd.sh [SECS=5] [RUNS=3] [FLOWS=1024]   (root: runtime directories)
set -uo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
SECS=${1:-5}; RUNS=${2:-3}; FLOWS=${3:-1024}
case $SECS$RUNS$FLOWS in *[!0-9]*|'') echo "usage: ci/bench-l3fwd.sh [SECS] [RUNS] [FLOWS] (whole numbers)" >&2; exit 2 ;; esac
[ "$SECS" -ge 1 ] && [ "$FLOWS" -ge 1 ] || { echo "ci/bench-l3fwd.sh: SECS and FLOWS must be at least 1" >&2; exit 2; }
echo "ci/bench-l3fwd.sh: building l3fwd and pcap-flows (release), and DPDK's l3fwd example" >&2
cargo build --release -q -p l3fwd -p pmd-testkit --bin l3fwd --bin pcap-flows || exit 1
DL3=$(dpdk_l3fwd "$PWD/target/dpdk-examples") || exit 1
pmd_hugepages 256 "$HUGE_DIR" >/dev/null || { echo "ci/bench-l3fwd.sh: no hugepages for DPDK" >&2; exit 1; }
OURS=$PWD/target/release/l3fwd
WORK=$(mktemp -d /tmp/pmd-bench-l3fwd.XXXXXX)
PREFIXES=()
cleanup() { dpdk_cleanup "${PREFIXES[@]}"; rm -rf "$WORK"; }
trap cleanup EXIT
target/release/pcap-flows "$WORK/in.pcap" "$FLOWS" 60 0 "$WORK" 1 || exit 1
MHZ=$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)

# rate PREFIX SECS: port 1's packet rate (Mpps) over SECS seconds, from telemetry.
rate() {
  python3 - "$1" "$2" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect("/var/run/dpdk/%s/dpdk_telemetry.v2" % sys.argv[1])
s.recv(4096)
def sent():
    s.send(b"/ethdev/stats,1")
    return json.loads(s.recv(65536))["/ethdev/stats"]["opackets"]
a, t0 = sent(), time.monotonic()
time.sleep(float(sys.argv[2]))
b, t1 = sent(), time.monotonic()
print("%.2f" % ((b - a) / (t1 - t0) / 1e6))
PY
}

# one SIDE MODE TAG: prints the Mpps of one run.
one() {
  local side=$1 mode=$2 tag=$3 prefix=pmd-bl3-$$-$3 app
  PREFIXES+=("$prefix")
  if [ "$side" = ours ]; then app=("$OURS" --no-huge -m 512); else app=("$DL3" -m 512 --huge-dir "$HUGE_DIR" --in-memory); fi
  "${app[@]}" -l 1 --no-pci --file-prefix "$prefix" \
    --vdev "net_pcap0,rx_pcap=$WORK/in.pcap,infinite_rx=1" --vdev net_null0 \
    -- -p 0x3 --config="(0,0,1)" --lookup="$mode" \
    --rule_ipv4="$WORK/${mode}_v4.cfg" --rule_ipv6="$WORK/${mode}_v6.cfg" --parse-ptype \
    > "$WORK/$tag.log" 2>&1 < /dev/null &
  local pid=$! r=nan i
  for i in $(seq 1 100); do [ -S "/var/run/dpdk/$prefix/dpdk_telemetry.v2" ] && break; sleep 0.1; done
  sleep 2
  r=$(rate "$prefix" "$SECS" 2>>"$WORK/$tag.log") || r=nan
  kill -INT "$pid"; wait "$pid"
  dpdk_cleanup "$prefix"
  echo "${r:-nan}"
}

TSC_HZ=$(tsc_hz)
cycles() { cycles_per_pkt "$TSC_HZ" "$1" 1 1; }

echo "load before: $(uptime)"
echo "64-byte IPv4/UDP frames, $FLOWS flows, one lcore; TSC $MHZ MHz"
echo "| run | mode | side | Mpps | cycles/packet |"
echo "|---|---|---|---|---|"
declare -A R
for i in $(seq 1 "$RUNS"); do
  order=$(bench_order "$i")
  for mode in lpm em; do
    for side in $order; do
      mpps=$(one "$side" "$mode" "$side-$mode-$i")
      label=$([ "$side" = ours ] && echo "ours (l3fwd)" || echo "DPDK (l3fwd example)")
      echo "| $i | $mode | $label | $mpps | $(cycles "$mpps") |"
      R[$side-$mode]+="$mpps "
    done
  done
done
for mode in lpm em; do
  # shellcheck disable=SC2086
  o=$(median ${R[ours-$mode]}); d=$(median ${R[dpdk-$mode]})
  echo "$mode: median Mpps ours $o ($(cycles "$o") cycles/packet), DPDK $d ($(cycles "$d") cycles/packet); ours/DPDK = $(ratio "$o" "$d")"
done
