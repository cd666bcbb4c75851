#!/usr/bin/env bash
# The vhost-user guest: a QEMU guest whose virtio-net is served by our net_vhost, its own Linux
# driver the front end, traffic through our l2fwd to a veth pair in network namespaces.
#
#   ci/vm/vhost-guest.sh INITRAMFS RAWLOG     (root; ci/vm/test.sh runs it as the "vhost" mode)
#
#   guest virtio-net (10.77.0.2) -- QEMU vhost-user -- net_vhost0 [l2fwd] net_af_packet0 -- vh-a
#        === veth === vh-b (10.77.0.1, namespace pmdvh-peer-PID)
#
# l2fwd runs in namespace pmdvh-l2-PID (so its af_packet port sees only vh-a), --no-huge,
# --no-mac-updating; the socket is a file under target/vm. The guest boots twice against the same
# l2fwd (VM_BOOT=1, 2): each boot pings 10.77.0.1 and sends 1 MiB over TCP to a listener in the peer
# namespace; a third boot is migrated live while it sends 10 MiB (see migrate_boot). This script
# appends, per boot, `GUEST-CHECK vhost-host-tcp-N` (the bytes received have the md5 the guest
# printed), `vhost-migrate` and `vhost-migrate-log`, and at the end `GUEST-CHECK vhost-l2fwd`
# (l2fwd exits 0 on SIGINT). Everything it creates is removed on exit.
set -uo pipefail
[ $# = 2 ] || { echo "usage: $0 INITRAMFS RAWLOG" >&2; exit 2; }
initrd=$1; raw=$2
cd "$(dirname "$0")/../.."
[ -x target/release/l2fwd ] || { echo "GUEST-CHECK vhost-l2fwd FAIL binary missing: target/release/l2fwd" >> "$raw"; exit 1; }
command -v busybox >/dev/null || { echo "GUEST-CHECK vhost-l2fwd FAIL busybox missing on the host (nc listener)" >> "$raw"; exit 1; }
ns_l2=pmdvh-l2-$$; ns_peer=pmdvh-peer-$$
sock=$PWD/target/vm/vhost-$$.sock
work=$(mktemp -d /tmp/pmd-vhost-guest.XXXXXX)
l2pid=""
cleanup() {
  [ -n "$l2pid" ] && kill -INT "$l2pid" 2>/dev/null && wait "$l2pid" 2>/dev/null
  ip netns del "$ns_l2" 2>/dev/null; ip netns del "$ns_peer" 2>/dev/null
  rm -f "$sock"; rm -rf "$work"
}
trap cleanup EXIT
hostcheck() { echo "GUEST-CHECK $1 $2 $3" >> "$raw"; }

ip netns add "$ns_l2" && ip netns add "$ns_peer" || { hostcheck vhost-l2fwd FAIL "ip netns add failed"; exit 1; }
ip link add vh-a netns "$ns_l2" type veth peer name vh-b netns "$ns_peer"
ip -n "$ns_l2" link set vh-a up
ip -n "$ns_peer" link set vh-b up
ip -n "$ns_peer" link set lo up
ip -n "$ns_peer" addr add 10.77.0.1/24 dev vh-b
# The peer's stack would hand af_packet partial checksums and super-frames otherwise.
ip netns exec "$ns_peer" ethtool -K vh-b tx off tso off gso off gro off >/dev/null 2>&1

ip netns exec "$ns_l2" env RUST_LOG="${VHOST_GUEST_LOG:-info}" target/release/l2fwd -l 0 --no-huge --file-prefix "pmdvh$$" \
  --vdev "net_vhost0,iface=$sock" --vdev net_af_packet0,iface=vh-a \
  -- -p 0x3 -q 2 --no-mac-updating -T 0 ${VHOST_GUEST_CAPTURE:-} > "$work/l2fwd.log" 2>&1 &
l2pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { hostcheck vhost-l2fwd FAIL "l2fwd did not create $sock: $(tail -3 "$work/l2fwd.log" | tr '\n' ' ')"; exit 1; }

# Boot 3, live migration: the guest streams 10 MiB slowly (VM_MIGRATE=1); when it prints
# GUEST-MIGRATE-READY the host migrates it to a file through the monitor (`migrate exec:`: QEMU
# asks our back end for its dirty log, LOG_SHMFD and LOG_ALL, and refuses to migrate a vhost-user
# device without them), the source QEMU quits, and a second QEMU loads the file (-incoming) and
# goes on, reconnected to the same net_vhost. The stream must arrive whole and the guest's pings
# after it be answered; `vhost-migrate` says how the migration went, `vhost-migrate-log` that
# l2fwd's net_vhost took the log.
migrate_boot() {
  local mon=$work/mon.sock state=$work/vm.state t0 st=""
  VM_BOOT=3 VM_MIGRATE=1 VM_MONITOR=$mon VHOST_SOCK=$sock VM_TIMEOUT=${VM_TIMEOUT:-180} \
    bash ci/vm/run-guest.sh vhost "$initrd" < /dev/null >> "$raw" 2>&1 &
  local src=$!
  for _ in $(seq 1500); do grep -q GUEST-MIGRATE-READY "$raw" && break; kill -0 $src 2>/dev/null || break; sleep 0.1; done
  if ! grep -q GUEST-MIGRATE-READY "$raw"; then
    hostcheck vhost-migrate FAIL "the guest never got to its transfer"; wait $src; return
  fi
  sleep 2   # into the stream
  t0=$(date +%s.%N)
  python3 ci/vm/monitor.py "$mon" "migrate -d \"exec:cat > $state\"" > "$work/mon.out" 2>&1
  for _ in $(seq 600); do
    python3 ci/vm/monitor.py "$mon" "info migrate" > "$work/mon.out" 2>&1
    st=$(tr -d '\r' < "$work/mon.out" | sed -n 's/^Migration status: *//p' | tail -1)
    case $st in completed|failed|cancelled) break ;; esac
    sleep 0.2
  done
  local took; took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  local info; info=$(tr -d '\r' < "$work/mon.out" | grep -iE '^(total time|downtime|transferred ram|dirty sync count)' | tr '\n' ';')
  python3 ci/vm/monitor.py "$mon" quit > /dev/null 2>&1
  wait $src
  if [ "$st" != completed ]; then
    hostcheck vhost-migrate FAIL "status ${st:-unknown} after ${took}s: $(tr -d '\r' < "$work/mon.out" | grep -iE 'status|error' | tr '\n' ' ')"; return
  fi
  hostcheck vhost-migrate PASS "completed in ${took}s, $(stat -c %s "$state") bytes of state; $info"
  VM_BOOT=3 VM_MIGRATE=1 VM_INCOMING="exec:cat $state" VHOST_SOCK=$sock VM_TIMEOUT=${VM_TIMEOUT:-180} \
    bash ci/vm/run-guest.sh vhost "$initrd" < /dev/null >> "$raw" 2>&1
  rm -f "$state"
}

