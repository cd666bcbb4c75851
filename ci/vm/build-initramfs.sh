#!/usr/bin/env bash
# Builds the guest initramfs for ci/vm/run-guest.sh: busybox userland, the vfio/uio modules
# (and the NIC drivers igb, e1000e, virtio_net, so unbind can be seen to restore them) for the
# Debian kernel ci/vm/install.sh unpacked under KROOT, decompressed with their dependencies, our release binaries with the
# shared libraries ldd reports (and the dynamic loader at its path), and ci/vm/guest-init.sh as /init.
#
#   ci/vm/build-initramfs.sh OUT.cpio.gz
#
# Binaries that are not built yet are left out (the guest reports their checks as FAIL "binary
# missing"). DPDK's dpdk-testpmd goes in too when it is installed (see below). Reproducible:
# sorted file list, fixed mtimes, no gzip name/time.
# Environment: KROOT (default target/vm/kernel), KVER (default: newest under KROOT/lib/modules),
# TARGET_DIR (default: target/release),
# VM_BINARIES (which of them to take, default "pmd-setup pci-check l2fwd frame-blast"),
# DPDK_TESTPMD (default: dpdk-testpmd on PATH; empty: leave DPDK out).
set -euo pipefail
[ $# = 1 ] || { echo "usage: $0 OUT.cpio.gz" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "$1")
kroot=${KROOT:-$repo/target/vm/kernel}
kver=${KVER:-$(ls "$kroot/lib/modules" 2>/dev/null | sort -V | tail -1)}
[ -n "$kver" ] && [ -d "$kroot/lib/modules/$kver" ] || { echo "$0: no kernel modules under $kroot/lib/modules (run ci/vm/install.sh)" >&2; exit 1; }
[ -e "$kroot/boot/vmlinuz-$kver" ] || { echo "$0: $kroot/boot/vmlinuz-$kver missing" >&2; exit 1; }
bb=$(command -v busybox || true)
[ -n "$bb" ] && ! ldd "$bb" >/dev/null 2>&1 || { echo "$0: need a static busybox (apt-get install busybox-static)" >&2; exit 1; }
tdir=${TARGET_DIR:-$repo/target/release}

mkdir -p "$(dirname "$out")"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,mnt/huge,etc,var/run,lib/modules/"$kver"}
ln -s ../proc/self/mounts "$root/etc/mtab"
cp "$bb" "$root/bin/busybox"
for a in $("$bb" --list); do
  [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
for a in modprobe insmod rmmod lsmod depmod poweroff reboot halt ip; do ln -s ../bin/busybox "$root/sbin/$a"; done

# Modules, in load order (modprobe's own resolution), decompressed: busybox insmod reads plain .ko.
mods=(vfio vfio_iommu_type1 vfio-pci uio uio_pci_generic igb e1000e virtio_net)
for m in "${mods[@]}"; do modprobe -d "$kroot" -S "$kver" --show-depends "$m"; done |
  awk '/^insmod/{print $2}' | awk '!seen[$0]++' > "$root/modpaths"
: > "$root/modlist"
while read -r f; do
  rel=${f#"$kroot"/lib/modules/"$kver"/}; rel=${rel%.xz}; rel=${rel%.zst}; rel=${rel%.gz}
  mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
  case $f in
    *.xz) xz -dc "$f" ;; *.zst) zstd -dcq "$f" ;; *.gz) gzip -dc "$f" ;; *) cat "$f" ;;
  esac > "$root/lib/modules/$kver/$rel"
  echo "/lib/modules/$kver/$rel" >> "$root/modlist"
done < "$root/modpaths"
rm "$root/modpaths"
cp "$kroot/lib/modules/$kver/modules.builtin" "$kroot/lib/modules/$kver/modules.order" "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver" 2>/dev/null || true   # modules.dep for modprobe inside the guest

# Our binaries and what they link against (the dynamic loader lands at the path ldd names).
: > "$root/binaries"
for b in ${VM_BINARIES-pmd-setup pci-check l2fwd frame-blast port-filters}; do
  if [ -x "$tdir/$b" ]; then
    cp "$tdir/$b" "$root/bin/$b"; echo "$b" >> "$root/binaries"
    { ldd "$tdir/$b" 2>/dev/null || true; } | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | while read -r lib; do
      mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
    done
  else
    echo "build-initramfs: $tdir/$b not built: left out (its checks will FAIL \"binary missing\")" >&2
  fi
done

