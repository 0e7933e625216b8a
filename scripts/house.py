#!/usr/bin/env python3
"""Measures the shape of the crate: module import cycles, layer breaches, the longest
functions, raw protocol words outside the wire crate, and the number of test binaries.

    python3 scripts/house.py            # the tables, as Markdown
    python3 scripts/house.py --check    # exit 1 on an import cycle between top-level modules

It reads source text only (`use crate::…`, `crate::…` paths, `super::`), so it runs anywhere
without building. Unit-test code (`#[cfg(test)]` modules, files named tests.rs) is left out;
the test bed (`src/testbed`, feature `demo`) is in the import graph but not in the function
lengths or the literal counts.
"""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")


def rust_files(base):
    for dirpath, _, names in os.walk(base):
        for n in sorted(names):
            if n.endswith(".rs"):
                yield os.path.join(dirpath, n)


def module_of(path):
    """src/pool/mod.rs -> ['pool']; src/relay/machine/queue.rs -> ['relay','machine','queue']."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def is_test_file(path):
    return os.path.basename(path) == "tests.rs"


def is_testbed(path):
    return os.path.relpath(path, SRC).startswith("testbed")


STRINGS = re.compile(r'r(#*)"(?:.|\n)*?"\1|b?"(?:\\.|[^"\\])*"|b?\'(?:\\.|[^\'\\])\'', re.S)


def blank_strings(text):
    """Empties string and char literals (keeping their lines), so braces in them do not count."""
    def keep_lines(m):
        s = m.group(0)
        if len(s) <= 4 and s.lstrip("b").startswith("'"):
            return s if re.match(r"b?'[A-Za-z0-9]'", s) else "' '"
        return '"' + "\n" * s.count("\n") + '"'
    return STRINGS.sub(keep_lines, text)


def strip_tests(text):
    """Drops `#[cfg(test)] mod … { … }` blocks and comments, so only shipped code is read."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


texts = {}


def load():
    files = {}
    for p in rust_files(SRC):
        if is_test_file(p):
            continue
        with open(p, encoding="utf-8") as f:
            raw = f.read()
            files[p] = strip_tests(raw)
            texts[p] = raw
    return files


def expand_use(body):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e'] (roughly; enough for paths)."""
    body = re.sub(r"\s+", "", body)
    m = re.match(r"^([\w:]*?)\{(.*)\}$", body)
    if not m:
        return [body]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    res = []
    for p in parts:
        if p:
            res += [prefix + q for q in expand_use(p)]
    return res


