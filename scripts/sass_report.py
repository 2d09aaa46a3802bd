#!/usr/bin/env python3
"""Static SASS report of the Hopper kernel's key-block loop (no GPU needed).

For every sm_90a instance of the Hopper kernel (src/kernels/hopper/inst_*.cu,
each compiled here into a cubin, cached) and every kernel variant found in the
cubin (the template arguments of fwd_kernel after Config, read from the mangled
symbol names and named after the template's own parameters in fwd_kernel.cuh),
it prints one row per steady-state key-block loop of the consumer: instructions
per key per warp, where the P*V wait sits relative to the softmax, spills,
registers and a few counters. See docs/sass.md for the columns.

How the loop is found (checked by hand on d128/dv128 bf16, unmasked):
  1. The SASS of each kernel (cuobjdump -sass) is cut into basic blocks at
     branch targets and after BRA/EXIT/RET; edges are the taken target and,
     for a predicated branch (@P, a predicate operand, .DIV/.ANY/.ALL), the
     fall-through. Dominators are computed from the entry block.
  2. A back edge is an edge u -> h where h dominates u; its natural loop is h
     plus every block that reaches u without passing h. Back edges sharing a
     header are one loop. This rejects the out-of-line mbarrier retry stubs
     (`@!P0 BRA stub` ... stub: `BRA back`): they jump backwards but their
     target does not dominate them.
  3. The key-block loops are the innermost loops whose body holds HGMMA: the
     persistent tile loop also holds HGMMA (the first block's QK^T and the
     last block's P*V sit outside the key loop) but it contains the key loop,
     so it is not innermost. Every innermost HGMMA loop is reported (a kernel
     with separate masked and mask-free loops gets one row per loop).
  4. QK^T and P*V are told apart by their accumulators: an accumulator that an
     HGMMA in the loop zero-initialises (`..., RZ, !UPT`) is S = Q K^T (fresh
     each block); the others accumulate O (P*V, normally with A = P in
     registers). kBlockN is the N of the zero-initialising HGMMA
     (HGMMA.64x176x16 -> 176 keys); keys per iteration sum over such chains.
  5. One iteration's instructions are counted along a path from the header to
     the loop's bottom latch (the back edge at the highest address), using
     only blocks laid out between the two (the cold retry stubs sit after the
     kernel's EXIT) and only forward edges (inner spin loops count once). The
     shortest such path is the steady state (no mask, no softcap, no O
     rescale where those are branches); the longest is the worst block (mask
     and every optional step taken). Both are divided by the keys per
     iteration. The counters (HGMMA, MUFU.EX2, FMNMX, R2UR, uniform ops, BRA,
     LDL/STL) are those of the shortest path; `body` is every instruction laid
     out in the loop.
  6. The P*V wait: walking the shortest path twice (the wait may sit in the
     next iteration), each HGMMA carrying `gsb0` closes a wgmma group (QK^T or
     P*V by the rule of 4) and `WARPGROUP.DEPBAR.LE gsb0, k` retires groups
     until k are pending. The DEPBAR that retires the P*V group is its wait;
     the MUFU.EX2 / FMNMX instructions between the P*V issue and that wait run
     under P*V ("ex2 16/128" = 16 of the iteration's 128 exps overlap P*V).

  d128 bf16 unmasked, read by hand (the tree this was written on): the loop is
  0xa8c0..0x119a0, 1807 instructions laid out; header 0xa8c0 is the K-full
  mbarrier try-wait (its spin `@!P0 BRA 0xa8c0` is a second back edge to the
  same header), then WARPGROUP.ARRIVE, 8 x HGMMA.64x128x16 R88 <- gdesc x gdesc
  (first one `RZ, !UPT`: S), the V-full try-wait, 8 x HGMMA.64x128x16 R24 <-
  R152.. x gdesc.tnspB (P*V into O), `WARPGROUP.DEPBAR.LE gsb0, 0x1` (S ready),
  `@!P2 BRA` around the softcap arm (1090 instructions, tanhf as EX2+RCP),
  `@!P1 BRA P0` around the mask arm (163), one FMNMX, then
  `WARPGROUP.DEPBAR.LE gsb0, 0x0` (P*V done) at 0x104d0, and only after it the
  row max, the 66 exps, the sums, the P packing and `@P0 BRA 0xa8c0`: the
  report's 554 instructions / 128 keys = 4.33, under PV "0/66 1/76". The same
  read of FA3's d128 loop (128x176): QK^T, P*V, DEPBAR.LE 1, the row max and
  19 exps, DEPBAR.LE 0, the other exps: "19/90 90/92", 3.29 per key.

Without a GPU; tools: nvcc (CUDA 12.3+ for sm_90a), cuobjdump and nvdisasm
(the toolkit's, or the pip packages nvidia-cuda-cuobjdump / -nvdisasm in the
project's .venv). c++filt (binutils) names the variants. Python stdlib only.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

REPO = pathlib.Path(__file__).resolve().parent.parent
HOPPER_DIR = pathlib.Path("src/kernels/hopper")
CACHE = pathlib.Path(os.environ.get("VFLASH_SASS_CACHE", pathlib.Path.home() / ".cache" / "vflash-sass"))
# The project's compile line for the Hopper objects (CMakeLists.txt: Release
# flags, VFLASH_CUDA_FLAGS, -std=c++20, the sm_90a target), plus -cubin and -v.
NVCC_FLAGS = ["-O3", "-DNDEBUG", "-std=c++20", "-gencode", "arch=compute_90a,code=sm_90a", "-cubin",
              "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-warn-spills", "-Xptxas", "-v"]


# ----------------------------------------------------------------- tools
def find_tool(name):
    """A CUDA tool from PATH, CUDA_HOME, /usr/local/cuda or the pip wheels in .venv."""
    found = shutil.which(name)
    if found:
        return found
    cands = []
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            cands.append(pathlib.Path(os.environ[env]) / "bin" / name)
    cands.append(pathlib.Path("/usr/local/cuda/bin") / name)
    for venv in (REPO / ".venv", pathlib.Path(sys.prefix)):
        cands += sorted(venv.glob(f"lib/python3*/site-packages/nvidia/cu*/bin/{name}"))
        cands += sorted(venv.glob(f"lib/python3*/site-packages/nvidia/cuda_*/bin/{name}"))
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


class Tools:
    def __init__(self, need_nvcc):
        self.nvcc = find_tool("nvcc")
        self.cuobjdump = find_tool("cuobjdump")
        self.nvdisasm = find_tool("nvdisasm")
        self.cxxfilt = shutil.which("c++filt")
        missing = [n for n, p in (("cuobjdump", self.cuobjdump), ("nvdisasm", self.nvdisasm)) if not p]
        if need_nvcc and not self.nvcc:
            missing.insert(0, "nvcc")
        if missing:
            sys.exit("sass_report: missing " + ", ".join(missing) +
                     " (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm into .venv, or put the CUDA "
                     "toolkit's bin on PATH)")
        self.env = dict(os.environ)
        # cuobjdump -sass runs nvdisasm: tell it where ours is.
        self.env["NVDISASM_PATH"] = str(pathlib.Path(self.nvdisasm).parent)
        self.env["PATH"] = str(pathlib.Path(self.nvdisasm).parent) + os.pathsep + self.env.get("PATH", "")

    def run(self, args, **kw):
        return subprocess.run(args, env=self.env, capture_output=True, text=True, **kw)

    def nvcc_version(self):
        return self.run([self.nvcc, "--version"]).stdout.strip()

    def demangle(self, names):
        if not self.cxxfilt or not names:
            return {n: n for n in names}
        out = subprocess.run([self.cxxfilt], input="\n".join(names) + "\n", capture_output=True, text=True).stdout
        lines = out.splitlines()
        if len(lines) != len(names):
            return {n: n for n in names}
        return dict(zip(names, lines))


# ----------------------------------------------------------- compilation
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def include_closure(path, include_dirs):
    """The file and every quoted include it reaches (resolved like the compiler)."""
    seen, stack = {}, [path]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        text = p.read_bytes()
        seen[p] = text
        for inc in INCLUDE_RE.findall(text.decode(errors="replace")):
            for d in [p.parent] + include_dirs:
                q = (d / inc).resolve()
                if q.is_file():
                    stack.append(q)
                    break
    return seen


def source_key(src, include_dirs, nvcc_version):
    h = hashlib.sha256()
    h.update(nvcc_version.encode())
    h.update(" ".join(NVCC_FLAGS).encode())
    closure = include_closure(src, include_dirs)
    for p in sorted(closure, key=lambda q: q.name + str(q)):
        h.update(p.name.encode())
        h.update(closure[p])
    return h.hexdigest()[:20]


def compile_instances(tools, src_root, filt, jobs, verbose):
    """Compiles src/kernels/hopper/inst_*.cu to cached cubins; returns [(stem, cubin, ptxas_text)]."""
    hopper = src_root / HOPPER_DIR
    sources = sorted(hopper.glob("inst_*.cu"))
    if not sources:
        sys.exit(f"sass_report: no inst_*.cu under {hopper}")
    stems = [s.stem[len("inst_"):] for s in sources]
    if filt is not None and any(filt.search(s) for s in stems):
        sources = [s for s, st in zip(sources, stems) if filt.search(st)]
    include_dirs = [src_root / "src"]
    version = tools.nvcc_version()
    CACHE.mkdir(parents=True, exist_ok=True)
    work = []
    for s in sources:
        key = source_key(s, include_dirs, version)
        stem = s.stem[len("inst_"):]
        work.append((s, stem, CACHE / f"{stem}-{key}.cubin", CACHE / f"{stem}-{key}.ptxas"))

    def build(item):
        s, stem, cubin, log = item
        if cubin.is_file() and log.is_file():
            return stem, "cached"
        tmp = cubin.with_suffix(f".tmp{os.getpid()}")
        cmd = ["nice", "-n", "10", tools.nvcc, *NVCC_FLAGS, "-I", str(src_root / "src"), "-o", str(tmp), str(s)]
        r = tools.run(cmd)
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"nvcc failed on {s}:\n{r.stderr[-4000:]}")
        log.write_text(r.stdout + r.stderr)
        os.replace(tmp, cubin)
        return stem, "compiled"

    todo = [w for w in work if not (w[2].is_file() and w[3].is_file())]
    if todo and verbose:
        print(f"sass_report: compiling {len(todo)} of {len(work)} instances ({jobs} at a time, "
              f"cache {CACHE})", file=sys.stderr)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for stem, how in pool.map(build, work):
            if how == "compiled" and verbose:
                print(f"  compiled {stem}", file=sys.stderr)
    return [(stem, cubin, log.read_text()) for _, stem, cubin, log in work]


def parse_ptxas(text):
    """ptxas -v: {mangled: {regs, stack, spill_stores, spill_loads}}."""
    info, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            cur = info.setdefault(m.group(1), {})
            continue
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            cur = info.setdefault(m.group(1), {})
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            cur.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
    return info


# ------------------------------------------------------------- SASS text
INS_RE = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s*(.*?)\s*;")
FUNC_RE = re.compile(r"^\s*Function\s*:\s*(\S+)")


def dump_sass(tools, path, functions=None, arch="sm_90a"):
    """cuobjdump -sass of one file: {mangled: [instruction text]} (only sm_90a code)."""
    args = [tools.cuobjdump, "-sass", "-arch", arch]
    if functions:
        args += ["-fun", ",".join(functions)]
    r = tools.run(args + [str(path)])
    if r.returncode != 0 and not r.stdout:
        raise RuntimeError(f"cuobjdump failed on {path}: {r.stderr[-2000:]}")
    funcs, cur = {}, None
    for line in r.stdout.splitlines():
        m = FUNC_RE.match(line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        if cur is not None:
            m = INS_RE.match(line)
            if m:
                cur.append((int(m.group(1), 16), m.group(2)))
    return funcs


def res_usage(tools, path):
    """cuobjdump -res-usage: {mangled: {REG, STACK, ...}}."""
    r = tools.run([tools.cuobjdump, "-res-usage", "-arch", "sm_90a", str(path)])
    out, cur = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"\s*Function (\S+?):?\s*$", line)
        if m:
            cur = m.group(1)
            continue
        if cur and "REG:" in line:
            out[cur] = {k: int(v) for k, v in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)}
            cur = None
    return out


class Ins:
    __slots__ = ("addr", "text", "guard", "op", "base", "ops")

    def __init__(self, addr, text):
        self.addr = addr
        self.text = text
        guard = None
        if text.startswith("@"):
            guard, _, text = text.partition(" ")
            guard = guard[1:]
        self.guard = guard
        self.op, _, self.ops = text.strip().partition(" ")
        self.base = self.op.split(".")[0]


def branch_info(ins):
    """(target or None, conditional, terminator) of a control-flow instruction, else None."""
    b = ins.base
    guarded = ins.guard not in (None, "PT")
    if b in ("BRA", "JMP"):
        m = re.findall(r"0x[0-9a-f]+", ins.ops)
        target = int(m[-1], 16) if m else None
        mods = set(ins.op.split(".")[1:])
        cond = guarded or bool(re.search(r"(^|[\s,])!?U?P[0-6T]\b", ins.ops)) or bool(mods & {"DIV", "ANY", "ALL"})
        return target, cond, True
    if b in ("EXIT", "RET", "BRX", "JMX", "KILL"):
        return None, guarded, True
    return None


# ---------------------------------------------------------------- the CFG
class Block:
    __slots__ = ("idx", "start", "end", "ins", "succ", "pred")

    def __init__(self, idx, ins):
        self.idx, self.ins = idx, ins
        self.start, self.end = ins[0].addr, ins[-1].addr
        self.succ, self.pred = [], []


def build_cfg(ins):
    addr_index = {i.addr: k for k, i in enumerate(ins)}
    leaders = {0}
    for k, i in enumerate(ins):
        bi = branch_info(i)
        if bi:
            if bi[0] is not None and bi[0] in addr_index:
                leaders.add(addr_index[bi[0]])
            if k + 1 < len(ins):
                leaders.add(k + 1)
    order = sorted(leaders)
    blocks = []
    for n, s in enumerate(order):
        e = order[n + 1] if n + 1 < len(order) else len(ins)
        blocks.append(Block(n, ins[s:e]))
    start_of = {b.start: b for b in blocks}
    for n, b in enumerate(blocks):
        last = b.ins[-1]
        bi = branch_info(last)
        nxt = blocks[n + 1] if n + 1 < len(blocks) else None
        if bi is None:
            if nxt:
                b.succ.append(nxt)
        else:
            target, cond, _ = bi
            if target is not None and target in start_of:
                b.succ.append(start_of[target])
            if cond and nxt:
                b.succ.append(nxt)
        for s in b.succ:
            s.pred.append(b)
    return blocks


def dominators(blocks):
    """Cooper-Harvey-Kennedy iterative dominators over the blocks reachable from the entry."""
    entry = blocks[0]
    order, seen = [], set()
    stack = [(entry, iter(entry.succ))]
    seen.add(entry.idx)
    while stack:
        b, it = stack[-1]
        for s in it:
            if s.idx not in seen:
                seen.add(s.idx)
                stack.append((s, iter(s.succ)))
                break
        else:
            order.append(b)
            stack.pop()
    rpo = list(reversed(order))
    pos = {b.idx: k for k, b in enumerate(rpo)}
    idom = {entry.idx: entry.idx}

    def intersect(a, b):
        while a != b:
            while pos[a] > pos[b]:
                a = idom[a]
            while pos[b] > pos[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for b in rpo[1:]:
            preds = [p.idx for p in b.pred if p.idx in idom]
            if not preds:
                continue
            new = preds[0]
            for p in preds[1:]:
                new = intersect(p, new)
            if idom.get(b.idx) != new:
                idom[b.idx] = new
                changed = True
    return idom


def dominates(idom, a, b):
    while True:
        if a == b:
            return True
        nb = idom.get(b)
        if nb is None or nb == b:
            return False
        b = nb


def natural_loops(blocks, idom):
    """{header idx: (body idx set, [latch idx])} for every back edge u -> h with h dom u."""
    loops = {}
    for b in blocks:
        if b.idx not in idom:
            continue
        for s in b.succ:
            if dominates(idom, s.idx, b.idx):
                body, latches = loops.setdefault(s.idx, (set([s.idx]), []))
                latches.append(b.idx)
                stack = [b]
                while stack:
                    x = stack.pop()
                    if x.idx in body:
                        continue
                    body.add(x.idx)
                    stack.extend(x.pred)
    return loops


# ------------------------------------------------------------ the metrics
HGMMA_SHAPE = re.compile(r"(\d+)x(\d+)x(\d+)")


def hgmma_parts(i):
    """(M, N, K, dest, a_from_regs, zero_init, closes_group) of an HGMMA."""
    m = HGMMA_SHAPE.search(i.op)
    ops = [o.strip() for o in i.ops.split(",")]
    dest = ops[0] if ops else ""
    a_regs = len(ops) > 1 and ops[1].startswith("R")
    acc = ops[3] if a_regs else (ops[2] if len(ops) > 2 else "")
    zero = acc.startswith("RZ") or "!UPT" in ops
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), dest, a_regs, zero, "gsb0" in i.ops)


def count(seq, pred):
    return sum(1 for i in seq if pred(i))


def is_ex2(i):
    return i.base == "MUFU" and ".EX2" in i.op


def is_uniform(i):
    return i.base.startswith("U") and i.base not in ("UTMALDG", "UTMASTG", "UBLKCP")


def best_paths(blocks, body, header, latch):
    """Shortest and longest header -> latch paths (block lists) over forward edges
    between the two in the layout; None where the latch cannot be reached that way."""
    lo, hi = blocks[header].start, blocks[latch].end
    region = sorted(k for k in body if lo <= blocks[k].start <= hi)
    inreg = set(region)
    INF = float("inf")
    best = {header: (len(blocks[header].ins), [header])}
    worst = {header: (len(blocks[header].ins), [header])}
    for k in region:
        if k not in best:
            continue
        for s in blocks[k].succ:
            if s.idx not in inreg or s.start <= blocks[k].start:
                continue
            n = len(s.ins)
            c = best[k][0] + n
            if c < best.get(s.idx, (INF,))[0]:
                best[s.idx] = (c, best[k][1] + [s.idx])
            c = worst[k][0] + n
            if c > worst.get(s.idx, (-1,))[0]:
                worst[s.idx] = (c, worst[k][1] + [s.idx])
    if latch not in best:
        return None, None
    return best[latch][1], worst[latch][1]


def detours(blocks, body, header, latch, short):
    """The optional arms of one iteration: for each block off the shortest path,
    the fewest instructions a path through it adds; one entry per distinct arm
    (blocks whose cheapest detour is the same path), largest first, each with a
    tag from its content: t = MUFU.TANH or EX2 with RCP (tanh: softcap), m = selects of -INF (mask),
    r = FMUL without MUFU (O rescale), ? = other."""
    lo, hi = blocks[header].start, blocks[latch].end
    region = sorted(k for k in body if lo <= blocks[k].start <= hi)
    inreg = set(region)
    fwd = {k: [s.idx for s in blocks[k].succ if s.idx in inreg and s.start > blocks[k].start] for k in region}
    INF = float("inf")
    # cheapest header -> k (inclusive) and k -> latch (exclusive of k), with the paths
    to = {header: (len(blocks[header].ins), (header,))}
    for k in region:
        if k in to:
            for s in fwd[k]:
                c = to[k][0] + len(blocks[s].ins)
                if c < to.get(s, (INF,))[0]:
                    to[s] = (c, to[k][1] + (s,))
    frm = {latch: (0, ())}
    for k in reversed(region):
        for s in fwd[k]:
            if s in frm:
                c = frm[s][0] + len(blocks[s].ins)
                if c < frm.get(k, (INF,))[0]:
                    frm[k] = (c, (s,) + frm[s][1])
    if latch not in to:
        return []
    base = to[latch][0]
    on = set(short)
    arms = {}
    for k in region:
        if k in on or k not in to or k not in frm:
            continue
        extra = to[k][0] + frm[k][0] - base
        path = tuple(x for x in to[k][1] + frm[k][1] if x not in on)
        arms[path] = extra
    out = []
    for path, extra in arms.items():
        ins = [i for k in path for i in blocks[k].ins]
        mufu = {i.op.split(".")[1] for i in ins if i.base == "MUFU" and "." in i.op}
        if "TANH" in mufu or {"EX2", "RCP"} <= mufu:  # tanh, or tanhf's exp/reciprocal form
            tag = "t"
        elif any(i.base == "SYNCS" and "PHASECHK" in i.op for i in ins):
            tag = "w"
        elif any(i.base == "FSEL" and "-INF" in i.ops for i in ins):
            tag = "m"
        elif any(i.base == "FMUL" for i in ins) and not any(i.base == "MUFU" for i in ins):
            tag = "r"
        else:
            tag = "?"
        out.append((extra, tag))
    return sorted(set(out), reverse=True)


def pv_wait(path_ins, qk_dests):
    """Where P*V of one iteration is waited for, on the path walked twice.
    Returns dict or None (no P*V group found)."""
    seq = list(path_ins) + list(path_ins)
    n = len(path_ins)
    pending = []  # [(kind, closing position)]
    group = set()
    pv_issue = None
    for pos, i in enumerate(seq):
        if i.base == "HGMMA":
            parts = hgmma_parts(i)
            group.add("qk" if parts[3] in qk_dests else "pv")
            if parts[6]:
                kind = "pv" if "pv" in group else "qk"
                pending.append((kind, pos))
                if kind == "pv" and pv_issue is None and pos < n:
                    pv_issue = pos
                group = set()
        elif i.base == "WARPGROUP" and "DEPBAR" in i.op:
            m = re.search(r"0x([0-9a-f]+)", i.ops)
            keep = int(m.group(1), 16) if m else 0
            while len(pending) > keep:
                kind, at = pending.pop(0)
                if kind == "pv" and at == pv_issue:
                    under = seq[pv_issue + 1:pos]
                    return {"issue": seq[pv_issue].addr, "wait": i.addr, "wait_text": i.text,
                            "next_iteration": pos >= n, "under_total": len(under),
                            "under_ex2": count(under, is_ex2), "under_fmnmx": count(under, lambda x: x.base == "FMNMX")}
    if pv_issue is None:
        return None
    return {"issue": seq[pv_issue].addr, "wait": None, "wait_text": "", "next_iteration": False,
            "under_total": None, "under_ex2": None, "under_fmnmx": None}


def analyse_function(raw):
    ins = [Ins(a, t) for a, t in raw]
    res = {"instructions": len(ins),
           "ldl": count(ins, lambda i: i.base == "LDL"), "stl": count(ins, lambda i: i.base == "STL"),
           "hgmma": count(ins, lambda i: i.base == "HGMMA"),
           "setmaxnreg": [(("dealloc" if "DEALLOC" in i.op else "alloc"),
                           int(re.findall(r"0x[0-9a-f]+", i.ops)[-1], 16))
                          for i in ins if i.base == "USETMAXREG" and re.findall(r"0x[0-9a-f]+", i.ops)],
           "loops": []}
    if not ins:
        return res
    blocks = build_cfg(ins)
    idom = dominators(blocks)
    loops = natural_loops(blocks, idom)
    has_hgmma = {h: any(i.base == "HGMMA" for k in body for i in blocks[k].ins) for h, (body, _) in loops.items()}
    hg = [h for h in loops if has_hgmma[h]]
    inner = [h for h in hg if not any(o != h and loops[o][0] < loops[h][0] for o in hg)]
    for h in sorted(inner, key=lambda k: blocks[k].start):
        body, latches = loops[h]
        latch = max(latches, key=lambda k: blocks[k].start)
        short, long_ = best_paths(blocks, body, h, latch)
        exact = short is not None
        if not exact:  # odd layout: take the loop as laid out
            short = long_ = sorted(body)
        path = [i for k in short for i in blocks[k].ins]
        worst = [i for k in long_ for i in blocks[k].ins]
        laid = [i for k in body if blocks[h].start <= blocks[k].start <= blocks[latch].end for i in blocks[k].ins]
        hgm = [i for i in path if i.base == "HGMMA"]
        parts = [hgmma_parts(i) for i in hgm]
        qk_dests = {p[3] for p in parts if p[5]}
        qk = [p for p in parts if p[3] in qk_dests]
        pv = [p for p in parts if p[3] not in qk_dests]
        keys = sum(p[1] for p in parts if p[5])
        if not keys and pv:  # no zero-initialised accumulator (no QK^T here): P*V's K steps
            keys = sum(p[2] for p in pv)
        loop = {
            "header": blocks[h].start, "latch": blocks[latch].end, "exact_path": exact,
            "body": len(laid), "path": len(path), "path_max": len(worst), "keys": keys,
            "block_n": sorted({p[1] for p in parts if p[5]}),
            "qk_shape": sorted({f"{p[0]}x{p[1]}x{p[2]}" for p in qk}),
            "pv_shape": sorted({f"{p[0]}x{p[1]}x{p[2]}" for p in pv}),
            "pv_a_regs": all(p[4] for p in pv) if pv else None,
            "hgmma_qk": len(qk), "hgmma_pv": len(pv),
            "ex2": count(path, is_ex2), "fmnmx": count(path, lambda i: i.base == "FMNMX"),
            "ffma_fmul_fadd": count(path, lambda i: i.base in ("FFMA", "FMUL", "FADD", "FFMA2", "FMUL2", "FADD2")),
            "f2fp": count(path, lambda i: i.base == "F2FP"),
            "shfl": count(path, lambda i: i.base == "SHFL"),
            "r2ur": count(path, lambda i: i.base == "R2UR"),
            "uiadd3": count(path, lambda i: i.base == "UIADD3"),
            "uniform": count(path, is_uniform),
            "bra": count(path, lambda i: branch_info(i) is not None),
            "bra_body": count(laid, lambda i: branch_info(i) is not None),
            "ex2_max": count(worst, is_ex2),
            "ldl_stl": count(path, lambda i: i.base in ("LDL", "STL")),
            "ldl_stl_body": count(laid, lambda i: i.base in ("LDL", "STL")),
            "syncs": count(path, lambda i: i.base in ("SYNCS", "BAR")),
            "nop": count(path, lambda i: i.base == "NOP"),
        }
        loop["per_key"] = round(loop["path"] / keys, 3) if keys else None
        loop["per_key_max"] = round(loop["path_max"] / keys, 3) if keys else None
        loop["pv_wait"] = pv_wait(path, qk_dests)
        loop["arms"] = [f"{t}{n}" for n, t in detours(blocks, body, h, latch, short)] if exact else []
        res["loops"].append(loop)
    return res


# ------------------------------------------------------------- the names
def split_args(s):
    """Top-level comma split of a template argument list."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def template_args(demangled, name):
    """Arguments of the first `name<...>` in a demangled symbol."""
    k = demangled.find(name + "<")
    if k < 0:
        return None
    k += len(name) + 1
    depth, j = 1, k
    while j < len(demangled) and depth:
        depth += {"<": 1, ">": -1}.get(demangled[j], 0)
        j += 1
    return split_args(demangled[k:j - 1])


