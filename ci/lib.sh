#!/usr/bin/env bash
# Shared by ci/setup.sh, the ci/bench* scripts and drivers/*/bench.sh (sourced, not run):
# the figures read from testpmd, l2fwd and *_perf logs, medians and ratios, DPDK's example
# build, hugepages through our own pmd-setup, and the cleanup of a DPDK run.
#
#   source "$(dirname "$0")/lib.sh"          (from ci/)
#   source "$ROOT/ci/lib.sh"                 (from drivers/NAME/)
#
# Figures are Mpps with two decimals, or "nan" when a log has no sample; ratio prints "n/a"
# when it cannot divide. Every rate is a median over the 1-s samples of a run, dropping
# the first two (warm-up) and the last (a partial second) when there are more than three.

PMD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HUGE_DIR=${HUGE_DIR:-/mnt/pmd-huge}

# The one copy of the parsers: bench_py MODE ARGS... (see the functions below).
bench_py() {
  python3 - "$@" <<'PY'
import math, re, statistics, sys

mode, args = sys.argv[1], sys.argv[2:]

def trim(v):
    """Drops the two warm-up samples and the last (partial) one, if more than three."""
    return v[2:-1] if len(v) > 3 else v

def steady(v, nonzero):
    """The samples a median is taken of; with nonzero, the zero samples (before the peer
    connects, after it leaves) are left out first, then the first and the last non-zero
    ones if more than two: each may cover only part of its second (the peer started or
    stopped within it)."""
    if not nonzero:
        return trim(v)
    nz = [x for x in v if x > 0]
    return nz[1:-1] if len(nz) > 2 else nz

def mpps(v, scale=1e6):
    return f"{statistics.median(v) / scale:.2f}" if v else "nan"

def number(s):
    try:
        x = float(s)
    except ValueError:
        return None
    return None if math.isnan(x) else x

def text(path):
    return open(path, errors="replace").read()

def testpmd_steady(args):
    """LOG KEY [nz]: per stats block, the sum of KEY over the ports; the steady ones."""
    blocks = text(args[0]).split("Port statistics ====")[1:]
    v = [sum(int(x) for x in re.findall(args[1] + r":\s+(\d+)", b)) for b in blocks]
    return steady(v, args[2:] == ["nz"])

if mode == "testpmd":  # LOG KEY [nz]: their median, in Mpps
    print(mpps(testpmd_steady(args)))
elif mode == "samples":  # LOG KEY [nz]: the samples that median is taken of, in Mpps
    print(" ".join(f"{x / 1e6:.2f}" for x in testpmd_steady(args)))
elif mode == "l2fwd":  # LOG: per-table deltas of "Total packets sent" (-T 1: per second)
    v = [int(x) for x in re.findall(r"Total packets sent:\s+(\d+)", text(args[0]))]
    print(mpps([b - a for a, b in zip(v, v[1:])][2:-1]))
elif mode == "perf":  # LOG: the "rx|tx X Mpps" lines of a *_perf example
    v = [float(x) for x in re.findall(r"^(?:rx|tx) ([\d.]+) Mpps", text(args[0]), re.M)]
    print(mpps(steady(v, True), scale=1))
elif mode == "median":  # VALUES...: numbers; "nan" and empty ones are left out
    print(mpps([x for x in map(number, args) if x is not None], scale=1))
elif mode == "ratio":  # A B
    a, b = (number(x) for x in (args + ["", ""])[:2])
    print(f"{a / b:.2f}" if a is not None and b else "n/a")
elif mode == "cycles":  # HZ MPPS [LCORES] [DIGITS]: TSC cycles per packet of each of
    # LCORES (default 1) lcores that share MPPS, every one polling without sleeping
    hz, m = (number(x) for x in (args + ["", ""])[:2])
    lcores = int(args[2]) if len(args) > 2 else 1
    digits = int(args[3]) if len(args) > 3 else 0
    print(f"{lcores * hz / (m * 1e6):.{digits}f}" if hz and m else "nan")
elif mode == "rate":  # COUNT SECONDS
    n, secs = (number(x) for x in (args + ["", ""])[:2])
    print(f"{n / secs / 1e6:.2f}" if n is not None and secs else "nan")
else:
    sys.exit(f"ci/lib.sh: bench_py: unknown mode {mode}")
PY
}

