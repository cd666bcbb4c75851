#!/usr/bin/env bash
# loom model checks of the lock-free code: pmd-core's ring head/tail protocol (MP/MC and
# SP/SC enqueue and dequeue) and mempool per-lcore cache refill and flush, and the vhost
# back end's ring slots (a stop or a restart racing a burst). The `loom_*` tests run the
# real ring, mempool and slot code on loom's atomics (under `--cfg loom`) and explore its thread interleavings up to LOOM_MAX_PREEMPTIONS preemptions
# per execution (default 3 here), reporting data races, lost or reordered elements, lost
# buffers. Own target directory: $LOOM_TARGET_DIR, default target/loom. The release build
# skips link-time optimisation: it only slows the build of a model checker.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${LOOM_TARGET_DIR:-target/loom}
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3}
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
cargo test -p pmd-core -p pmd-vhost --release --lib loom_ 2>&1 | tee "$log"
passed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) p += $i} END {print p + 0}' "$log")
[ "$passed" -gt 0 ] || { echo "ci/loom.sh: FAIL: no loom_ test ran" >&2; exit 1; }
echo "ci/loom.sh: $passed loom models passed (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS) in $((SECONDS - start)) s"