def template_params(text, name, kind):
    """Parameter names of `template <...> <kind> name` in source text."""
    m = re.search(r"template\s*<([^;{]*?)>\s*(?:__global__\s+)?(?:void\s+)?(?:__launch_bounds__\([^)]*\)\s*)?"
                  + kind + r"\s*" + name + r"\b", text, re.S)
    if not m:
        m = re.search(r"template\s*<([^;{]*?)>[^;{]*?\b" + name + r"\s*\(", text, re.S)
    if not m:
        return None
    return [p.split("=")[0].split()[-1] for p in split_args(m.group(1))]


def enum_values(texts):
    """{enum name: {value: enumerator}} from `enum class X : T { a = 0, b, ... }`."""
    out = {}
    for t in texts:
        for m in re.finditer(r"enum\s+(?:class|struct)?\s*(\w+)\s*(?::\s*[\w:]+)?\s*\{([^}]*)\}", t):
            vals, v = {}, -1
            for e in m.group(2).split(","):
                e = re.sub(r"//.*", "", e).strip()
                if not e:
                    continue
                if "=" in e:
                    e, _, num = e.partition("=")
                    try:
                        v = int(num.strip(), 0)
                    except ValueError:
                        v += 1
                else:
                    v += 1
                vals[v] = e.strip()
            out[m.group(1)] = vals
    return out