# testpmd_mpps LOG KEY [nz]: median Mpps of KEY (Rx-pps|Tx-pps) summed over the ports of
# each testpmd --stats-period block (DPDK's testpmd and ours print the same); with "nz"
# zero samples (before the peer connects, after it leaves) are left out, and the first and
# last non-zero ones (partial seconds).
testpmd_mpps() { bench_py testpmd "$@"; }
# testpmd_samples LOG KEY [nz]: the per-second samples (Mpps, space-separated) that
# testpmd_mpps takes its median of.
testpmd_samples() { bench_py samples "$@"; }
# l2fwd_mpps LOG: median Mpps of l2fwd's -T 1 tables (per-second deltas of "Total packets
# sent"; DPDK's l2fwd example and ours print the same).
l2fwd_mpps() { bench_py l2fwd "$@"; }
# perf_mpps LOG: median of the non-zero "rx|tx X Mpps" lines of a *_perf example.
perf_mpps() { bench_py perf "$@"; }
# median VALUES...: their median, "nan" and empty values left out.
median() { bench_py median "$@"; }
# ratio A B: A/B, or n/a.
ratio() { bench_py ratio "$@"; }
# cycles_per_pkt HZ MPPS [LCORES] [DIGITS]: TSC cycles per packet of each of LCORES
# busy-polling lcores forwarding MPPS between them ("nan" without a rate).
cycles_per_pkt() { bench_py cycles "$@"; }
# rate_mpps COUNT SECONDS: COUNT packets over SECONDS as Mpps.
rate_mpps() { bench_py rate "$@"; }
# bench_order I: the two sides of run I in the order they run, DPDK first in odd runs and
# ours first in even runs ("dpdk ours" or "ours dpdk").
bench_order() { if [ $(($1 % 2)) = 1 ]; then echo "dpdk ours"; else echo "ours dpdk"; fi; }
# veth_pair_up NS-A NS-B MTU: fresh namespaces NS-A and NS-B (IPv6 off, lo up) joined by
# a veth pair, va0 (02:00:00:00:00:01) in NS-A and vb0 (02:00:00:00:00:02) in NS-B, up.
veth_pair_up() {
  local a=$1 b=$2 mtu=$3 n
  veth_pair_down "$a" "$b"
  ip netns add "$a"; ip netns add "$b"
  for n in "$a" "$b"; do
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$n" link set lo up
  done
  ip link add va0 netns "$a" type veth peer name vb0 netns "$b"
  ip -n "$a" link set va0 address 02:00:00:00:00:01 mtu "$mtu" up
  ip -n "$b" link set vb0 address 02:00:00:00:00:02 mtu "$mtu" up
}
# veth_pair_down NS-A NS-B: removes both namespaces (and the pair with them).
veth_pair_down() { ip netns del "$1" 2>/dev/null; ip netns del "$2" 2>/dev/null; true; }
# rx_rate NS IFACE SECS: the interface's receive rate (Mpps) over the next SECS seconds,
# from its rx_packets counter (read as 0 if the interface is gone).
rx_rate() {
  local r1 r2
  r1=$(ip netns exec "$1" cat "/sys/class/net/$2/statistics/rx_packets" 2>/dev/null || echo 0)
  sleep "$3"
  r2=$(ip netns exec "$1" cat "/sys/class/net/$2/statistics/rx_packets" 2>/dev/null || echo 0)
  rate_mpps $((r2 - r1)) "$3"
}
# tsc_hz: the TSC's rate in Hz (the CPU's nominal MHz, which the TSC runs at here).
tsc_hz() { awk '/^cpu MHz/ {printf "%.0f", $4 * 1e6; exit}' /proc/cpuinfo; }

