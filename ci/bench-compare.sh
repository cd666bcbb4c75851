#!/usr/bin/env bash
# Compares this tree's single-process 64-byte rows with another revision's, in one run:
# both builds alternate, same arguments, same machine. For "did this change cost the
# single-segment path anything" (e.g. REV = the commit before it).
#
#   ci/bench-compare.sh REV [SECS=8] [RUNS=3]
#
# Rows (64-byte frames, one forwarding lcore):
#   null-io   testpmd --forward-mode=io on 2x net_null      figure: sum of Tx-pps
#   ring-io   testpmd io on 1x net_ring loopback, --tx-first  figure: Tx-pps
#   l2fwd     l2fwd -q 2 on 2x net_null                      figure: Total packets sent per s
#   txonly    testpmd txonly on 1x net_null (64-byte frames)  figure: Tx-pps
# REV is built once in a worktree under target/bench-compare (its own target directory).
# Prints per-run figures, medians, the ratio this/REV and cycles per packet (the TSC rate,
# from the kernel's tsc_freq_khz or else the CPU's MHz, divided by the packet rate).
# --txpkts is the frame length from 6c8c112 on; an older REV took it with the 4-byte FCS,
# so it is given 4 more: both send 64-byte frames.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source ci/lib.sh
REV=${1:?usage: ci/bench-compare.sh REV [SECS] [RUNS]}
SECS=${2:-8}; RUNS=${3:-3}
OUT=$ROOT/target/bench-compare; LOGS=$OUT/logs; rm -rf "$LOGS"; mkdir -p "$LOGS"
bash ci/setup.sh >/dev/null
HUGE=$HUGE_DIR
git rev-parse --verify -q "$REV^{commit}" >/dev/null || { echo "ci/bench-compare.sh: unknown revision $REV" >&2; exit 2; }
echo "ci/bench-compare.sh: building this tree and $REV (release; a few minutes each the first time)" >&2
cargo build --release -q -p testpmd -p l2fwd || exit 1
WT=$OUT/tree
if [ "$(git -C "$WT" rev-parse HEAD 2>/dev/null)" != "$(git rev-parse "$REV^{commit}")" ]; then
  git worktree remove --force "$WT" 2>/dev/null; rm -rf "$WT"
  git worktree add -f --detach "$WT" "$REV" >/dev/null || exit 1
fi
(cd "$WT" && CARGO_TARGET_DIR=$OUT/target cargo build --release -q -p testpmd -p l2fwd) || exit 1
NEW=$ROOT/target/release; OLD=$OUT/target/release
EAL="-n 4 --huge-dir $HUGE --no-pci"

row() { # row NAME BIN-NAME KIND ARGS...
  local name=$1 bin=$2 kind=$3; shift 3
  local o=() n=() which
  for i in $(seq 1 "$RUNS"); do
    for which in old new; do
      local dir=$OLD; [ $which = new ] && dir=$NEW
      local log=$LOGS/$name-$which-$i.log
      local args=("${@/@TXPKTS@/--txpkts=$([ $which = old ] && echo $OLD_TXPKTS || echo 64)}")
      if [ "$bin" = l2fwd ]; then
        timeout -s INT "$SECS" "$dir/l2fwd" -l 1 --huge-dir "$HUGE" --file-prefix bc_$which "${args[@]}" -T 1 >"$log" 2>&1
        v=$(l2fwd_mpps "$log")
      else
        timeout -s INT "$SECS" "$dir/testpmd" -l 0,1 $EAL --file-prefix bc_$which "${args[@]}" --nb-cores=1 --stats-period 1 >"$log" 2>&1
        v=$(testpmd_mpps "$log" "$kind")
      fi
      if [ $which = old ]; then o+=("$v"); else n+=("$v"); fi
    done
  done
  python3 - "$name" "${o[*]}" "${n[*]}" "$TSC_HZ" <<'PY'
import sys, statistics
name, o, n, hz = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), float(sys.argv[4])
f = lambda v: [float(x) for x in v if x != "nan"]
mo, mn = statistics.median(f(o)), statistics.median(f(n))
cyc = lambda m: hz / (m * 1e6) if m else float("nan")
print(f"| {name} | {' '.join(o)} | {' '.join(n)} | {mo:.2f} | {mn:.2f} | {mn / mo:.3f} | {cyc(mo):.2f} | {cyc(mn):.2f} |")
PY
}
OLD_TXPKTS=64
git merge-base --is-ancestor 6c8c112 "$REV" 2>/dev/null || OLD_TXPKTS=68
# TSC ticks per second: the kernel's tsc_freq_khz where present, else the CPU's MHz.
TSC_HZ=$(python3 - <<'PY'
try:
    print(float(open("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read()) * 1e3)
except OSError:
    for l in open("/proc/cpuinfo"):
        if l.startswith("cpu MHz"):
            print(float(l.split(":")[1]) * 1e6); break
PY
)
{
  echo "REV=$REV ($(git log -1 --format=%h\ %s "$REV" | cut -c1-60)) vs this tree ($(git log -1 --format=%h HEAD)$(git diff --quiet || echo ' + changes')); SECS=$SECS RUNS=$RUNS; 64-byte frames"
  echo "| row | REV per run (Mpps) | this per run (Mpps) | REV median | this median | this/REV | REV cycles/pkt | this cycles/pkt |"
  echo "|---|---|---|---|---|---|---|---|"
  row null-io testpmd Tx-pps --vdev net_null0 --vdev net_null1 -- --forward-mode=io
  row ring-io testpmd Tx-pps --vdev net_ring0 -- --forward-mode=io --tx-first
  row l2fwd l2fwd - --vdev net_null0 --vdev net_null1 -- -p 0x3 -q 2
  row txonly testpmd Tx-pps --vdev net_null0 -- --forward-mode=txonly @TXPKTS@
} | tee "$OUT/compare.md"
dpdk_cleanup bc_old bc_new
