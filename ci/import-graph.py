#!/usr/bin/env python3
"""Print the file-level import graph of a crate's src/ (from `use crate::` and
`super::` lines) and the cycles in it.

Usage: ci/import-graph.py pmd-core/src [--allow mbuf,mempool]
Exit 1 when a cycle exists between files outside the allowed modules."""
import os, re, sys

def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"

def main():
    root = sys.argv[1]
    allow = []
    if "--allow" in sys.argv:
        allow = sys.argv[sys.argv.index("--allow") + 1].split(",")
    files = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(".rs"):
                p = os.path.join(d, f)
                files[module_of(root, p)] = p
    mods = set(files)
    edges = {m: set() for m in mods}
    for m, p in files.items():
        src = open(p).read()
        # Unit-test modules and comments (doc links included) are not imports.
        cut = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\(\w+\))? )?mod \w+", src)
        if cut:
            src = src[: cut.start()]
        src = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith("//"))
        here = m.split("::") if m != "crate" else []
        for path in re.findall(r"(?:crate|super)(?:::\w+)+", src):
            segs = path.split("::")
            if segs[0] == "crate":
                base, rest = [], segs[1:]
            else:
                # `super` names the parent of this file's module, whether the
                # file is `x.rs` or `x/mod.rs`; each further `super` goes up one.
                base, rest = here[:-1], segs[1:]
                while rest and rest[0] == "super":
                    base, rest = base[:-1], rest[1:]
            target = None
            cand = base[:]
            for s in rest:
                cand = cand + [s]
                name = "::".join(cand)
                if name in mods:
                    target = name
            if target and target != m:
                edges[m].add(target)
    for m in sorted(edges):
        if edges[m]:
            print(f"{m} -> {', '.join(sorted(edges[m]))}")
    # cycles: strongly connected components with more than one file
    index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1:
                sccs.append(sorted(comp))
    for v in sorted(edges):
        if v not in index:
            strong(v)
    bad = 0
    for c in sccs:
        allowed = all(any(x == a or x.startswith(a + "::") for a in allow) for x in c)
        print(("allowed cycle: " if allowed else "CYCLE: ") + " <-> ".join(c))
        bad += not allowed
    print(f"{len(mods)} files, {sum(len(e) for e in edges.values())} edges, {bad} cycles outside {allow or 'nothing'}")
    sys.exit(1 if bad else 0)

main()