def short_param(name):
    n = name.rstrip("_")
    if len(n) > 1 and n[0] == "k" and n[1].isupper():
        n = n[1:]
    return n[:1].lower() + n[1:]


def literal(arg, enums):
    m = re.fullmatch(r"\(([\w:]+)\)(-?\d+)", arg)
    if m:
        enum = m.group(1).split("::")[-1]
        return enums.get(enum, {}).get(int(m.group(2)), m.group(2))
    return arg


class VflashNames:
    """Labels vflash's fwd_kernel<Config<...>, variant args...> symbols from the source's own names."""

    def __init__(self, src_root):
        texts = [p.read_text(errors="replace") for p in (src_root / "src").rglob("*") if
                 p.suffix in (".cuh", ".hpp", ".h", ".cu") and p.is_file()]
        self.enums = enum_values(texts)
        kern = (src_root / HOPPER_DIR / "fwd_kernel.cuh")
        ktext = kern.read_text(errors="replace") if kern.is_file() else ""
        cfg = src_root / HOPPER_DIR / "config.cuh"
        ctext = cfg.read_text(errors="replace") if cfg.is_file() else ""
        self.kernel_params = template_params(ktext, "fwd_kernel", "") or []
        self.config_params = template_params(ctext, "Config", "struct") or []

    def label(self, demangled):
        """(instance, variant, info dict) or None for a function that is not fwd_kernel."""
        args = template_args(demangled, "fwd_kernel")
        if args is None:
            return None
        info = {}
        cfg = template_args(args[0], "Config") or []
        names = self.config_params if len(self.config_params) == len(cfg) else [f"c{k}" for k in range(len(cfg))]
        for n, v in zip(names, cfg):
            info[short_param(n)] = literal(v, self.enums)

        def pick(*keys):
            for n, v in info.items():
                if any(k in n.lower() for k in keys):
                    return v
            return None

        d, dv, dt = pick("qkdim"), pick("vdim"), pick("dtype")
        if d is None and len(cfg) >= 2:
            d, dv = cfg[0], cfg[1]
        inst = f"d{d}_dv{dv}_{dt}" if d is not None else args[0]
        wg, bn = pick("warpgroup"), pick("blockn")
        info["tile"] = f"{int(wg) * 64}x{bn}" if wg and bn and str(wg).isdigit() else str(bn)
        rest = args[1:]
        pn = self.kernel_params[1:] if len(self.kernel_params) == len(args) else [f"t{k}" for k in range(len(rest))]
        parts = []
        for n, v in zip(pn, rest):
            v = literal(v, self.enums)
            if v == "true":
                parts.append(short_param(n))
            elif v != "false":
                parts.append(f"{short_param(n)}={v}")
        return inst, "+".join(parts) or "plain", info


