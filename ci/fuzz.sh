#!/usr/bin/env bash
# The long fuzz runs: builds every cargo-fuzz target (nightly, cargo-fuzz 0.13) and runs
# them one after another, each for FUZZ_RUNS inputs (default 10^7) from an empty corpus
# with a fixed seed, one process (no -jobs), capped at FUZZ_MAX_TIME seconds (default
# 3600). Prints per target the inputs executed, the time, exec/s and crashes; exits
# non-zero if a target crashed (its input is in <crate>/fuzz/artifacts/<target>/).
#
#   ci/fuzz.sh                      # every target
#   FUZZ_RUNS=100000 ci/fuzz.sh     # a quick pass
#   ci/fuzz.sh pcap_trace vhost_user_reply   # only these
#
# The fixed-seed versions of the same bodies run in `cargo test` (a few thousand inputs
# each); this script is the long run whose counts the README's Fuzzing table quotes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# AddressSanitizer without the allocation stack of every malloc (the ring and message
# targets allocate per burst or message; recording stacks took a fifth of their time). A
# report still names the bad access; rerun its input with ASAN_OPTIONS= for the
# allocation's stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=0}

RUNS=${FUZZ_RUNS:-10000000}
MAX_TIME=${FUZZ_MAX_TIME:-3600}
SEED=${FUZZ_SEED:-1}

# crate directory (holding fuzz/), target name and libFuzzer's -max_len ("-": its default,
# 4096 from an empty corpus), in run order. The ring targets replay one operation per five
# bytes and check the books after each, so they are capped at about 250 operations an
# input: enough to wrap every queue size many times, at several times the inputs a second.
# vhost_msg is capped at 1024 bytes (a few dozen messages, each mapping and unmapping its
# memory table: longer streams repeat the same handlers at a quarter of the inputs a
# second), desc_chain_packed at 1280 (dozens of chains a burst, each up to the ring size:
# 4 KiB inputs ran at a third of the rate).
TARGETS=(
  "pmd-core vnet_rx -"
  "pmd-core eal_options -"
  "pmd-core devargs -"
  "drivers/virtio rx_hdr -"
  "drivers/virtio split_used_ring 1280"
  "drivers/virtio packed_used_ring 1280"
  "drivers/virtio vhost_user_reply -"
  "drivers/memif control_msg -"
  "drivers/vhost vhost_msg 1024"
  "drivers/vhost desc_chain -"
  "drivers/vhost desc_chain_packed 1280"
  "drivers/af_xdp xdp_rings 1280"
  "drivers/pcap pcap_trace -"
)

command -v cargo >/dev/null || { echo "ci/fuzz.sh: cargo not found: install a Rust toolchain" >&2; exit 2; }
cargo +nightly --version >/dev/null 2>&1 || { echo "ci/fuzz.sh: no nightly toolchain: rustup toolchain install nightly" >&2; exit 2; }
cargo +nightly fuzz --version >/dev/null 2>&1 || { echo "ci/fuzz.sh: cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 2; }

wanted=("$@")
for w in "${wanted[@]}"; do
  printf '%s\n' "${TARGETS[@]}" | awk '{print $2}' | grep -qx "$w" \
    || { echo "ci/fuzz.sh: unknown target '$w'; targets: $(printf '%s\n' "${TARGETS[@]}" | awk '{print $2}' | tr '\n' ' ')" >&2; exit 2; }
done

logdir=$(mktemp -d /tmp/pmd-fuzz.XXXXXX)
trap 'rm -rf "$logdir"' EXIT
failed=()
printf '%-18s %12s %8s %10s %8s\n' target inputs time_s exec/s crashes
for t in "${TARGETS[@]}"; do
  read -r dir name max_len <<<"$t"
  len_arg=()
  [ "$max_len" = - ] || len_arg=(-max_len="$max_len")
  if [ ${#wanted[@]} -gt 0 ] && ! printf '%s\n' "${wanted[@]}" | grep -qx "$name"; then
    continue
  fi
  corpus="$logdir/corpus-$name"
  mkdir -p "$corpus"
  log="$logdir/$name.log"
  (cd "$ROOT/$dir" && cargo +nightly fuzz build -O "$name") >"$log.build" 2>&1 \
    || { echo "ci/fuzz.sh: building $name failed:" >&2; tail -20 "$log.build" >&2; exit 1; }
  start=$(date +%s.%N)
  rc=0
  (cd "$ROOT/$dir" && cargo +nightly fuzz run -O "$name" "$corpus" -- \
      -runs="$RUNS" -seed="$SEED" -max_total_time="$MAX_TIME" "${len_arg[@]}" -print_final_stats=1) \
      >"$log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", b - a}')
  inputs=$(awk '/^stat::number_of_executed_units:/ {n = $2} END {print n + 0}' "$log")
  rate=$(awk '/^stat::average_exec_per_sec:/ {n = $2} END {print n + 0}' "$log")
  crashes=0
  if [ "$rc" != 0 ] || grep -q '^SUMMARY: libFuzzer' "$log"; then
    crashes=1
    failed+=("$name")
    echo "ci/fuzz.sh: $name crashed (exit $rc):" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2 || tail -20 "$log" >&2
  fi
  printf '%-18s %12s %8s %10s %8s\n' "$name" "$inputs" "$secs" "$rate" "$crashes"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "ci/fuzz.sh: FAIL: ${failed[*]} crashed" >&2
  exit 1
fi
echo "ci/fuzz.sh: PASS: no crash"
