#!/usr/bin/env bash
# IPv4 route lookups, ours against DPDK 22.11's rte_lpm on the same machine in the same run
# (issue 13): DPDK's `lpm_perf_autotest` (dpdk-test, one lcore, --in-memory) and our
# `lpm` bench (lpm/benches/lpm.rs: a table with the autotest's count of routes per prefix
# length, about a million, random prefixes and random addresses), RUNS times each,
# taking turns to go first. Prints each run's TSC cycles per add, lookup, bulk lookup and
# delete as both report them, then the medians and ours/DPDK (below 1: ours is cheaper).
#
# Usage: ci/bench-lpm.sh [RUNS=3]
set -uo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
RUNS=${1:-3}
case $RUNS in *[!0-9]*|'') echo "usage: ci/bench-lpm.sh [RUNS] (a whole number)" >&2; exit 2 ;; esac
command -v dpdk-test >/dev/null || { echo "ci/bench-lpm.sh: dpdk-test missing: run ci/setup.sh --dpdk" >&2; exit 1; }
echo "ci/bench-lpm.sh: building the lpm bench (release)" >&2
cargo bench -q -p pmd-lpm --bench lpm --no-run 2>/dev/null || { echo "ci/bench-lpm.sh: build failed" >&2; exit 1; }
LOGS=$(mktemp -d /tmp/pmd-bench-lpm.XXXXXX)
PREFIX=pmd-bench-lpm-$$
trap 'rm -rf "$LOGS"; dpdk_cleanup "$PREFIX"' EXIT

# field LOG LABEL: the number after "LABEL:" (cycles).
field() { sed -n "s/^$2: *\([0-9.]*\) cycles.*/\1/p" "$1" | head -1; }

declare -A V
echo "load before: $(uptime)"
echo "| run | side | add | lookup | bulk lookup | delete | lookups missed |"
echo "|---|---|---|---|---|---|---|"
for i in $(seq 1 "$RUNS"); do
  order=$(bench_order "$i")
  for side in $order; do
    log=$LOGS/$side-$i.log
    autotest_or_bench "$side" "$log" lpm_perf_autotest pmd-lpm lpm "$PREFIX"
    add=$(field "$log" "Average LPM Add"); one=$(field "$log" "Average LPM Lookup")
    bulk=$(field "$log" "BULK LPM Lookup"); del=$(field "$log" "Average LPM Delete")
    miss=$(sed -n 's/^Average LPM Lookup:.*fails = \([0-9.]*%\).*/\1/p' "$log" | head -1)
    echo "| $i | $side | ${add:-nan} | ${one:-nan} | ${bulk:-nan} | ${del:-nan} | ${miss:-?} |"
    V[$side-add]+="$add "; V[$side-one]+="$one "; V[$side-bulk]+="$bulk "; V[$side-del]+="$del "
  done
done
for k in add one bulk del; do
  # shellcheck disable=SC2086
  o=$(median ${V[ours-$k]}); d=$(median ${V[dpdk-$k]})
  echo "median cycles, $k: ours $o, DPDK $d, ours/DPDK $(ratio "$o" "$d")"
done
