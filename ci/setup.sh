#!/usr/bin/env bash
# Prepares a fresh Debian machine for building, testing and running the framework:
# system packages, reserved hugepages and a hugetlbfs mount (through our own
# pmd-setup, built here in release mode). Idempotent; needs root.
#
#   ci/setup.sh            packages for the tests and the demo
#   ci/setup.sh --dpdk     also DPDK 22.11 (testpmd, dpdk-test, l2fwd example sources), for the
#                          DPDK interop tests and ci/bench*
#
# Environment: HUGEPAGES (hugepages of the default size, 2 MiB on x86, to reserve; default
# 1024), HUGE_DIR (where hugetlbfs is mounted, default /mnt/pmd-huge: the DPDK peers of the
# tests and the benches put their hugepage files there, the demo's l2fwd its memory).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
want_dpdk=0
for a in "$@"; do
  case $a in
    --dpdk) want_dpdk=1 ;;
    *) echo "usage: $0 [--dpdk]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "ci/setup.sh: run as root (it installs packages and reserves hugepages)" >&2; exit 1; }

pkgs=(iproute2 iputils-ping procps kmod tcpdump ethtool libpcap-dev tshark)
[ $want_dpdk = 1 ] && pkgs+=(dpdk dpdk-dev dpdk-doc libdpdk-dev pkg-config make gcc python3)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ci/setup.sh: installing ${missing[*]} (apt-get; a minute or two)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "ci/setup.sh: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

HUGEPAGES=${HUGEPAGES:-1024}
if [ -w /proc/sys/vm/nr_hugepages ]; then
  pmd_hugepages "$HUGEPAGES" "$HUGE_DIR" >/dev/null ||
    echo "ci/setup.sh: warning: hugepages or the mount at $HUGE_DIR fell short (see above; memory fragmented?)" >&2
  echo "ci/setup.sh: $(cat /proc/sys/vm/nr_hugepages) hugepages of $(awk '/^Hugepagesize/ {print $2 " " $3}' /proc/meminfo) reserved, $(awk '/^HugePages_Free/ {print $2}' /proc/meminfo) free; hugetlbfs at $HUGE_DIR"
else
  echo "ci/setup.sh: warning: this kernel has no hugepages; use --no-huge" >&2
fi
