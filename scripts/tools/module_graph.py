#!/usr/bin/env python3
"""The crate's layering rules, checked on its module graph.

usage: module_graph.py DOT_FILE SRC_DIR

DOT_FILE is `cargo modules dependencies` output (module-level "uses" edges, resolved by
rust-analyzer). cargo-modules reads `use` items and signatures but not paths written inside
function bodies, so the `crate::x` paths of SRC_DIR are read as well and both edge sets count.

Fails (exit 1) when:
- two top-level modules depend on each other through any chain (a parent and its own child
  modules may share types: edges inside one top-level module are not counted);
- `core` depends on any module outside itself (the pure core imports nothing of the edges).
"""
import os
import re
import sys


def dot_edges(path):
    node = re.compile(r'^\s*"([^"]+)" \[label=.*// "(crate|mod)" node')
    edge = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label="uses"')
    root, mods, edges = None, set(), set()
    with open(path, encoding="utf-8") as dot:
        for line in dot:
            if m := node.match(line):
                if m[2] == "crate":
                    root = m[1]
                else:
                    mods.add(m[1])
            elif m := edge.match(line):
                edges.add((m[1], m[2]))
    if root is None:
        sys.exit(f"{path}: no crate node; is it cargo-modules output?")

    def top(path):
        parts = path.split("::")
        if parts[0] != root or len(parts) < 2:
            return None
        return parts[1] if f"{root}::{parts[1]}" in mods else None

    found = set()
    for source, target in edges:
        a, b = top(source), top(target)
        if a and b and a != b:
            found.add((a, b, "cargo-modules"))
    return found


def text_edges(src):
    found = set()
    for folder, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, src).split(os.sep)
            top = parts[0][:-3] if len(parts) == 1 else parts[0]
            if top in ("lib", "main"):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                text = re.sub(r"//[^\n]*", "", f.read())
            targets = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
            for group in re.findall(r"\bcrate::\{([^}]*)\}", text, re.S):
                targets |= set(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
            for target in targets - {top}:
                found.add((top, target, os.path.relpath(path, src)))
    return found


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    edges = dot_edges(sys.argv[1]) | text_edges(sys.argv[2])
    graph = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(start, goal):
        seen, stack = set(), [start]
        while stack:
            for n in graph.get(stack.pop(), ()):
                if n == goal:
                    return True
                if n not in seen:
                    seen.add(n)
                    stack.append(n)
        return False

    problems = []
    for a, b, where in sorted(edges):
        if a == "core":
            problems.append(f"core depends on {b} ({where}): the core imports nothing outside itself")
        elif reaches(b, a):
            problems.append(f"cycle: {a} -> {b} ({where}) and {b} reaches {a} back")
    modules = sorted(set(graph) | {b for s in graph.values() for b in s})
    for problem in problems:
        print(problem)
    print(f"{len(modules)} top-level modules, {len(edges)} edges, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
