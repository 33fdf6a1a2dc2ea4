#!/usr/bin/env python3
"""The import graph of the workspace, between crates and between the modules
of each crate, and whether either has a cycle.

    python3 scripts/module-cycles.py          # check; exit 1 on a cycle
    python3 scripts/module-cycles.py --graph  # also print every edge

A module is a file under a crate's src/ (`src/a/b.rs` and `src/a/b/mod.rs`
are `a::b`; `lib.rs`, `main.rs` are the root). An edge a -> b is a `crate::b`
(or `super::`) path in a's source outside its `#[cfg(test)]` module: tests
may reach anywhere. Crate edges come from each Cargo.toml's [dependencies]
(not dev-dependencies, which Cargo allows to point back). Standard library
only, so CI runs it without installing anything.
"""
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATH = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")


def module_of(src, path):
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ""
    return "::".join(parts)


def without_tests(text):
    """The source before its `#[cfg(test)]` module (by convention the last item)."""
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod\s+\w+", text, re.M)
    return text[: m.start()] if m else text


def module_edges(src):
    files = {module_of(src, p): p for p in src.rglob("*.rs")}
    modules = set(files)
    edges = set()
    for module, path in files.items():
        for kind, rest in PATH.findall(without_tests(path.read_text())):
            segments = rest.strip(":").split("::")
            base = [] if kind == "crate" else module.split("::")[:-1]
            # super:: of `a::b` is `a`; a file's own module path is `module`.
            if kind == "super" and module:
                base = module.split("::")[:-1]
            target = None
            for n in range(len(segments), 0, -1):
                cand = "::".join(base + segments[:n])
                if cand in modules:
                    target = cand
                    break
            if target is not None and target != module and not module.startswith(target + "::") \
                    and not target.startswith(module + "::") and target != "":
                edges.add((module, target))
    return modules, edges


def cycles(nodes, edges):
    """Strongly connected components with more than one node (Tarjan)."""
    graph = {n: sorted(b for a, b in edges if a == n) for n in nodes}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return out


def main():
    show = "--graph" in sys.argv
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    bad = False
    crate_edges = set()
    for crate in members:
        deps = tomllib.loads((ROOT / crate / "Cargo.toml").read_text()).get("dependencies", {})
        crate_edges |= {(crate, d) for d in deps if d in members}
        nodes, edges = module_edges(ROOT / crate / "src")
        found = cycles(nodes, edges)
        if show:
            for a, b in sorted(edges):
                print(f"  {crate}: {a or '(root)'} -> {b}")
        for c in found:
            bad = True
            print(f"cycle in {crate}: {' <-> '.join(c)}")
        if not found:
            print(f"{crate}: {len(nodes)} modules, {len(edges)} imports, no cycle")
    for a, b in sorted(crate_edges):
        print(f"crate {a} -> {b}")
    for c in cycles(set(members), crate_edges):
        bad = True
        print(f"crate cycle: {' <-> '.join(c)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