# dpdk_example NAME DIR [TAG SED]: builds DPDK's example NAME from the sources dpdk-doc
# ships, once, into DIR/dpdk-NAME; prints the binary's path. With TAG and SED, the sed
# script SED is applied to its main.c first (and must change it), into DIR/dpdk-NAME-TAG.
# One build at a time (tests run in parallel): the others wait, then find it built.
dpdk_example() {
  local name=$1 tag=${3:+-$3} sed=${4:-}
  local dir=$2/dpdk-$name$tag
  local bin=$dir/build/$name-shared
  mkdir -p "$2"
  (
    flock 9
    if [ ! -x "$bin" ]; then
      echo "ci/lib.sh: building DPDK's $name example${3:+ ($3)} into $dir" >&2
      rm -rf "$dir"
      # Some examples (l3fwd) include ../common.
      cp -r "/usr/share/dpdk/examples/$name" "$dir" &&
        { [ -d "$2/common" ] || cp -r /usr/share/dpdk/examples/common "$2/"; } &&
        { [ -z "$sed" ] || { cp "$dir/main.c" "$dir/main.c.orig" && sed -i "$sed" "$dir/main.c" &&
            ! cmp -s "$dir/main.c" "$dir/main.c.orig"; }; } &&
        make -s -C "$dir" shared >/dev/null 2>&1 ||
        { echo "ci/lib.sh: building DPDK's $name example failed (apt-get install dpdk-doc libdpdk-dev)" >&2; exit 1; }
    fi
  ) 9>"$2/.dpdk-examples.lock" || return 1
  echo "$bin"
}

# dpdk_l3fwd DIR: DPDK's l3fwd example built into DIR/dpdk-l3fwd-swcsum with one change:
# its port configuration no longer asks for the rx checksum offload (DPDK 22.11's l3fwd
# asks for it on every port, so software PMDs such as net_pcap and net_null refuse to
# configure; its forwarding never reads the result). Prints the binary's path.
dpdk_l3fwd() {
  dpdk_example l3fwd "$1" swcsum 's/\.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,/.offloads = 0,/'
}

# autotest_or_bench SIDE LOG TEST PKG BENCH PREFIX: on CPU 1, DPDK's `dpdk-test` TEST (SIDE
# dpdk, --file-prefix PREFIX) or our criterion bench BENCH of PKG (SIDE ours), output to LOG.
autotest_or_bench() {
  if [ "$1" = dpdk ]; then
    DPDK_TEST=$3 taskset -c 1 dpdk-test -l 0 --no-pci --in-memory --file-prefix "$6" -m 1024 > "$2" 2>&1 < /dev/null
  else
    taskset -c 1 cargo bench -q -p "$4" --bench "$5" -- --warm-up-time 1 --measurement-time 2 > "$2" 2>&1
  fi
}

# pmd_hugepages PAGES DIR: at least PAGES hugepages of the default size reserved and
# hugetlbfs mounted at DIR, through our own pmd-setup (built here in release mode);
# prints what the tool did. Non-zero if either falls short (the mount is tried anyway).
pmd_hugepages() {
  local pages=$1 dir=$2 tool=${CARGO_TARGET_DIR:-$PMD_ROOT/target}/release/pmd-setup rc=0
  [ -x "$tool" ] || echo "ci/lib.sh: building pmd-setup (release; about a minute the first time)" >&2
  (cd "$PMD_ROOT" && cargo build --release -q -p pmd-setup --bin pmd-setup) || return 1
  if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt "$pages" ]; then
    "$tool" reserve "$pages" || rc=1
  fi
  "$tool" mount "$dir" || rc=1
  return $rc
}

# dpdk_cleanup PREFIX...: removes what DPDK processes run with --file-prefix PREFIX leave
# behind: their runtime directory and their hugepage files in $HUGE_DIR (PREFIXmap_N).
dpdk_cleanup() {
  local p
  for p in "$@"; do
    rm -rf "/var/run/dpdk/$p"
    rm -f "$HUGE_DIR/${p}map_"*
  done
}
