#!/usr/bin/env bash
# Prepares a fresh Debian machine for building, testing and running the framework:
# system packages, reserved hugepages and a hugetlbfs mount. Idempotent; needs root.
#
#   ci/setup.sh            packages for the tests and the demo
#   ci/setup.sh --dpdk     also DPDK 22.11 (testpmd, dpdk-test, l2fwd example sources), for ci/bench-*.sh
#
# Environment: HUGEPAGES (2 MiB pages to reserve, default 1024), HUGE_DIR (default /mnt/pmd-huge).
set -euo pipefail
want_dpdk=0
for a in "$@"; do
  case $a in
    --dpdk) want_dpdk=1 ;;
    *) echo "usage: $0 [--dpdk]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "ci/setup.sh: run as root (it installs packages and reserves hugepages)" >&2; exit 1; }

pkgs=(iproute2 iputils-ping procps kmod tcpdump ethtool)
[ $want_dpdk = 1 ] && pkgs+=(dpdk dpdk-dev dpdk-doc libdpdk-dev pkg-config make gcc python3)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ci/setup.sh: installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "ci/setup.sh: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

HUGEPAGES=${HUGEPAGES:-1024}
HUGE_DIR=${HUGE_DIR:-/mnt/pmd-huge}
nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ -w "$nr" ]; then
  [ "$(cat $nr)" -ge "$HUGEPAGES" ] || echo "$HUGEPAGES" > "$nr"
  got=$(cat $nr)
  [ "$got" -ge "$HUGEPAGES" ] || echo "ci/setup.sh: warning: only $got of $HUGEPAGES hugepages could be reserved (memory fragmented?)" >&2
  mkdir -p "$HUGE_DIR"
  mountpoint -q "$HUGE_DIR" || mount -t hugetlbfs -o pagesize=2M nodev "$HUGE_DIR"
  echo "ci/setup.sh: $(cat $nr) x 2 MiB hugepages reserved, $(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages) free; hugetlbfs at $HUGE_DIR"
else
  echo "ci/setup.sh: warning: this kernel has no 2 MiB hugepages; use --no-huge" >&2
fi