FA3_FLAGS = ["causal", "local", "softcap", "varlen", "pagedkv", "appendkv", "qv", "pv_rs", "overlap", "packgqa",
             "split", "vcolmajor"]
FA3_RE = re.compile(r"CollectiveMainloopFwdSm90<(\d+), cute::tuple<cute::C<(\d+)>, cute::C<(\d+)>, cute::C<(\d+)> >, "
                    r"cute::tuple<cute::C<(\d+)>, cute::C<(\d+)>, cute::C<(\d+)> >, (\d+), cutlass::(\w+), [\w:]+, "
                    r"cutlass::arch::Sm90, ([^>]*)>")
FA3_DTYPES = {"bfloat16_t": "bf16", "half_t": "fp16", "float_e4m3_t": "e4m3", "float_e5m2_t": "e5m2"}
# Default FA3 rows: the plain 16-bit forward (with causal / local / varlen), one CTA per cluster.
FA3_DEFAULT = re.compile(r"_bf16 (?!.*(softcap|pagedkv|appendkv|qv|split|vcolmajor|packgqa)).*cl1")


def fa3_label(demangled):
    m = FA3_RE.search(demangled)
    if not m:
        return None
    g = m.groups()
    vals = [v.strip() for v in g[9].split(",")]
    names = FA3_FLAGS if len(vals) == len(FA3_FLAGS) else [f"b{k}" for k in range(len(vals))]
    flags = [n for n, v in zip(names, vals) if v == "true"]
    inst = f"d{g[6]}_dv{g[7]}_{FA3_DTYPES.get(g[8], g[8])}"
    shown = [f for f in flags if f not in ("pv_rs", "overlap")]
    variant = "+".join(shown) or "plain"
    info = {"tile": f"{g[4]}x{g[5]}", "stages": int(g[0]), "cluster": f"{g[1]}x{g[2]}", "flags": flags}
    label = f"{inst} {variant} cl{g[1]} {'pv_rs' if 'pv_rs' in flags else 'pv_smem'}"
    return inst, variant, info, label


