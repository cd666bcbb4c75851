#!/usr/bin/env python3
"""The tables of ci/bench, from its figures.

    bench-table.py ROWS.tsv RUNS.csv TSC_HZ

ROWS.tsv: one row per case: name, frame bytes (or "tcp"), ours, DPDK (medians: Mpps, or
Gbit/s for tcp), what runs. RUNS.csv: ci/bench's per-run figures (row, frame, run, first,
probe_ours, probe_dpdk, ours, dpdk; a probe is measured just before its side ran). Prints,
in Markdown:

1. per case: Mpps and Gbit/s of each side, ours/DPDK, TSC cycles per packet of the
   forwarding lcore the figure measures (TSC Hz / its packet rate), and the spread of
   the runs (min-max per side);
2. the probe modes: the CPU 0 <-> CPU 1 round trips measured before each side of each
   two-process run are split at their largest gap when the two sides of it are more
   than 25% apart (two placements of the vCPUs); each two-process case then gets, per
   mode, the medians and run counts of each side, so that DPDK and ours are compared
   within one mode;
3. the seconds by mode: the host's low mode comes and goes within a run, whatever runs
   on either side, so each two-process case's per-second samples (RUNS.csv's
   samples_ours and samples_dpdk, both sides pooled) are split into at most three modes
   (high, mid, low): at the largest gap of more than 25%, then again in the group with
   the largest such gap left; per mode, each side's median and its count of seconds.
"""

import csv
import statistics
import sys

MODE_GAP = 1.25


