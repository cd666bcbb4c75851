#!/usr/bin/env bash
# Side by side with DPDK 22.11 on this machine, in one run:
#   1. l2fwd (ours) vs DPDK's l2fwd example, 2 null ports, 1 lcore, -q 2, MAC updating;
#   2. l2fwd --no-mac-updating (ours, 1 forwarding lcore) vs dpdk-testpmd --forward-mode=io;
#   3. ring enqueue+dequeue cycles per element vs dpdk-test ring_perf_autotest;
#   4. cached mempool get+put objects/s vs DPDK's mempool (cache 512, 1 lcore).
# Prints every figure and the ratio ours/DPDK (>1 means we are faster); writes
# target/bench/foundation.md. Takes about 6 minutes with the defaults.
#
# Usage: ci/bench-foundation.sh            RUNS (default 3) and SECS (default 12) from the environment
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source ci/lib.sh
RUNS=${RUNS:-3}
SECS=${SECS:-12}
OUT=$ROOT/target/bench
LOGS=$OUT/logs
mkdir -p "$LOGS"
bash ci/setup.sh --dpdk
HUGE=$HUGE_DIR
echo "ci/bench-foundation.sh: building l2fwd (release; a few minutes the first time)" >&2
cargo build --release -q -p l2fwd

# DPDK's l2fwd, built from the example sources shipped in dpdk-doc.
DL2=$(dpdk_example l2fwd "$OUT")
# The figures: l2fwd_mpps LOG, testpmd_mpps LOG Tx-pps (both ports' sum), median (ci/lib.sh).

NULLS="--vdev net_null0 --vdev net_null1"
ours_l2=() dpdk_l2=() ours_io=() dpdk_io=()
for i in $(seq 1 "$RUNS"); do
  timeout -s INT "$SECS" "$DL2" -l 1 -n 4 --huge-dir "$HUGE" --file-prefix bench_dl2 --no-pci $NULLS \
    -- -p 0x3 -q 2 -T 1 >"$LOGS/dpdk-l2fwd-$i.log" 2>&1 || true
  dpdk_l2+=("$(l2fwd_mpps "$LOGS/dpdk-l2fwd-$i.log")")
  timeout -s INT "$SECS" target/release/l2fwd -l 1 --huge-dir "$HUGE" --file-prefix bench_l2 $NULLS \
    -- -p 0x3 -q 2 -T 1 >"$LOGS/l2fwd-$i.log" 2>&1 || true
  ours_l2+=("$(l2fwd_mpps "$LOGS/l2fwd-$i.log")")
  timeout -s INT "$SECS" dpdk-testpmd -l 0,1 -n 4 --huge-dir "$HUGE" --file-prefix bench_tp --no-pci $NULLS \
    -- --forward-mode=io --nb-cores=1 --stats-period 1 >"$LOGS/testpmd-io-$i.log" 2>&1 </dev/null || true
  dpdk_io+=("$(testpmd_mpps "$LOGS/testpmd-io-$i.log" Tx-pps)")
  timeout -s INT "$SECS" target/release/l2fwd -l 1 --huge-dir "$HUGE" --file-prefix bench_io $NULLS \
    -- -p 0x3 -q 2 -T 1 --no-mac-updating >"$LOGS/l2fwd-io-$i.log" 2>&1 || true
  ours_io+=("$(l2fwd_mpps "$LOGS/l2fwd-io-$i.log")")
  echo "run $i: l2fwd ours ${ours_l2[-1]} / DPDK ${dpdk_l2[-1]} Mpps; io ours ${ours_io[-1]} / testpmd ${dpdk_io[-1]} Mpps"
done

# Ring: DPDK's single-lcore rows are TSC cycles per enqueue+dequeue pair.
DPDK_TEST=ring_perf_autotest timeout -s INT 300 dpdk-test -l 0,1 -n 4 --huge-dir "$HUGE" --file-prefix bench_ring --no-pci \
  >"$LOGS/dpdk-ring.log" 2>&1 </dev/null || true
