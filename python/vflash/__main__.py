"""The `vflash` command of the Python package (`python -m vflash`, or `vflash`
on PATH after `pip install`): the C++ CLI's `doctor` and `demo` through the
extension module. `bench` needs cuBLAS and lives in the C++ CLI only.
"""
from __future__ import annotations

import math
import os
import sys

USAGE = """\
usage: vflash <command> [options]

commands:
  doctor [--json]        device, kernels and targets in this package's library, and which kernel
                         representative calls would run (and why the others would not)
  demo                   a small varlen attention call (GQA, d72): with torch on the GPU when one
                         is present, otherwise with numpy on the CPU reference; checked against a
                         float64 computation
  --help                 this text

`vflash bench` is in the C++ command line tool (scripts/setup.sh builds it: build/vflash).
environment: VFLASH_FORCE_KERNEL=<name> forces a kernel; VFLASH_PRETEND_CC=<cc> makes dispatch
decide as if the device had capability <cc> (e.g. 10.3).
"""


def doctor_text(r: dict) -> str:
    """`vflash doctor`'s report in text, from the library's JSON report (the C++
    CLI prints its own text form; the JSON is the same)."""
    d = r["device"]
    s = [f"vflash {r['version']} doctor", ""]
    if d["present"]:
        s.append(f"Device {d['ordinal']}: {d['name']}, compute capability {d['capability']}, {d['family']}"
                 + (" [pretended: no CUDA call made]" if d["pretended"] else ""))
    else:
        s.append(f"Device: no CUDA device ({d['absent_reason']}); host tensors run on the CPU reference")
    s += [f"Forced kernel: {r['forced_kernel'] or 'none'}", "", "This binary holds:"]
    if not r["families"]:
        s.append("  no CUDA kernel (only the CPU reference)")
    for f in r["families"]:
        s.append(f"  family {f['name']}: targets {';'.join(f['targets'])}")
        s += [f"    {k['name']} (rank {k['rank']}): {k['description']}" for k in f["kernels"]]
    s += [f"  on device {d['ordinal']}, {p['kernel']} {p['detail']}" for p in r.get("load_probes", [])]
    s += ["", "Representative calls on this device:"]
    for c in r["calls"]:
        s.append(f"  {c['name']}: {c['description']}")
        if c["kernel"]:
            s.append(f"    -> {c['kernel']} ({c['target']})")
        else:
            s.append("    -> no kernel" + ("" if d["present"] else
                                           " (CUDA tensors would fail; host tensors use the CPU reference)"))
        s += [f"       {'+' if v['accepted'] else '-'} {v['kernel']}: {v['reason']}" for v in c.get("verdicts", [])]
    s += ["", "Kernel each call would get on each capability (selection from this binary's targets):"]
    for row in r.get("portability", []):
        groups: dict[str, list[str]] = {}
        for call, kernel in row["kernels"].items():
            groups.setdefault(kernel or "none", []).append(call)
        if len(groups) == 1:
            text = f" {next(iter(groups))} for every call"
        else:
            text = ";".join(f" {k} for {', '.join(calls)}" for k, calls in groups.items())
        s.append(f"  {row['family']}:{text}")
    return "\n".join(s) + "\n"


def demo() -> int:
    import vflash

    lens = [0, 1, 63, 64, 65, 197]
    heads_q, heads_k, dim = 8, 2, 72
    try:
        import numpy as np
    except ImportError:
        print("vflash demo: needs numpy (pip install numpy)", file=sys.stderr)
        return 1
    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    cu = np.cumsum([0] + lens).astype(np.int32)
    total = int(cu[-1])
    q = rng.uniform(-1, 1, (total, heads_q, dim)).astype(np.float16)
    k = rng.uniform(-1, 1, (total, heads_k, dim)).astype(np.float16)
    v = rng.uniform(-1, 1, (total, heads_k, dim)).astype(np.float16)
    print(f"vflash demo: varlen attention, {len(lens)} sequences (lengths {' '.join(map(str, lens))}), "
          f"{heads_q} query / {heads_k} KV heads, d{dim}, seed {seed}")

    torch = None
    try:
        import torch  # noqa: F811
    except ImportError:
        pass
    if torch is not None and torch.cuda.is_available():
        dev = torch.device("cuda")
        args = [torch.from_numpy(x).to(dev, torch.bfloat16) for x in (q, k, v)]
        cu_t = torch.from_numpy(cu).to(dev)
        print(f"running on the GPU: {torch.cuda.get_device_name(dev)}, dtype bf16")
        print("kernel:", vflash.varlen_kernel_name(*args, cu_t, cu_t, max(lens), max(lens)))
        out = vflash.flash_attn_varlen_func(*args, cu_t, cu_t, max(lens), max(lens)).float().cpu().numpy()
        tolerance = 1e-2
    else:
        print("running on the CPU reference (fp16 in, float64 accumulation)")
        print("kernel:", vflash.varlen_kernel_name(q, k, v, cu, cu, max(lens), max(lens)))
        out = vflash.flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens)).astype(np.float64)
        tolerance = 2e-3

    ref = np.zeros((total, heads_q, dim))
    group = heads_q // heads_k
    for s in range(len(lens)):
        a, b = int(cu[s]), int(cu[s + 1])
        for h in range(heads_q):
            qs = q[a:b, h].astype(np.float64)
            ks = k[a:b, h // group].astype(np.float64)
            vs = v[a:b, h // group].astype(np.float64)
            p = qs @ ks.T / math.sqrt(dim)
            if p.size:
                p = np.exp(p - p.max(axis=1, keepdims=True))
                ref[a:b, h] = (p / p.sum(axis=1, keepdims=True)) @ vs
    scale = np.abs(ref).max() or 1.0
    err = float(np.abs(out - ref).max() / scale) if out.size else 0.0
    ok = err <= tolerance  # false for NaN
    print(f"max error vs float64 computation: {err:.3e} (relative to max |ref|; tolerance {tolerance:.0e}): "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else ""
    if command == "doctor" and argv[1:] in ([], ["--json"]):
        import vflash

        if argv[1:] == ["--json"]:
            import json

            print(json.dumps(vflash.doctor(), indent=2))
        else:
            sys.stdout.write(doctor_text(vflash.doctor()))
        return 0
    if command == "demo" and len(argv) == 1:
        return demo()
    if command in ("--help", "-h", "help"):
        sys.stdout.write(USAGE)
        return 0
    if command == "bench":
        print("vflash bench: not in the Python package; use the C++ command line tool "
              "(scripts/setup.sh builds build/vflash)", file=sys.stderr)
        return 2
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main())
