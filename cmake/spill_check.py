#!/usr/bin/env python3
"""Compiler launcher for the CUDA kernel sources: runs the compile (with
ptxas' resource report, -Xptxas=-v), keeps that report out of the build log and
compares every register spill in it against the documented list (docs/spills.md).

    spill_check.py --list docs/spills.md --mode error|warn -- <launcher...> nvcc <args...>

The build log stays quiet while each spill is documented. A spill that is not
(a new kernel instance, a new target, or more bytes than documented) is printed
with the table row to add, and in mode `error` fails the compile. A documented
spill that no longer happens is pointed out (without failing). Everything else
the compiler prints (errors, other warnings) passes through unchanged. Under
ccache a cached compile replays the same report, so the check also runs on hits.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

ENTRY = re.compile(r"^ptxas info\s*: Compiling entry function '([^']+)' for '([^']+)'")
PROPS = re.compile(r"^ptxas info\s*: Function properties for (\S+)")
SPILL = re.compile(r"^\s*(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
INFO = re.compile(r"^ptxas info\s*:")
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|([^|]*)\|\s*(\d+)\s*/\s*(\d+)\s*\|")


def canonical(names: list[str]) -> dict[str, str]:
    """Mangled name -> short readable name: namespaces vflash:: and the
    parameter list dropped, element types and bools spelled short."""
    out = {n: n for n in names}
    tool = shutil.which("c++filt")
    if names and tool:
        done = subprocess.run([tool], input="\n".join(names) + "\n", capture_output=True, text=True)
        if done.returncode == 0:
            for mangled, text in zip(names, done.stdout.splitlines()):
                out[mangled] = text
    for key, text in out.items():
        text = re.sub(r"^void ", "", text)
        depth, cut = 0, len(text)
        for i, c in enumerate(text):  # drop the trailing (parameters)
            if c == "<":
                depth += 1
            elif c == ">":
                depth -= 1
            elif c == "(" and depth == 0:
                cut = i
                break
        text = text[:cut].replace("vflash::", "")
        text = text.replace("__nv_bfloat16", "bf16").replace("__half", "fp16")
        out[key] = text
    return out


def load_list(path: str) -> dict[str, dict[str, tuple[int, int]]]:
    """docs/spills.md rows: | `instance` | targets | stores/loads | why |."""
    allowed: dict[str, dict[str, tuple[int, int]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = ROW.match(line)
            if m:
                per_target = allowed.setdefault(m.group(1).strip(), {})
                for target in m.group(2).split():
                    per_target[target] = (int(m.group(3)), int(m.group(4)))
    return allowed


def parse(report: str):
    """Split ptxas' -v report off the compiler's stderr: (other lines,
    compiled {(function, target)}, spills {(function, target): (stores, loads)})."""
    other, compiled, spills = [], set(), {}
    function = target = None
    for line in report.splitlines(keepends=True):
        m = ENTRY.match(line)
        if m:
            function, target = m.group(1), m.group(2)
            compiled.add((function, target))
            continue
        m = PROPS.match(line)
        if m:
            function = m.group(1)
            continue
        m = SPILL.match(line)
        if m and function is not None:
            stores, loads = int(m.group(2)), int(m.group(3))
            if stores or loads:
                spills[(function, target)] = (stores, loads)
            continue
        if INFO.match(line):
            continue
        other.append(line)
    return "".join(other), compiled, spills


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: spill_check.py --list FILE --mode error|warn -- command...", file=sys.stderr)
        return 2
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1:]
    list_path = opts[opts.index("--list") + 1]
    mode = opts[opts.index("--mode") + 1] if "--mode" in opts else "error"

    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    sys.stdout.write(done.stdout)
    stderr, compiled, spills = parse(done.stderr)
    sys.stderr.write(stderr)
    if done.returncode != 0:
        return done.returncode

    allowed = load_list(list_path)
    names = canonical(sorted({f for f, _ in compiled} | {f for f, _ in spills}))
    source = next((a for a in reversed(command) if a.endswith(".cu")), "?")
    new = []
    for (function, target), (stores, loads) in sorted(spills.items()):
        name = names[function]
        limit = allowed.get(name, {}).get(target)
        if limit is None or stores > limit[0] or loads > limit[1]:
            have = f"documented {limit[0]}/{limit[1]}" if limit else "not documented"
            new.append(f"  | `{name}` | {target} | {stores} / {loads} | (why) |   <- {have}")
    gone = [f"  {names[f]} on {t}" for f, t in sorted(compiled)
            if t in allowed.get(names[f], {}) and (f, t) not in spills]
    if new:
        print(f"vflash: register spills not in {list_path} ({source}); a spill costs local-memory "
              "traffic in the kernel: remove it, or add a row saying why it is by design:\n"
              + "\n".join(new), file=sys.stderr)
    if gone:
        print(f"vflash: documented spills that no longer happen ({source}); drop their rows from "
              f"{list_path}:\n" + "\n".join(gone), file=sys.stderr)
    return 1 if new and mode == "error" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
