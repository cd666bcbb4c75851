#!/usr/bin/env bash
# The test command: sets the machine up (packages, hugepages), then checks formatting,
# lints, and runs every test in the workspace (unit, integration, veth/af_packet ones).
# Root is needed for the network-namespace tests; without it they report a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  bash ci/setup.sh --dpdk   # DPDK is the interop peer of the protocol PMD tests
else
  echo "ci/test.sh: not root: skipping machine setup; namespace tests will be skipped" >&2
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo test --workspace 2>&1 | tee target/test.log
# Belt and braces: make sure no namespace or hugepage file of ours was left behind.
left=$(ip netns list 2>/dev/null | grep -E '^(pmdafp|pmdxdp|l2fwdt|tpmdt|pktgent|pmdtk|pmd-demo)' || true)
[ -z "$left" ] || { echo "ci/test.sh: tests left network namespaces behind: $left" >&2; exit 1; }
# The PCI path inside QEMU guests (ci/vm/): needs root; PMD_SKIP_VM=1 skips it for quick local runs.
if [ "${PMD_SKIP_VM:-0}" = 1 ]; then echo "ci/test.sh: PMD_SKIP_VM=1: skipping the QEMU guest tests (ci/vm/test.sh)" >&2; elif [ "$(id -u)" = 0 ]; then bash ci/vm/test.sh; else echo "ci/test.sh: not root: skipping the QEMU guest tests (ci/vm/test.sh)" >&2; fi
