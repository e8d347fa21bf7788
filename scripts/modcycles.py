#!/usr/bin/env python3
"""Report module dependency cycles in a crate: edges are `crate::a::b` paths per source file.

Usage: scripts/modcycles.py fs/src  — prints each strongly connected component of size > 1.
A module is a file path under src (foo.rs or foo/mod.rs -> foo, foo/bar.rs -> foo::bar).
A reference `crate::a::b::Item` maps to the longest known module prefix (a::b if it exists).
Exits 1 when any cycle exists.
"""
import os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else "fs/src"
mods = {}
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        p = os.path.relpath(os.path.join(d, f), root)[:-3].split(os.sep)
        if p[-1] == "mod":
            p = p[:-1]
        if p in (["lib"], ["main"]):
            continue
        mods["::".join(p)] = os.path.join(d, f)

def strip_comments(s):
    s = re.sub(r"//[^\n]*", "", s)
    return re.sub(r"/\*.*?\*/", "", s, flags=re.S)

def target(path):
    parts = path.split("::")
    for n in range(len(parts), 0, -1):
        m = "::".join(parts[:n])
        if m in mods:
            return m
    return None

edges = {m: set() for m in mods}
for m, f in mods.items():
    src = strip_comments(open(f).read())
    # cut #[cfg(test)] mod tests { ... } tails: tests may use anything
    i = src.find("#[cfg(test)]")
    if i >= 0:
        src = src[:i]
    refs = re.findall(r"crate::((?:\w+::)*\w+)", src)
    # grouped imports: use crate::{a::X, b}
    for grp in re.findall(r"crate::\{([^}]*)\}", src):
        refs += [x.strip() for x in grp.split(",") if x.strip()]
    # use super::x inside folder modules
    base = m.split("::")
    for r in re.findall(r"\bsuper::((?:\w+::)*\w+)", src):
        refs.append("::".join(base[:-2] + r.split("::")) if len(base) > 1 else r)
    for r in refs:
        t = target(r)
        if t and t != m and not m.startswith(t + "::") :
            edges[m].add(t)

# Tarjan SCC
idx, low, on, st, out, n = {}, {}, set(), [], [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx:
            sc(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1:
            out.append(sorted(comp))
for v in sorted(mods):
    if v not in idx:
        sc(v)
for c in out:
    print(f"cycle ({len(c)}): {' '.join(c)}")
    for a in c:
        print(f"  {a} -> {' '.join(sorted(e for e in edges[a] if e in c))}")
print(f"{len(out)} cycle(s) over {len(mods)} modules")
sys.exit(1 if out else 0)
