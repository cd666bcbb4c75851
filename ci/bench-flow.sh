#!/usr/bin/env bash
# Exact-match flow lookups, ours against DPDK 22.11's rte_hash in the same run (issue 13):
# DPDK's `hash_perf_autotest` (dpdk-test, one lcore, --in-memory), its lock-free rows
# "elements in primary or secondary location, operations with 8-byte data, without
# pre-computed hash values" for 13-byte (IPv4 5-tuple) and 37-byte (IPv6 5-tuple) keys,
# and our `flow` bench (flow/benches/flow.rs: a table for 2^19 flows filled to 75%, the
# same tuples as 16- and 40-byte keys, 5 random lookups per key, bursts of 64), RUNS
# times each, taking turns to go first. TSC cycles per operation; ours/DPDK below 1: ours
# is cheaper.
#
# Usage: ci/bench-flow.sh [RUNS=3]
set -uo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
RUNS=${1:-3}
case $RUNS in *[!0-9]*|'') echo "usage: ci/bench-flow.sh [RUNS] (a whole number)" >&2; exit 2 ;; esac
command -v dpdk-test >/dev/null || { echo "ci/bench-flow.sh: dpdk-test missing: run ci/setup.sh --dpdk" >&2; exit 1; }
echo "ci/bench-flow.sh: building the flow bench (release)" >&2
cargo bench -q -p pmd-flow --bench flow --no-run 2>/dev/null || { echo "ci/bench-flow.sh: build failed" >&2; exit 1; }
LOGS=$(mktemp -d /tmp/pmd-bench-flow.XXXXXX)
PREFIX=pmd-bench-flow-$$
trap 'rm -rf "$LOGS"; dpdk_cleanup "$PREFIX"' EXIT

# dpdk_row LOG KEYSIZE: "add lookup bulk delete" from the section described above.
dpdk_row() {
  awk -v k="$2" '
    /^Without locks in the code/ { nolock = 1 } /^With locks in the code/ { nolock = 0 }
    /ELEMENTS IN PRIMARY OR SECONDARY LOCATION/ { sec = nolock } /ALL ELEMENTS IN PRIMARY LOCATION/ { sec = 0 }
    /Operations with 8-byte data/ { data = 1 } /Operations without data/ { data = 0 }
    /^Without pre-computed hash values/ { raw = 1 } /^With pre-computed hash values/ { raw = 0 }
    sec && data && raw && $1 == k { print $2, $3, $4, $5; exit }' "$1"
}
# ours_row LOG KEYSIZE: the same four from our bench's table (after "13 (ipv4 5-tuple)").
ours_row() { awk -v k="$2" '$1 == k { print $4, $5, $6, $7; exit }' "$1"; }

declare -A V
echo "load before: $(uptime)"
echo "| run | side | key | add | lookup | bulk lookup | delete |"
echo "|---|---|---|---|---|---|---|"
for i in $(seq 1 "$RUNS"); do
  order=$(bench_order "$i")
  for side in $order; do
    log=$LOGS/$side-$i.log
    autotest_or_bench "$side" "$log" hash_perf_autotest pmd-flow flow "$PREFIX"
    for k in 13 37; do
      read -r add one bulk del < <(${side}_row "$log" "$k")
      echo "| $i | $side | $k | ${add:-nan} | ${one:-nan} | ${bulk:-nan} | ${del:-nan} |"
      V[$side-$k-add]+="$add "; V[$side-$k-one]+="$one "; V[$side-$k-bulk]+="$bulk "; V[$side-$k-del]+="$del "
    done
  done
done
for k in 13 37; do
  for op in add one bulk del; do
    # shellcheck disable=SC2086
    o=$(median ${V[ours-$k-$op]}); d=$(median ${V[dpdk-$k-$op]})
    echo "median cycles, key $k, $op: ours $o, DPDK $d, ours/DPDK $(ratio "$o" "$d")"
  done
done