cargo bench -q -p pmd-core --bench ring -- --warm-up-time 1 --measurement-time 3 >"$LOGS/ring-bench.log" 2>&1
# Mempool: DPDK's figure comes from a small program over rte_mempool (cache 512, 1 lcore);
# build it from the baseline's sources when they are there, else use the recorded baseline.
MPC_SRC=$ROOT/../shared/dpdk-baseline/mempool_cache_bench.c
if [ -f "$MPC_SRC" ]; then
  gcc -O3 $(pkg-config --cflags libdpdk) "$MPC_SRC" -o "$OUT/mempool_cache_bench" $(pkg-config --libs libdpdk)
  timeout -s INT 200 "$OUT/mempool_cache_bench" -l 1 -n 4 --huge-dir "$HUGE" --file-prefix bench_mp --no-pci -- 512 \
    >"$LOGS/dpdk-mempool.log" 2>&1 </dev/null || true
fi
cargo bench -q -p pmd-core --bench mempool -- --warm-up-time 1 --measurement-time 3 >"$LOGS/mempool-bench.log" 2>&1

TSC_MHZ=$(grep -m1 "cpu MHz" /proc/cpuinfo | awk '{print $4}')
python3 - "$OUT" "$TSC_MHZ" "$(median "${ours_l2[@]}")" "$(median "${dpdk_l2[@]}")" \
  "$(median "${ours_io[@]}")" "$(median "${dpdk_io[@]}")" <<'PY' | tee "$OUT/foundation.md"
import json, os, re, sys
out, mhz = sys.argv[1], float(sys.argv[2])
ol2, dl2, oio, dio = (float(x) for x in sys.argv[3:7])
def r(a, b): return f"{a / b:.2f}" if b > 0 else "n/a"
print("| case | ours | DPDK | ours/DPDK |\n|---|---|---|---|")
print(f"| l2fwd, 2 null ports, 1 lcore (Mpps) | {ol2:.2f} | {dl2:.2f} | {r(ol2, dl2)} |")
print(f"| io forwarding, 2 null ports, 1 fwd lcore (Mpps; ours: l2fwd --no-mac-updating, DPDK: testpmd io) | {oio:.2f} | {dio:.2f} | {r(oio, dio)} |")
def est(path):
    try:
        return json.load(open(os.path.join(out, "..", "criterion", path, "new", "estimates.json")))["mean"]["point_estimate"]
    except OSError:
        return None
ring = open(os.path.join(out, "logs", "dpdk-ring.log"), errors="replace").read()
def dpdk_ring(kind, n):
    m = re.search(rf"legacy APIs: {kind}: bulk \(size: {n}\): ([\d.]+)", ring)
    return float(m.group(1)) if m else None
for kind, ours in (("SP/SC", "sp_sc_bulk"), ("MP/MC", "mp_mc_bulk")):
    for n in (8, 32):
        ns = est(f"ring/{ours}/{n}")
        d = dpdk_ring(kind, n)
        if ns is None or d is None:
            continue
        o = ns * mhz / 1000 / n
        print(f"| ring {kind} bulk {n}, TSC cycles/element (lower is better) | {o:.2f} | {d / n:.2f} | {r(d / n, o)} (speed) |")
mp = ""
p = os.path.join(out, "logs", "dpdk-mempool.log")
if os.path.exists(p):
    mp = open(p, errors="replace").read()
for keep in (32, 128):
    for bulk in (1, 4, 8, 32):
        ns = est(f"mempool_cache512/raw_keep{keep}/{bulk}")
        m = re.search(rf"n_get_bulk={bulk} n_put_bulk={bulk} n_keep={keep} rate_persec=(\d+)", mp)
        if ns is None or not m:
            continue
        o = keep / ns * 1e3
        d = int(m.group(1)) / 1e6
        print(f"| mempool cache 512, keep {keep}, bulk {bulk} (M objects/s) | {o:.0f} | {d:.0f} | {r(o, d)} |")
PY
dpdk_cleanup bench_dl2 bench_l2 bench_tp bench_io bench_ring bench_mp   # DPDK leaves its hugepage files behind
echo "raw logs: $LOGS"
