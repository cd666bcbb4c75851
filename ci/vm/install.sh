#!/usr/bin/env bash
# Installs what the QEMU guest harness needs (ci/vm/test.sh): QEMU from bookworm-backports,
# busybox, cpio, xz, kmod; and a Debian kernel from bookworm-backports for the GUEST, which is
# downloaded and unpacked under KROOT (default target/vm/kernel), never installed: the host
# gets no kernel, modules or boot entries. Idempotent; needs root.
#
# The bookworm-backports entry is derived from the machine's own Debian entry (first stanza of
# /etc/apt/sources.list.d/debian.sources), so no mirror address is written down here.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "ci/vm/install.sh: run as root (it installs packages)" >&2; exit 1; }
start=$(date +%s.%N)
src=/etc/apt/sources.list.d/debian.sources
bp=/etc/apt/sources.list.d/backports.sources
updated=0

has_backports() {
  grep -qsE '^Suites:.*\bbookworm-backports\b' /etc/apt/sources.list.d/*.sources 2>/dev/null ||
    grep -qsE '^deb .* bookworm-backports( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
}
if ! has_backports; then
  [ -r "$src" ] || { echo "ci/vm/install.sh: $src not found; cannot derive a bookworm-backports entry" >&2; exit 1; }
  echo "ci/vm/install.sh: adding bookworm-backports to $bp (derived from $src)"
  sed -n '1,/^$/p' "$src" | sed 's/^Suites:.*/Suites: bookworm-backports/' > "$bp.tmp"
  grep -q '^Suites: bookworm-backports$' "$bp.tmp" || { rm -f "$bp.tmp"; echo "ci/vm/install.sh: could not derive an entry from $src" >&2; exit 1; }
  mv "$bp.tmp" "$bp"
  apt-get update -q >/dev/null
  updated=1
fi

missing() { local p out=(); for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || out+=("$p"); done; echo "${out[*]:-}"; }
inst() { # inst [apt options] -- packages
  local opts=() ; while [ "$1" != -- ]; do opts+=("$1"); shift; done; shift
  [ $updated = 1 ] || { apt-get update -q >/dev/null; updated=1; }
  echo "ci/vm/install.sh: installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${opts[@]}" "$@" >/dev/null
}
m=$(missing qemu-system-x86)
[ -z "$m" ] || inst -t bookworm-backports -- $m
# iproute2: its `ip` goes into the guest as /bin/ip2, to give SR-IOV VFs their MAC addresses
# through the PF (busybox's ip has no `vf` subcommand).
m=$(missing busybox-static cpio xz-utils kmod iproute2)
[ -z "$m" ] || inst -- $m

# The guest kernel: the package linux-image-amd64 points at, unpacked (dpkg -x) with its
# module index built there (depmod -b); nothing of it lands in /boot or /lib/modules.
KROOT=${KROOT:-$(cd "$(dirname "$0")/../.." && pwd)/target/vm/kernel}
if ! ls "$KROOT"/lib/modules/*/kernel/drivers/vfio >/dev/null 2>&1; then
  [ $updated = 1 ] || { apt-get update -q >/dev/null; updated=1; }
  pkg=$(apt-cache depends -t bookworm-backports linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$pkg" ] || { echo "ci/vm/install.sh: cannot tell which kernel package linux-image-amd64 (bookworm-backports) needs" >&2; exit 1; }
  dl=$(mktemp -d)
  echo "ci/vm/install.sh: unpacking $pkg into $KROOT (for the guest; not installed)"
  (cd "$dl" && apt-get download -q -t bookworm-backports "$pkg" >/dev/null) || { rm -rf "$dl"; echo "ci/vm/install.sh: download of $pkg failed" >&2; exit 1; }
  rm -rf "$KROOT"; mkdir -p "$KROOT"
  dpkg -x "$dl"/*.deb "$KROOT"; rm -rf "$dl"
  kv=$(ls "$KROOT/lib/modules" | sort -V | tail -1)
  depmod -b "$KROOT" "$kv"
fi
ls "$KROOT"/lib/modules/*/kernel/drivers/vfio >/dev/null 2>&1 || { echo "ci/vm/install.sh: no kernel modules under $KROOT/lib/modules" >&2; exit 1; }
end=$(date +%s.%N)
printf 'ci/vm/install.sh: ready (%s, guest kernel %s in %s) in %.1f s\n' \
  "$(qemu-system-x86_64 --version | head -1)" "$(ls "$KROOT/lib/modules" | sort -V | tail -1)" "$KROOT" "$(awk "BEGIN{print $end-$start}")"