def imports(files):
    mods = {tuple(module_of(p)) for p in files}
    graph = defaultdict(set)
    for p, text in files.items():
        me = tuple(module_of(p))
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths += expand_use(m.group(1))
        paths += re.findall(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", text)
        for path in paths:
            segs = path.split("::")
            if segs[0] == "crate":
                segs = segs[1:]
            elif segs[0] == "super":
                base = list(me[:-1])
                while segs and segs[0] == "super":
                    segs = segs[1:]
                    if segs and segs[0] == "super":
                        base = base[:-1]
                segs = base + segs
            elif segs[0] == "self":
                segs = list(me) + segs[1:]
            else:
                continue
            # The longest known module the path names.
            target = None
            for k in range(len(segs), 0, -1):
                if tuple(segs[:k]) in mods:
                    target = tuple(segs[:k])
                    break
            if target and target != me and not me[: len(target)] == target:
                graph[me].add(target)
    return mods, graph


def sccs(nodes, graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def top_graph(graph):
    g = defaultdict(set)
    for a, bs in graph.items():
        for b in bs:
            if a and b and a[0] != b[0]:
                g[a[0]].add(b[0])
    return g


FN = re.compile(r"^\s*(?:pub(?:\([\w:]+\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def functions(files):
    res = []
    for p, text in files.items():
        if is_testbed(p):
            continue
        lines = blank_strings(text).split("\n")
        i = 0
        while i < len(lines):
            m = FN.match(lines[i])
            if not m:
                i += 1
                continue
            depth, started, j = 0, False, i
            while j < len(lines):
                for ch in lines[j]:
                    if ch == "{":
                        depth += 1
                        started = True
                    elif ch == "}":
                        depth -= 1
                    elif ch == ";" and not started and depth == 0:
                        started, depth = True, 0
                if started and depth <= 0:
                    break
                j += 1
            res.append((j - i + 1, os.path.relpath(p, ROOT), m.group(1)))
            i += 1
    return sorted(res, reverse=True)


TAG = re.compile(r"b'[A-Za-z123]'")
SQLSTATE = re.compile(r'"([0-9][0-9A-Z]{4})"')


def literals(files):
    tags, states = defaultdict(int), defaultdict(int)
    for p in files:
        if is_testbed(p):
            continue
        text = strip_tests(texts[p])
        rel = os.path.relpath(p, ROOT)
        text = re.sub(r"#\[doc[^\]]*\]|///[^\n]*", "", text)
        tags[rel] += len(TAG.findall(text))
        for code in SQLSTATE.findall(text):
            if re.search(r"[A-Z]", code) or code[:2] in ("08", "22", "23", "25", "26", "28", "42", "53", "54", "55", "57", "58", "0A", "XX", "40", "3D", "3F"):
                states[rel] += 1
    return {k: v for k, v in tags.items() if v}, {k: v for k, v in states.items() if v}


def main():
    files = load()
    mods, graph = imports(files)
    top = top_graph(graph)
    top_nodes = {m[0] for m in mods if m}
    top_cycles = sccs(top_nodes, top)
    file_cycles = sccs(mods, graph)
    loose = sorted(os.path.basename(p) for p in files if os.path.dirname(p) == SRC and os.path.basename(p) not in ("lib.rs", "main.rs"))
    folders = sorted(d for d in os.listdir(SRC) if os.path.isdir(os.path.join(SRC, d)))
    funcs = functions(files)
    tags, states = literals(files)
    tests_dir = os.path.join(ROOT, "tests")
    binaries = [n for n in os.listdir(tests_dir) if n.endswith(".rs")] + [
        n for n in os.listdir(tests_dir) if os.path.isfile(os.path.join(tests_dir, n, "main.rs"))
    ]

    print("| measure | value |\n|---|---|")
    print(f"| source files in src/ (unit-test files left out) | {len(files)} |")
    print(f"| loose files in src/ (besides lib.rs, main.rs) | {len(loose)} |")
    print(f"| folders in src/ | {len(folders)} |")
    print(f"| import cycles between top-level modules | {len(top_cycles)} ({', '.join(str(len(c)) + ' modules' for c in top_cycles) or 'none'}) |")
    print(f"| import cycles between files | {len(file_cycles)} ({', '.join(str(len(c)) + ' files' for c in file_cycles) or 'none'}) |")
    print(f"| functions over 80 lines | {sum(1 for f in funcs if f[0] > 80)} |")
    print(f"| raw tag literals (b'X') outside crates/wire | {sum(tags.values())} |")
    print(f"| SQLSTATE string literals outside crates/wire | {sum(states.values())} in {len(states)} files |")
    print(f"| integration-test binaries (tests/) | {len(binaries)} |")
    print()
    for c in top_cycles:
        print("cycle between top-level modules:", " ".join(c))
    for c in file_cycles:
        print("cycle between files:", " ".join("::".join(m) or "crate" for m in c))
    print("\n| longest functions | lines |\n|---|---|")
    for n, path, name in funcs[:12]:
        print(f"| {path}::{name} | {n} |")
    if tags:
        print("\nraw tag literals:", ", ".join(f"{k} {v}" for k, v in sorted(tags.items(), key=lambda kv: -kv[1])))
    if states:
        print("SQLSTATE literals:", ", ".join(f"{k} {v}" for k, v in sorted(states.items(), key=lambda kv: -kv[1])))
    if "--check" in sys.argv and top_cycles:
        sys.exit(1)


if __name__ == "__main__":
    main()
