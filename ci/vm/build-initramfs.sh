#!/usr/bin/env bash
# Builds the guest initramfs for ci/vm/run-guest.sh: busybox userland, the vfio/uio modules
# (and the NIC drivers igb, e1000e, virtio_net, so unbind can be seen to restore them) for the
# installed Debian kernel, decompressed with their dependencies, our release binaries with the
# shared libraries ldd reports (and the dynamic loader at its path), and ci/vm/guest-init.sh as /init.
#
#   ci/vm/build-initramfs.sh OUT.cpio.gz
#
# Binaries that are not built yet are left out (the guest reports their checks as FAIL "binary
# missing"). Reproducible: sorted file list, fixed mtimes, no gzip name/time.
# Environment: KVER (default: newest under /lib/modules), TARGET_DIR (default: target/release),
# VM_BINARIES (which of them to take, default "hugepage-setup pci-check l2fwd frame-blast").
set -euo pipefail
[ $# = 1 ] || { echo "usage: $0 OUT.cpio.gz" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "$1")
kver=${KVER:-$(ls /lib/modules 2>/dev/null | sort -V | tail -1)}
[ -n "$kver" ] && [ -d "/lib/modules/$kver" ] || { echo "$0: no kernel modules under /lib/modules (run ci/vm/install.sh)" >&2; exit 1; }
[ -e "/boot/vmlinuz-$kver" ] || { echo "$0: /boot/vmlinuz-$kver missing" >&2; exit 1; }
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
for m in "${mods[@]}"; do modprobe -S "$kver" --show-depends "$m"; done |
  awk '/^insmod/{print $2}' | awk '!seen[$0]++' > "$root/modpaths"
: > "$root/modlist"
while read -r f; do
  rel=${f#/lib/modules/"$kver"/}; rel=${rel%.xz}; rel=${rel%.zst}; rel=${rel%.gz}
  mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
  case $f in
    *.xz) xz -dc "$f" ;; *.zst) zstd -dcq "$f" ;; *.gz) gzip -dc "$f" ;; *) cat "$f" ;;
  esac > "$root/lib/modules/$kver/$rel"
  echo "/lib/modules/$kver/$rel" >> "$root/modlist"
done < "$root/modpaths"
rm "$root/modpaths"
cp "/lib/modules/$kver/modules.builtin" "/lib/modules/$kver/modules.order" "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver" 2>/dev/null || true   # modules.dep for modprobe inside the guest

# Our binaries and what they link against (the dynamic loader lands at the path ldd names).
: > "$root/binaries"
for b in ${VM_BINARIES-hugepage-setup pci-check l2fwd frame-blast}; do
  if [ -x "$tdir/$b" ]; then
    cp "$tdir/$b" "$root/bin/$b"; echo "$b" >> "$root/binaries"
    { ldd "$tdir/$b" 2>/dev/null || true; } | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | while read -r lib; do
      mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
    done
  else
    echo "build-initramfs: $tdir/$b not built: left out (its checks will FAIL \"binary missing\")" >&2
  fi
done
cp "$here/guest-init.sh" "$root/init"; chmod 755 "$root/init"

find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --reproducible -R 0:0 --quiet | gzip -n -1) > "$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: $out ($(du -k "$out" | cut -f1) KiB, kernel $kver, modules $(wc -l < "$root/modlist"), binaries: $(tr '\n' ' ' < "$root/binaries"))"
