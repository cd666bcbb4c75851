#!/usr/bin/env bash
# Where the kernel's own limit is on the kernel-bound rows of ci/bench (af_packet and af_xdp
# transmit on a veth pair), and how close DPDK 22.11 and ours get to it.
#
# The limit: ci/testkit's kernel-tx, one AF_PACKET socket with PACKET_QDISC_BYPASS sending
# the same frame as testpmd's txonly (Ethernet/IPv4/UDP, SIZE bytes before the FCS) with
# sendmmsg, 256 per call: the kernel's shortest raw transmit path, no DPDK and no ring.
# Against it, testpmd txonly --nb-cores=1 -l 0,1 on net_af_packet0,iface=va0 and on
# net_af_xdp0,iface=va0 (DPDK's and ours, the same arguments; 1514-byte frames get
# --mbuf-size=2176). Each side runs in namespace A on a fresh veth pair; the figure is the
# peer vb0's rx_packets over SECS-7 s (what ci/bench reads), the order of the five sides
# reversing run by run. There is no kernel-only counterpart for net_tap's row here (its
# path is a character device write, not a socket send).
#
# Usage: ci/bench-kernel-limit.sh [SECS=10] [RUNS=3]   (root; SIZES="64 1514" by default;
# about 5 * SECS * RUNS per size) -> target/bench/kernel-limit.md
set -uo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
SECS=${1:-10}; RUNS=${2:-3}; SIZES=${SIZES:-64 1514}
[ "$SECS" -ge 9 ] || { echo "ci/bench-kernel-limit.sh: SECS must be at least 9 (a 2 s window after 4 s of warm-up)"; exit 2; }
OUT=target/bench; LOGS=$OUT/kernel-limit-logs; rm -rf "$LOGS"; mkdir -p "$LOGS"
bash ci/setup.sh --dpdk >/dev/null
cargo build --release -q -p testpmd -p pmd-testkit --bin testpmd --bin kernel-tx || exit 1
OURS=$PWD/target/release/testpmd KTX=$PWD/target/release/kernel-tx
EAL="-n 4 --huge-dir $HUGE_DIR --no-pci"
NS_A=pmdkl-a NS_B=pmdkl-b
trap 'veth_pair_down $NS_A $NS_B; dpdk_cleanup kl_k' EXIT
WIN=$((SECS - 7))

# side WHO SIZE LOG: one run of WHO (kernel | afp-ours | afp-dpdk | xdp-ours | xdp-dpdk) on a
# fresh pair; prints vb0's receive rate (Mpps) over the window.
side() {
  local who=$1 size=$2 log=$3 bin=$OURS vdev x="" p r
  veth_pair_up $NS_A $NS_B 1500
  case $who in
    kernel) ip netns exec $NS_A timeout -s INT $((WIN + 6)) "$KTX" va0 $((WIN + 5)) "$size" >"$log" 2>&1 & ;;
    *)
      [[ $who == *-dpdk ]] && bin=dpdk-testpmd
      vdev=net_af_packet0,iface=va0; [[ $who == xdp-* ]] && vdev=net_af_xdp0,iface=va0
      [ "$size" -gt 64 ] && x="--mbuf-size=2176"
      ip netns exec $NS_A timeout -s INT $((WIN + 6)) "$bin" -l 0,1 $EAL --file-prefix kl_k --vdev "$vdev" \
        -- --forward-mode=txonly $x --txpkts="$size" --nb-cores=1 --stats-period 1 >"$log" 2>&1 & ;;
  esac
  p=$!
  sleep 4
  r=$(rx_rate $NS_B vb0 $WIN)
  wait $p 2>/dev/null; dpdk_cleanup kl_k
  echo "$r"
}

SIDES="kernel afp-dpdk afp-ours xdp-dpdk xdp-ours"
{
  echo "| frame bytes | kernel sender (Mpps) | af_packet DPDK | af_packet ours | xdp DPDK | xdp ours | af_packet DPDK / ours of the limit | af_xdp DPDK / ours of the limit |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$OUT/kernel-limit.md"
for size in $SIZES; do
  declare -A V=()
  for i in $(seq 1 "$RUNS"); do
    order=$SIDES; [ $((i % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$SIDES" | tac | tr '\n' ' ')
    for who in $order; do
      V[$who]="${V[$who]:-} $(side "$who" "$size" "$LOGS/$who-$size-$i.log")"
    done
    echo "size $size run $i: $(for w in $SIDES; do printf '%s=%s ' "$w" "$(awk '{print $NF}' <<<"${V[$w]}")"; done)" >&2
  done
  declare -A M=()
  for w in $SIDES; do M[$w]=$(median ${V[$w]}); done
  echo "| $size | ${M[kernel]} (${V[kernel]# }) | ${M[afp-dpdk]} | ${M[afp-ours]} | ${M[xdp-dpdk]} | ${M[xdp-ours]} | $(ratio "${M[afp-dpdk]}" "${M[kernel]}") / $(ratio "${M[afp-ours]}" "${M[kernel]}") | $(ratio "${M[xdp-dpdk]}" "${M[kernel]}") / $(ratio "${M[xdp-ours]}" "${M[kernel]}") |" >>"$OUT/kernel-limit.md"
  unset V M
done
cat "$OUT/kernel-limit.md"
echo "(ci/bench-kernel-limit.sh $SECS $RUNS on $(date -u +%F), medians of $RUNS; logs in $LOGS)"