# iproute2's ip as /bin/ip2 (busybox's ip stays /sbin/ip): `ip2 link set PF vf N mac ADDR` gives
# an SR-IOV VF its address through the PF's driver (the sriov checks).
ip2=$(command -v ip || true)
iphelp=$([ -n "$ip2" ] && "$ip2" link help 2>&1 || true)   # `ip link help` exits 255
if printf '%s' "$iphelp" | grep -q ' vf '; then
  cp -L "$ip2" "$root/bin/ip2"; echo ip2 >> "$root/binaries"
  { ldd "$ip2" 2>/dev/null || true; } | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | while read -r lib; do
    [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done
else
  echo "build-initramfs: iproute2's ip not found: left out (the sriov checks will FAIL)" >&2
fi

# DPDK 22.11's own testpmd (Debian's dpdk package), the benchmark reference of the iommu guest's
# dpdk-igb-testpmd check: the binary at /bin/dpdk-testpmd, its ldd closure, and the two plugins it
# needs at run time and does not link (the igb PMD librte_net_e1000 and the ring mempool driver
# librte_mempool_ring) with their closures. Only those, not the 380 files of the PMD directory:
# the guest passes the plugins with -d (EAL's own directory scan only takes names ending in .so or
# .so.<ABI>.<minor>, so the .so.<ABI> names copied here are loaded by -d alone). Libraries that
# live in the PMD directory (some are linked by testpmd, e.g. librte_bus_pci) are stored there
# once, under their soname, whichever path ldd names them by; the guest runs testpmd with
# LD_LIBRARY_PATH set to that directory (there is no ld.so.cache in the image).
# /etc/dpdk-testpmd.env tells the guest where they are. Left out (the check then SKIPs) when
# dpdk-testpmd is not installed or DPDK_TESTPMD is empty.
dpdk_note="dpdk-testpmd: not installed, left out"
testpmd=${DPDK_TESTPMD-$(command -v dpdk-testpmd || true)}
if [ -n "$testpmd" ] && [ -x "$testpmd" ]; then
  plugin() { # plugin NAME: the NAME.so.<ABI> file (soname form) of a DPDK plugin, empty if none
    local f; for f in /usr/lib/*/dpdk/pmds-*/"$1".so.*; do
      case ${f##*.so.} in *.*) ;; [0-9]*) echo "$f"; return ;; esac
    done
  }
  plugins=("$(plugin librte_net_e1000)" "$(plugin librte_mempool_ring)")
  if [ -z "${plugins[0]}" ] || [ -z "${plugins[1]}" ]; then
    dpdk_note="dpdk-testpmd: librte_net_e1000 or librte_mempool_ring not found under /usr/lib/*/dpdk/pmds-*: left out"
    echo "build-initramfs: $dpdk_note" >&2
  else
    pmddir=$(dirname "${plugins[0]}")
    before=$(du -sk "$root" | cut -f1)
    : > "$root/dpdk-files"
    put() { # put SRC DEST: SRC's content (symlinks followed) at DEST in the image, once
      [ -e "$root$2" ] && return
      mkdir -p "$root$(dirname "$2")"; cp -L "$1" "$root$2"; echo "$2" >> "$root/dpdk-files"
    }
    put "$testpmd" /bin/dpdk-testpmd
    for f in "$testpmd" "${plugins[@]}"; do
      [ "$f" = "$testpmd" ] || put "$f" "$f"
      { ldd "$f" 2>/dev/null || true; } | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | while read -r lib; do
        case $(realpath "$lib") in
          "$pmddir"/*) put "$lib" "$pmddir/$(basename "$lib")" ;;
          *) put "$lib" "$lib" ;;
        esac
      done
    done
    printf 'DPDK_LIBDIR=%s\nDPDK_PLUGINS="-d %s -d %s"\n' "$pmddir" "${plugins[0]}" "${plugins[1]}" > "$root/etc/dpdk-testpmd.env"
    echo dpdk-testpmd >> "$root/binaries"
    dpdk_note="dpdk-testpmd: $(wc -l < "$root/dpdk-files") files, $(( $(du -sk "$root" | cut -f1) - before )) KiB unpacked"
    rm "$root/dpdk-files"
  fi
fi

cp "$here/guest-init.sh" "$root/init"; chmod 755 "$root/init"

find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --reproducible -R 0:0 --quiet | gzip -n -1) > "$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: $out ($(du -k "$out" | cut -f1) KiB, kernel $kver, modules $(wc -l < "$root/modlist"), binaries: $(tr '\n' ' ' < "$root/binaries")); $dpdk_note"
