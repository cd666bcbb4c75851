#!/usr/bin/env bash
# The test command: sets the machine up (packages, hugepages), then checks formatting,
# lints, and runs every test in the workspace (unit, integration, veth/af_packet ones),
# pmd-core's ring, mempool and buffer tests under Miri, and its loom models.
# Root is needed for the network-namespace tests; without it they report a skip. As root
# a skip is a failure (PMD_REQUIRE_ALL=1): CI must not pass on a host that lacks DPDK,
# AF_XDP or hugepages. At the end, also on failure, the host must be as found: no new
# file in a hugetlbfs mount, nothing new under /var/run/dpdk, no new network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests must leave as they found it.
hugetlbfs_files() { # every file in every hugetlbfs mount
  awk '$3 == "hugetlbfs" {print $2}' /proc/mounts | while read -r m; do find "$m" -mindepth 1 2>/dev/null || true; done | sort
}
dpdk_runtime() { { find /var/run/dpdk -mindepth 1 -maxdepth 1 2>/dev/null || true; } | sort; }
netns_names() { { ip netns list 2>/dev/null || true; } | awk '{print $1}' | sort; }
before_huge=$(hugetlbfs_files); before_dpdk=$(dpdk_runtime); before_netns=$(netns_names)
[ -z "$before_huge" ] || echo "ci/test.sh: note: the hugetlbfs mounts already hold $(wc -l <<<"$before_huge") file(s); only new ones count as left behind" >&2
host_as_found() {
  local rc=$? left=()
  local new
  new=$(comm -13 <(echo "$before_huge") <(hugetlbfs_files) | tr '\n' ' ')
  [ -z "${new// /}" ] || left+=("hugepage files: $new")
  new=$(comm -13 <(echo "$before_dpdk") <(dpdk_runtime) | tr '\n' ' ')
  [ -z "${new// /}" ] || left+=("/var/run/dpdk: $new")
  new=$(comm -13 <(echo "$before_netns") <(netns_names) | tr '\n' ' ')
  [ -z "${new// /}" ] || left+=("network namespaces: $new")
  if [ ${#left[@]} -gt 0 ]; then
    echo "ci/test.sh: FAIL: the tests left behind $(IFS=';'; echo "${left[*]}")" >&2
    [ "$rc" != 0 ] || rc=1
  fi
  exit "$rc"
}
trap host_as_found EXIT

if [ "$(id -u)" = 0 ]; then
  bash ci/setup.sh --dpdk   # DPDK is the interop peer of the protocol PMD tests
  export PMD_REQUIRE_ALL=1
  echo "ci/test.sh: root: PMD_REQUIRE_ALL=1, a test that skips (no DPDK, AF_XDP, hugepages, ...) fails" >&2
else
  echo "ci/test.sh: not root: skipping machine setup; namespace tests will be skipped" >&2
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# Every doc link resolves and every public item's docs render (about 30 s).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
cargo test --workspace 2>&1 | tee target/test.log
# The unsafe core under Miri (about 2 minutes) and the lock-free core under loom (1.5).
bash ci/miri.sh
bash ci/loom.sh
# The PCI path inside QEMU guests (ci/vm/): needs root; PMD_SKIP_VM=1 skips it for quick local runs.
if [ "${PMD_SKIP_VM:-0}" = 1 ]; then echo "ci/test.sh: PMD_SKIP_VM=1: skipping the QEMU guest tests (ci/vm/test.sh)" >&2; elif [ "$(id -u)" = 0 ]; then bash ci/vm/test.sh; else echo "ci/test.sh: not root: skipping the QEMU guest tests (ci/vm/test.sh)" >&2; fi