# ------------------------------------------------------------------ rows
def rows_for(kernel, inst, variant, info, res, ptxas, resu, filt, label=None):
    label = label or f"{inst} {variant}"
    if filt is not None and not filt.search(label):
        return []
    setmax = res["setmaxnreg"]
    regs = {"launch": (ptxas or {}).get("regs", (resu or {}).get("REG")),
            "dealloc": min([v for k, v in setmax if k == "dealloc"], default=None),
            "alloc": max([v for k, v in setmax if k == "alloc"], default=None)}
    base = {"kernel": kernel, "instance": inst, "variant": variant, "label": label, "tile": info.get("tile"),
            "info": {k: v for k, v in info.items() if k != "tile"}, "regs": regs,
            "spill_stores": (ptxas or {}).get("spill_stores"), "spill_loads": (ptxas or {}).get("spill_loads"),
            "stack": (ptxas or {}).get("stack", (resu or {}).get("STACK")),
            "kernel_ldl": res["ldl"], "kernel_stl": res["stl"], "kernel_instructions": res["instructions"]}
    if not res["loops"]:
        return [dict(base, loop_index=None, loop=None)]
    return [dict(base, loop_index=k, loop=lp) for k, lp in enumerate(res["loops"])]


def fmt_row(r):
    lp = r["loop"] or {}
    regs = r["regs"]
    reg = str(regs["launch"] or "?")
    if regs["alloc"]:
        reg += f" {regs['dealloc'] or '?'}/{regs['alloc']}"
    spill = "-" if r["spill_stores"] is None else f"{r['spill_stores']}/{r['spill_loads']}"
    pvw = lp.get("pv_wait") or {}
    if not lp:
        under = "-"
    elif not pvw:
        under = "no pv"
    elif pvw.get("wait") is None:
        under = "no wait"
    else:
        under = f"{pvw['under_ex2']}/{lp['ex2']} {pvw['under_fmnmx']}/{lp['fmnmx']}"
        under += "+" if pvw["next_iteration"] else ""
    tile = r["tile"] or "?"
    if lp.get("block_n"):
        m = tile.split("x")[0] if "x" in tile else "?"
        tile = f"{m}x{'/'.join(map(str, lp['block_n']))}"
    f = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    return [r["instance"], r["variant"], tile, reg, spill, f"{r['kernel_ldl']}/{r['kernel_stl']}",
            "-" if r["loop_index"] is None else f"{r['loop_index']}@{lp['header']:x}",
            f(lp.get("keys")), f(lp.get("per_key")), f(lp.get("per_key_max")),
            " ".join(lp.get("arms") or []) or "-" if lp else "-", f(lp.get("body")),
            f"{lp['hgmma_qk']}+{lp['hgmma_pv']}" if lp else "-", f(lp.get("ex2")), f(lp.get("fmnmx")), under,
            f(lp.get("r2ur")), f(lp.get("uniform")), f"{lp['bra']}/{lp['bra_body']}" if lp else "-",
            f"{lp['ldl_stl']}/{lp['ldl_stl_body']}" if lp else "-"]