def num(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return None
    return None if v != v else v


def fmt(v, digits=2):
    return "nan" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    return f"{min(vals):.2f}-{max(vals):.2f}"


def cycles(mpps, hz):
    if not mpps or not hz:
        return "-"
    c = hz / (mpps * 1e6)
    return f"{c:.1f}" if c < 100 else f"{c:.0f}"


def modes(probes):
    """The threshold between two probe modes, or None when the probes form one."""
    p = sorted(probes)
    if len(p) < 2:
        return None
    gaps = [(p[i + 1] / p[i] if p[i] else 0, i) for i in range(len(p) - 1)]
    g, i = max(gaps)
    return (p[i] + p[i + 1]) / 2 if g > MODE_GAP else None


def mode_groups(values, most=3):
    """Natural breaks: the pooled values split at gaps of more than MODE_GAP, largest
    first, into at most `most` groups; returned as (low, high) bounds, highest first."""
    groups = [sorted(values)]
    while len(groups) < most:
        best = None
        for k, g in enumerate(groups):
            for i in range(len(g) - 1):
                r = g[i + 1] / g[i] if g[i] else float("inf")
                if r > MODE_GAP and (best is None or r > best[0]):
                    best = (r, k, i)
        if best is None:
            break
        _, k, i = best
        g = groups.pop(k)
        groups[k:k] = [g[: i + 1], g[i + 1:]]
    return [(g[0], g[-1]) for g in reversed(groups) if g]


def main():
    rows_tsv, runs_csv, hz = sys.argv[1], sys.argv[2], num(sys.argv[3])
    rows = [line.rstrip("\n").split("\t") for line in open(rows_tsv) if line.strip()]
    runs = list(csv.DictReader(open(runs_csv)))
    by_row = {}
    for r in runs:
        by_row.setdefault(r["row"], []).append(r)

    print("| case | what runs | frame bytes | ours (Mpps) | DPDK 22.11 (Mpps) | ours (Gbit/s) "
          "| DPDK (Gbit/s) | ours/DPDK | cycles/pkt ours / DPDK | runs ours / DPDK (min-max) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, frame, o, d, what in rows:
        a, b = num(o), num(d)
        rr = by_row.get(name, [])
        sp = f"{spread(num(r['ours']) for r in rr)} / {spread(num(r['dpdk']) for r in rr)}"
        if frame == "tcp":  # already Gbit/s
            print(f"| {name} | {what} | TCP | - | - | {fmt(a)} | {fmt(b)} | {ratio(a, b)} | - | {sp} |")
            continue
        g = lambda x: "nan" if x is None else f"{x * int(frame) * 8 / 1000:.2f}"
        print(f"| {name} | {what} | {frame} | {fmt(a)} | {fmt(b)} | {g(a)} | {g(b)} "
              f"| {ratio(a, b)} | {cycles(a, hz)} / {cycles(b, hz)} | {sp} |")

    # (row, side, probe, figure) of every probed side of every run
    sides = [
        (r["row"], side, num(r[f"probe_{side}"]), num(r[side]))
        for r in runs
        for side in ("ours", "dpdk")
        if num(r[f"probe_{side}"]) is not None
    ]
    if not sides:
        return
    probes = [s[2] for s in sides]
    cut = modes(probes)
    print()
    if cut is None:
        print(f"Probe: CPU 0 <-> CPU 1 round trips of {min(probes):.0f}-{max(probes):.0f} "
              f"TSC cycles before the {len(probes)} sides of two-process runs: one mode.")
    else:
        near = [p for p in probes if p < cut]
        far = [p for p in probes if p >= cut]
        print(f"Probe: two modes of the CPU 0 <-> CPU 1 round trip before the {len(probes)} "
              f"sides of two-process runs: near {min(near):.0f}-{max(near):.0f} cycles "
              f"({len(near)}), far {min(far):.0f}-{max(far):.0f} cycles ({len(far)}).")
    print()
    print("| case | frame bytes | mode (probe cycles) | runs ours / DPDK | ours (Mpps) "
          "| DPDK (Mpps) | ours/DPDK | cycles/pkt ours / DPDK |")
    print("|---|---|---|---|---|---|---|---|")
    for name, frame, *_ in rows:
        mine = [s for s in sides if s[0] == name]
        if not mine:
            continue
        groups = [("one", mine)] if cut is None else [
            ("near", [s for s in mine if s[2] < cut]),
            ("far", [s for s in mine if s[2] >= cut]),
        ]
        for label, grp in groups:
            o = [s[3] for s in grp if s[1] == "ours"]
            d = [s[3] for s in grp if s[1] == "dpdk"]
            ps = [s[2] for s in grp]
            rng = f" ({min(ps):.0f}-{max(ps):.0f})" if ps else ""
            mode_line(name, frame, label + rng, o, d, hz)
    seconds_by_mode(rows, runs, hz)


def mode_line(name, frame, mode, ours, dpdk, hz):
    """One row of a per-mode table: the count and median of each side's figures."""
    a, b = median(ours), median(dpdk)
    print(f"| {name} | {frame} | {mode} | {len(ours)} / {len(dpdk)} | {fmt(a)} | {fmt(b)} "
          f"| {ratio(a, b)} | {cycles(a, hz)} / {cycles(b, hz)} |")


def seconds_by_mode(rows, runs, hz):
    """The third table (see the module doc); nothing when RUNS.csv has no samples."""
    samples = {}
    for r in runs:
        for side in ("ours", "dpdk"):
            vals = [num(x) for x in (r.get(f"samples_{side}") or "").split()]
            samples.setdefault(r["row"], {"ours": [], "dpdk": []})[side] += [
                v for v in vals if v is not None
            ]
    if not any(v["ours"] or v["dpdk"] for v in samples.values()):
        return
    print()
    print("Seconds by mode: each two-process case's per-second samples, both sides pooled, "
          "split into at most three modes at gaps of more than 25%, the largest first.")
    print()
    print("| case | frame bytes | mode (Mpps) | seconds ours / DPDK | ours (Mpps) | DPDK (Mpps) "
          "| ours/DPDK | cycles/pkt ours / DPDK |")
    print("|---|---|---|---|---|---|---|---|")
    for name, frame, *_ in rows:
        s = samples.get(name)
        if not s or not (s["ours"] or s["dpdk"]):
            continue
        bounds = mode_groups(s["ours"] + s["dpdk"])
        labels = {1: ["one"], 2: ["high", "low"], 3: ["high", "mid", "low"]}[len(bounds)]
        for label, (lo, hi) in zip(labels, bounds):
            o = [v for v in s["ours"] if lo <= v <= hi]
            d = [v for v in s["dpdk"] if lo <= v <= hi]
            mode_line(name, frame, f"{label} ({lo:.2f}-{hi:.2f})", o, d, hz)


if __name__ == "__main__":
    main()
