#!/usr/bin/env bash
# Miri over the unsafe core of pmd-core: the ring, the mempool, the packet buffers (chains,
# batches) and the copy helper they share. Miri interprets the unit tests and fails on
# undefined behaviour: data races, out-of-bounds or dangling accesses, aliasing violations
# (Stacked Borrows), integer-to-pointer casts (strict provenance). Needs the nightly
# toolchain with the miri and rust-src components (added here if missing). Without a
# nightly toolchain it says so and skips; under PMD_REQUIRE_ALL=1 that is a failure.
# Own target directory: $MIRI_TARGET_DIR, default target/miri.
set -euo pipefail
cd "$(dirname "$0")/.."

missing() {
  if [ "${PMD_REQUIRE_ALL:-0}" = 1 ]; then
    echo "ci/miri.sh: FAIL: $1" >&2
    exit 1
  fi
  echo "ci/miri.sh: skipped: $1" >&2
  exit 0
}

command -v rustup >/dev/null || missing "rustup is not installed; Miri needs a nightly toolchain"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "ci/miri.sh: installing a nightly toolchain with miri and rust-src (a minute or two)"
  rustup toolchain install nightly --profile minimal --component miri,rust-src >/dev/null 2>&1 ||
    missing "no nightly toolchain and none could be installed; install one with: rustup toolchain install nightly --component miri,rust-src"
fi
if ! cargo +nightly miri --version >/dev/null 2>&1 ||
  ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
  rustup component add --toolchain nightly miri rust-src ||
    missing "could not add the miri and rust-src components to the nightly toolchain"
fi

export CARGO_TARGET_DIR=${MIRI_TARGET_DIR:-target/miri}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
miri() { # MIRIFLAGS, then test-harness arguments
  MIRIFLAGS="-Zmiri-strict-provenance $1 ${MIRIFLAGS:-}" \
    cargo +nightly miri test -p pmd-core --lib -- "${@:2}" 2>&1 | tee -a "$log"
}
miri "" ring:: copy:: mempool:: mbuf:: --skip pool_outlives_its_handle_while_buffers_are_out
# This test drops the last pool handle while a buffer is out: the pool then keeps its
# memory for good (by design, so the late free stays sound), which Miri's leak check
# would report. Alone, with leaks ignored, it still checks the late free for UB.
miri -Zmiri-ignore-leaks mempool::tests::pool_outlives_its_handle_while_buffers_are_out --exact

read -r passed failed ignored < <(awk '/^test result:/ {
  for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i }
} END { print p + 0, f + 0, g + 0 }' "$log")
echo "ci/miri.sh: $passed passed, $failed failed, $ignored ignored under Miri in $((SECONDS - start)) s"