HEAD = ["instance", "variant", "MxN", "regs", "spill", "ldl/stl", "loop", "keys", "i/key", "i/key max", "arms",
        "body", "hgmma", "ex2", "fmnmx", "under PV", "r2ur", "uops", "bra", "lmem"]


def print_table(title, rows, out=sys.stdout):
    if not rows:
        print(f"{title}: no rows", file=out)
        return
    cells = [HEAD] + [fmt_row(r) for r in rows]
    w = [max(len(c[k]) for c in cells) for k in range(len(HEAD))]
    print(title, file=out)
    for n, c in enumerate(cells):
        print("  ".join(x.ljust(w[k]) if k < 2 else x.rjust(w[k]) for k, x in enumerate(c)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w[k] for k in range(len(HEAD))), file=out)


COMPARE_FIELDS = [("per_key", "i/key"), ("per_key_max", "i/key max"), ("body", "body"), ("ex2", "ex2"),
                  ("r2ur", "r2ur"), ("uniform", "uops"), ("bra", "bra"), ("ldl_stl", "lmem")]


def row_key(r):
    return f"{r.get('source', '')}|{r['label']}|{r['loop_index']}"


def compare(old_rows, new_rows, out=sys.stdout):
    old = {row_key(r): r for r in old_rows}
    new = {row_key(r): r for r in new_rows}
    lines = []
    for k in list(new) + [k for k in old if k not in new]:
        a, b = old.get(k), new.get(k)
        if a is None or b is None:
            lines.append((k, "added" if a is None else "removed"))
            continue
        diffs = []
        la, lb = a.get("loop") or {}, b.get("loop") or {}
        for f, name in COMPARE_FIELDS:
            va, vb = la.get(f), lb.get(f)
            if va != vb:
                num = isinstance(va, (int, float)) and isinstance(vb, (int, float))
                ints = isinstance(va, int) and isinstance(vb, int)
                d = (f"{vb - va:+d}" if ints else f"{vb - va:+.2f}") if num else ""
                diffs.append(f"{name} {va}->{vb} ({d})" if d else f"{name} {va}->{vb}")
        wa, wb = la.get("pv_wait") or {}, lb.get("pv_wait") or {}
        if (wa.get("under_ex2"), wa.get("under_fmnmx")) != (wb.get("under_ex2"), wb.get("under_fmnmx")):
            diffs.append(f"under PV ex2 {wa.get('under_ex2')}->{wb.get('under_ex2')}, "
                         f"fmnmx {wa.get('under_fmnmx')}->{wb.get('under_fmnmx')}")
        for f in ("spill_stores", "spill_loads", "kernel_ldl", "kernel_stl"):
            if a.get(f) != b.get(f):
                diffs.append(f"{f} {a.get(f)}->{b.get(f)}")
        if (a.get("regs") or {}) != (b.get("regs") or {}):
            diffs.append(f"regs {a.get('regs')}->{b.get('regs')}")
        if diffs:
            lines.append((k, "; ".join(diffs)))
    print(f"compare: {len(lines)} of {len(new)} rows differ", file=out)
    for k, d in lines:
        src, label, loop = k.split("|")
        print(f"  {(src + ' ' if src else '')}{label} loop {loop}: {d}", file=out)