for boot in 1 2 3; do
  rm -f "$work/recv" "$work/in"
  # The listener's stdin is a FIFO held open (fd 3) while the guest runs: at end-of-file it
  # would close its side of the connection before the guest has sent anything.
  mkfifo "$work/in"
  ip netns exec "$ns_peer" timeout 300 busybox nc -l -p 5001 < "$work/in" > "$work/recv" 2>/dev/null &
  nc_pid=$!
  exec 3> "$work/in"
  if [ $boot = 3 ]; then
    migrate_boot; expect=10485760
  else
    VM_BOOT=$boot VHOST_SOCK=$sock VM_TIMEOUT=${VM_TIMEOUT:-180} bash ci/vm/run-guest.sh vhost "$initrd" < /dev/null >> "$raw" 2>&1
    expect=1048576
  fi
  sleep 1
  exec 3>&-
  kill "$nc_pid" 2>/dev/null; wait "$nc_pid" 2>/dev/null
  want=$(tr -d '\r' < "$raw" | sed -n "s/^GUEST-CHECK vhost-tcp-$boot PASS .*md5=\([0-9a-f]*\).*/\1/p" | tail -1)
  got=$(md5sum < "$work/recv" | cut -d' ' -f1); bytes=$(stat -c %s "$work/recv")
  if [ -n "$want" ] && [ "$want" = "$got" ] && [ "$bytes" = "$expect" ]; then
    hostcheck "vhost-host-tcp-$boot" PASS "received $bytes bytes, md5 $got as sent"
  else
    hostcheck "vhost-host-tcp-$boot" FAIL "received $bytes bytes md5 $got; the guest sent md5 ${want:-unknown}"
  fi
done

kill -INT "$l2pid"; wait "$l2pid"; rc=$?; l2pid=""
if n=$(grep -c 'dirty log of' "$work/l2fwd.log") && [ "$n" -ge 1 ]; then
  hostcheck vhost-migrate-log PASS "$(grep -m1 'dirty log of' "$work/l2fwd.log" | sed 's/.*vhost/vhost/')"
else
  hostcheck vhost-migrate-log FAIL "l2fwd's net_vhost never took a dirty log"
fi
sed 's/^/  l2fwd| /' "$work/l2fwd.log" >> "$raw"
if [ "$rc" = 0 ]; then
  hostcheck vhost-l2fwd PASS "l2fwd exit 0; $(grep -m1 -i 'total packets' "$work/l2fwd.log" | tr -s ' ')"
else
  hostcheck vhost-l2fwd FAIL "l2fwd exit $rc: $(tail -5 "$work/l2fwd.log" | tr '\n' ' ')"
fi