# ------------------------------------------------------------------ main
def vflash_rows(tools, args, filt, src_root):
    names = VflashNames(src_root)
    rows = []
    if args.lib:
        inputs = [(pathlib.Path(p).name, pathlib.Path(p), None) for p in args.lib]
    else:
        inputs = compile_instances(tools, src_root, filt, args.jobs, not args.quiet)
    for stem, path, ptxas_text in inputs:
        resu = res_usage(tools, path)
        if ptxas_text is not None:  # a cubin compiled here: its whole SASS, cached beside it
            sass_cache = path.with_suffix(".sass.json")
            if sass_cache.is_file():
                funcs = json.loads(sass_cache.read_text())
            else:
                funcs = dump_sass(tools, path)
                sass_cache.write_text(json.dumps(funcs))
            dem = tools.demangle(list(funcs))
        else:  # a built file: pick the fwd_kernel symbols first, disassemble only those
            dem = tools.demangle(list(resu))
            wanted = []
            for m in resu:
                lab = names.label(dem[m])
                if lab and (filt is None or filt.search(f"{lab[0]} {lab[1]}")):
                    wanted.append(m)
            funcs = {}
            for k in range(0, len(wanted), 16):
                funcs.update(dump_sass(tools, path, wanted[k:k + 16]))
        ptx = parse_ptxas(ptxas_text or "")
        for mangled in sorted(funcs):
            lab = names.label(dem.get(mangled, mangled))
            if lab is None:
                continue
            res = analyse_function(funcs[mangled])
            if not res["hgmma"]:
                continue
            inst, variant, info = lab
            rows += rows_for(mangled, inst, variant, info, res, ptx.get(mangled), resu.get(mangled), filt)
    rows.sort(key=lambda r: (sort_key(r["instance"]), r["variant"], r["loop_index"] or 0))
    return rows


def sort_key(inst):
    nums = [int(x) for x in re.findall(r"\d+", inst)]
    return nums, inst


def fa3_so(path):
    """The .so inside a wheel (extracted once to the cache), or the path itself."""
    p = pathlib.Path(path)
    if p.suffix != ".whl":
        return p
    h = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    dest = CACHE / f"fa3-{h}"
    with zipfile.ZipFile(p) as z:
        sos = [n for n in z.namelist() if n.endswith(".so")]
        if not sos:
            sys.exit(f"sass_report: no .so in {p}")
        out = dest / sos[0]
        if not out.is_file():
            z.extract(sos[0], dest)
    return out


def fa3_rows(tools, args, filt):
    so = fa3_so(args.fa3)
    resu = res_usage(tools, so)
    names = [n for n in resu if "FlashAttnFwdSm90" in n]
    dem = tools.demangle(names)
    ffilt = re.compile(args.fa3_filter) if args.fa3_filter else FA3_DEFAULT
    chosen = {}
    for n in names:
        lab = fa3_label(dem[n])
        if lab is None:
            continue
        inst, variant, info, label = lab
        if not ffilt.search(label) or (filt is not None and not filt.search(label)):
            continue
        d, dv = (int(x) for x in re.findall(r"\d+", inst)[:2])
        if not args.fa3_filter and dv > d:  # the wide-V (MLA-style) kernels, unless asked for
            continue
        chosen[n] = lab
    if not chosen:
        return []
    h = hashlib.sha256((str(so.resolve()) + str(so.stat().st_size) + str(so.stat().st_mtime) +
                        "\n".join(sorted(chosen))).encode()).hexdigest()[:16]
    cache = CACHE / f"fa3-sass-{h}.json"
    if cache.is_file():
        funcs = json.loads(cache.read_text())
    else:
        if not args.quiet:
            print(f"sass_report: disassembling {len(chosen)} FA3 kernels from {so}", file=sys.stderr)
        funcs = {}
        names_sorted = sorted(chosen)
        for k in range(0, len(names_sorted), 16):
            funcs.update(dump_sass(tools, so, names_sorted[k:k + 16]))
        CACHE.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(funcs))
    rows = []
    for n, (inst, variant, info, label) in chosen.items():
        if n not in funcs:
            continue
        res = analyse_function(funcs[n])
        rows += rows_for(n, inst, variant, info, res, None, resu.get(n), None, label=label)
    for r in rows:
        r["source"] = "fa3"
        r["variant"] = r["label"].split(" ", 1)[1]
    rows.sort(key=lambda r: (sort_key(r["instance"]), r["variant"], r["loop_index"] or 0))
    return rows


def src_from_rev(rev):
    """A copy of the repository's src/ at a git revision, in a temporary directory."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vflash-sass-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], capture_output=True)
    if archive.returncode != 0:
        sys.exit(f"sass_report: git archive {rev}: {archive.stderr.decode()[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    return tmp


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + "\n\nPrints one row per key-block loop of every Hopper kernel "
        "instance and variant; see docs/sass.md for the columns and the script's header for how the loop is found.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  scripts/sass_report.py                          compile every inst_*.cu (cached) and print the table
  scripts/sass_report.py --filter d128            only instances / variants matching the regex
  scripts/sass_report.py --json new.json --compare old.json
                                                  save this run and print what changed against an older one
  scripts/sass_report.py --rev HEAD --json head.json
                                                  the committed tree instead of the working tree
  scripts/sass_report.py --lib build/libvflash.so read a built library / object / cubin instead of compiling
  scripts/sass_report.py --fa3 .whl/fa3_fwd-0.0.3-cp39-abi3-manylinux_2_24_x86_64.whl
                                                  FA3's forward kernels from the wheel beside vflash's

columns: MxN tile (N = keys per block from the QK^T HGMMA), regs = ptxas registers at launch and
setmaxnreg dealloc/alloc, spill = ptxas spill store/load bytes, ldl/stl = local loads/stores in the
kernel, loop = index@header address, keys = keys per iteration, i/key = instructions per key per warp
on the shortest header->latch path (steady state), i/key max = longest path, arms = what each
optional arm adds to the shortest path (t = tanh: softcap, w = mbarrier wait, m = -INF selects/mask,
r = rescale), body = instructions laid out in the loop, hgmma =
QK^T+PV HGMMA, ex2 / fmnmx per iteration, under PV = EX2 and FMNMX issued between the P*V HGMMA and its
WARPGROUP.DEPBAR wait (of the iteration's; + when the wait is in the next iteration), r2ur, uops =
uniform-datapath instructions, bra = branches on the path / laid out in the loop, lmem = LDL+STL on the
path / in the loop.
Cache: ~/.cache/vflash-sass (VFLASH_SASS_CACHE), keyed by the sources' content, nvcc version and flags.""")
    ap.add_argument("--filter", help="regex on 'instance variant' (e.g. d128, 'bf16 plain', packed); when it "
                    "matches some inst_*.cu names, only those files are compiled")
    ap.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    ap.add_argument("--compare", metavar="OLD", help="print the differences from an earlier --json file")
    ap.add_argument("--lib", nargs="+", metavar="FILE", help="read sm_90a code from built files (libvflash.so, "
                    "CMake objects of inst_*.cu, cubins) instead of compiling")
    ap.add_argument("--rev", help="compile src/ as of this git revision instead of the working tree")
    ap.add_argument("--src", help="source root to compile (a checkout with src/kernels/hopper); default: this repo")
    ap.add_argument("--fa3", metavar="WHL_OR_SO",
                    help="also report FlashAttention-3's forward kernels (the wheel or its .so)")
    ap.add_argument("--fa3-filter", help="regex on the FA3 row labels, e.g. 'd128.*bf16'; default: bf16, one CTA per "
                    "cluster, dv <= d, no softcap/paged/appendkv/qv/split/packgqa")
    ap.add_argument("--fa3-only", action="store_true", help="skip vflash's instances")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="parallel nvcc jobs (default 2)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args()

    filt = re.compile(args.filter) if args.filter else None
    tools = Tools(need_nvcc=not args.lib and not args.fa3_only)
    src_root = pathlib.Path(args.src).resolve() if args.src else (src_from_rev(args.rev) if args.rev else REPO)
    try:
        report(args, tools, filt, src_root)
    finally:
        if args.rev and not args.src:
            shutil.rmtree(src_root, ignore_errors=True)


def report(args, tools, filt, src_root):
    rows = []
    if not args.fa3_only:
        rows = vflash_rows(tools, args, filt, src_root)
        where = "--lib " + " ".join(args.lib) if args.lib else (f"rev {args.rev}" if args.rev else str(src_root))
        print_table(f"vflash Hopper kernel, key-block loops ({where})", rows)
    frows = []
    if args.fa3:
        frows = fa3_rows(tools, args, filt)
        if rows:
            print()
        print_table(f"FlashAttention-3 ({pathlib.Path(args.fa3).name})", frows)
    for r in rows:
        r.setdefault("source", "vflash")
    allrows = rows + frows
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": allrows}, indent=1) + "\n")
    if args.compare:
        old = json.loads(pathlib.Path(args.compare).read_text())["rows"]
        print()
        compare(old, allrows)


if __name__ == "__main__":
    main()
