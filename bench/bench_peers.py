"""vflash and the attention peers present, side by side in one run, on the
workloads of a JSON file (schema of bench/workloads.json).

    python3 bench/bench_peers.py [workloads.json ...] [--out DIR] [--peers a,b,...]
                                 [--kernel NAME] [--rounds N]

Peers, each used when importable and able to run the case (otherwise the
reason is printed): torch SDPA with its flash (FA2), cuDNN and memory-efficient
backends (dense cases); torch's FA2 varlen op (aten._flash_attention_forward);
cuDNN SDPA on a padded batch (varlen cases, heads_q == heads_k);
FlashAttention-3 (`fa3`: the fa3-fwd wheel's fa3_fwd_interface, Hopper) and
flash-attn-4 (flash_attn.cute) if installed; vflash (Python API). Inputs are
random bf16.

Timing: median of CUDA-event times over many runs, L2 flushed (a memset of
twice its size) before each run: the policy of tools/bench_core.hpp, which
`vflash bench` and bench/mma_bench.cu share. With --rounds N the
peers of a case are timed N times in alternation (forward, then reversed
order), so that clock and temperature drift reach every peer alike; a peer's
figure is the median of its N per-round medians, and the tables give the
range. --kernel forces vflash's kernel (vflash.force_kernel), e.g. `mma` to
compare the portable kernel on a GPU where dispatch would pick another. TFLOP/s count
4 * Sq * Sk * H * D per sequence at the true head dim, half the pairs (s(s+1)/2)
when causal. The % column is against a bf16 8192^3 matmul measured in the same
run. Writes DIR/bench_peers.md (tables), DIR/bench_peers.json and
DIR/bench_peers.png (grouped bars).
"""
import argparse
import importlib.metadata
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPE = torch.bfloat16


def optional_module(name):
    try:
        return __import__(name, fromlist=["*"])
    except Exception:  # absent, or present but unusable here
        return None


class Timer:
    """Median CUDA-event time of a callable, with L2 flushed before each run."""

    def __init__(self, min_runs=10, max_runs=200, budget_ms=300.0):
        l2 = torch.cuda.get_device_properties(0).L2_cache_size
        self.flush = torch.empty(max(2 * l2, 64 << 20), dtype=torch.uint8, device="cuda")
        self.min_runs, self.max_runs, self.budget_ms = min_runs, max_runs, budget_ms

    def _timed(self, fn, runs):
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(runs)]
        for start, stop in events:
            self.flush.zero_()
            start.record()
            fn()
            stop.record()
        torch.cuda.synchronize()
        return sorted(start.elapsed_time(stop) for start, stop in events)

    def median_ms(self, fn):
        probe = self._timed(fn, 3)[-1]  # warm-up, and an estimate for the run count
        runs = int(min(self.max_runs, max(self.min_runs, self.budget_ms / max(probe, 1e-3))))
        times = self._timed(fn, runs)
        return times[len(times) // 2]


def package_version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def flops(seqlens, heads, head_dim, causal):
    return sum(4 * (s * (s + 1) / 2 if causal else s * s) * heads * head_dim for s in seqlens)


def expand(seqlens):
    if isinstance(seqlens, str):  # "NxL": N sequences of length L
        n, length = seqlens.split("x")
        return [int(length)] * int(n)
    return [int(s) for s in seqlens]


class Bench:
    def __init__(self, peers, budget_ms, rounds):
        self.timer = Timer(budget_ms=budget_ms)
        self.peers = peers
        self.rounds = rounds
        self.rows = []
        self.notes = []
        self.fa3 = optional_module("fa3_fwd_interface") if self.wanted("fa3") else None
        self.fa4 = optional_module("flash_attn.cute") if self.wanted("flash-attn-4") else None
        self.vflash = optional_module("vflash") if self.wanted("vflash") else None

    def wanted(self, peer):
        return self.peers is None or peer in self.peers

    def measure(self, case, fl, entries):
        """Times each wanted (peer, fn, kernel) of a case, self.rounds times in alternation."""
        entries = [e for e in entries if self.wanted(e[0])]
        times = {peer: [] for peer, _, _ in entries}
        for r in range(self.rounds):
            for peer, fn, _ in entries if r % 2 == 0 else entries[::-1]:
                if times[peer] is None:
                    continue
                try:
                    times[peer].append(self.timer.median_ms(fn))
                except Exception as e:  # a peer that cannot run this case says why and the run goes on
                    self.notes.append(f"{case} / {peer}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                    print(f"  {self.notes[-1]}", file=sys.stderr)
                    times[peer] = None
        for peer, _, kernel in entries:
            if not times[peer]:
                continue
            ts = sorted(times[peer])
            ms = ts[len(ts) // 2]
            self.rows.append(dict(case=case, peer=peer, ms=ms, tflops=fl / ms / 1e9, kernel=kernel,
                                  tflops_min=fl / ts[-1] / 1e9, tflops_max=fl / ts[0] / 1e9, rounds=len(ts)))
            spread = f" ({fl / ts[-1] / 1e9:.1f}-{fl / ts[0] / 1e9:.1f} over {len(ts)} rounds)" if len(ts) > 1 else ""
            print(f"  {case:32s} {peer:20s} {ms:9.3f} ms {fl / ms / 1e9:8.1f} TFLOP/s {kernel}{spread}", flush=True)

    def agreement(self, case, got, want):
        err = ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()
        self.notes.append(f"{case}: vflash vs torch max |diff| / max |ref| = {err:.2e}")

    def dense(self, name, batch, seqlen, heads, head_dim, causal):
        q, k, v = (torch.randn(batch, heads, seqlen, head_dim, device="cuda", dtype=DTYPE) for _ in range(3))
        fl = flops([seqlen] * batch, heads, head_dim, causal)
        entries = []
        for backend, tag in [(SDPBackend.FLASH_ATTENTION, "torch-sdpa-fa2"), (SDPBackend.CUDNN_ATTENTION, "cudnn"),
                             (SDPBackend.EFFICIENT_ATTENTION, "mem-efficient")]:
            def run(backend=backend):
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            entries.append((tag, run, ""))
        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))  # FlashAttention's (B, S, H, D)
        if self.fa3 is not None:
            entries.append(("fa3", lambda: self.fa3.flash_attn_func(
                qt, kt, vt, softmax_scale=head_dim ** -0.5, causal=causal, window_size=(-1, -1)), ""))
        if self.fa4 is not None:
            entries.append(("flash-attn-4", lambda: self.fa4.flash_attn_func(qt, kt, vt, causal=causal), ""))
        if self.vflash is not None:
            kernel = self.vflash.kernel_name(qt, kt, vt, causal=causal)
            entries.append(("vflash", lambda: self.vflash.flash_attn_func(qt, kt, vt, causal=causal), kernel))
        self.measure(name, fl, entries)
        if self.vflash is not None:
            reference = None
            for _, run, _ in entries[:3]:  # the first torch backend that runs
                try:
                    reference = run().transpose(1, 2)
                    break
                except Exception:
                    pass
            if reference is not None:
                self.agreement(name, self.vflash.flash_attn_func(qt, kt, vt, causal=causal), reference)

    def varlen(self, name, seqlens, heads_q, heads_k, head_dim, causal):
        total, longest = sum(seqlens), max(seqlens)
        q = torch.randn(total, heads_q, head_dim, device="cuda", dtype=DTYPE)
        k, v = (torch.randn(total, heads_k, head_dim, device="cuda", dtype=DTYPE) for _ in range(2))
        cu = torch.tensor([0] + seqlens, device="cuda").cumsum(0).to(torch.int32)
        fl = flops(seqlens, heads_q, head_dim, causal)

        def torch_fa2():
            return torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, longest, longest, 0.0, causal, False)[0]

        entries = [("torch-fa2-varlen", torch_fa2, "")]
        if self.fa3 is not None:
            entries.append(("fa3", lambda: self.fa3.flash_attn_varlen_func(
                q, k, v, cu, cu, longest, longest, softmax_scale=head_dim ** -0.5, causal=causal,
                window_size=(-1, -1)), ""))
        if self.fa4 is not None:
            entries.append(("flash-attn-4", lambda: self.fa4.flash_attn_varlen_func(
                q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=longest, max_seqlen_k=longest, causal=causal),
                ""))

        def ours():
            return self.vflash.flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, causal=causal)
        if self.vflash is not None:
            kernel = self.vflash.varlen_kernel_name(q, k, v, cu, cu, longest, longest, causal=causal)
            entries.append(("vflash", ours, kernel))
        if heads_q == heads_k and self.wanted("cudnn-padded"):
            batch = len(seqlens)
            qp = torch.randn(batch, heads_q, longest, head_dim, device="cuda", dtype=DTYPE)
            kp, vp = (torch.randn(batch, heads_k, longest, head_dim, device="cuda", dtype=DTYPE) for _ in range(2))

            def cudnn_padded():
                with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                    return F.scaled_dot_product_attention(qp, kp, vp, is_causal=causal)

            entries.append(("cudnn-padded", cudnn_padded, ""))
        self.measure(name, fl, entries)
        if self.vflash is not None:
            try:
                self.agreement(name, ours(), torch_fa2())
            except Exception as e:
                self.notes.append(f"{name}: no agreement check ({type(e).__name__})")

    def matmul_tflops(self):
        a, b = (torch.randn(8192, 8192, device="cuda", dtype=DTYPE) for _ in range(2))
        return 2 * 8192 ** 3 / self.timer.median_ms(lambda: a @ b) / 1e9


def markdown(info, peak, rows, notes):
    cases = list(dict.fromkeys(r["case"] for r in rows))
    peers = list(dict.fromkeys(r["peer"] for r in rows))
    cell = {(r["case"], r["peer"]): r for r in rows}
    forced = f" (kernel forced: {info['kernel']})" if info.get("kernel") else ""
    rounds = f"; median of {info['rounds']} rounds, peers alternating" if info.get("rounds", 1) > 1 else ""
    lines = [
        f"# vflash vs peers: {info['gpu']} (cc {info['cc']})",
        "",
        f"torch {info['torch']}, cuDNN {info['cudnn']}, FA3 (fa3-fwd) {info['fa3'] or 'no'}, "
        f"flash-attn-4 {info['fa4'] or 'no'}, "
        f"vflash {info['vflash']}{forced}; bf16; TFLOP/s at the true head dim (median of CUDA-event times, "
        f"L2 flushed{rounds}); bf16 matmul 8192^3 in the same run: {peak:.0f} TFLOP/s.",
        "",
        "| workload | " + " | ".join(peers) + " | vflash / best peer | vflash kernel |",
        "|---" * (len(peers) + 3) + "|",
    ]
    for case in cases:
        values = [cell.get((case, p)) for p in peers]
        others = [r["tflops"] for r in values if r is not None and r["peer"] != "vflash"]
        ours = cell.get((case, "vflash"))
        ratio = f"{ours['tflops'] / max(others):.2f}x" if ours and others else "—"
        lines.append(f"| {case} | " + " | ".join(f"{r['tflops']:.0f}" if r else "—" for r in values)
                     + f" | {ratio} | {ours['kernel'] if ours else '—'} |")
    lines += ["", "| workload | peer | median ms | TFLOP/s | rounds: TFLOP/s range | % of matmul |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        spread = f"{r['tflops_min']:.1f}-{r['tflops_max']:.1f} ({r['rounds']})" if r.get("rounds", 1) > 1 else "—"
        lines.append(f"| {r['case']} | {r['peer']} | {r['ms']:.3f} | {r['tflops']:.1f} | {spread} "
                     f"| {100 * r['tflops'] / peak:.1f} |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot(path, info, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in rows))
    peers = list(dict.fromkeys(r["peer"] for r in rows))
    cell = {(r["case"], r["peer"]): r["tflops"] for r in rows}
    width = 0.8 / max(len(peers), 1)
    fig, ax = plt.subplots(figsize=(max(10, 1.1 * len(cases)), 5.5))
    for i, peer in enumerate(peers):
        xs = [c + (i - (len(peers) - 1) / 2) * width for c in range(len(cases))]
        ax.bar(xs, [cell.get((case, peer), 0.0) for case in cases], width, label=peer)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("TFLOP/s (bf16, true head dim)")
    ax.set_title(f"Attention forward on {info['gpu']}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="*", default=[os.path.join(HERE, "workloads.json")])
    parser.add_argument("--out", default=".", help="folder for bench_peers.{md,json,png}")
    parser.add_argument("--peers", help="comma-separated subset of peers to run")
    parser.add_argument("--budget-ms", type=float, default=300.0,
                        help="GPU time to spend timing each case and peer per round (runs: 10 to 200)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time each case's peers this many times, alternating their order")
    parser.add_argument("--kernel", help="force vflash's kernel (e.g. mma, hopper)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not torch.cuda.is_available():
        print("bench_peers: no CUDA GPU visible to torch; nothing to measure", file=sys.stderr)
        return 2
    bench = Bench(set(args.peers.split(",")) if args.peers else None, args.budget_ms, args.rounds)
    if args.kernel:
        if bench.vflash is None:
            parser.error("--kernel needs the vflash package")
        bench.vflash.force_kernel(args.kernel)
    props = torch.cuda.get_device_properties(0)
    info = dict(gpu=props.name, cc=f"{props.major}.{props.minor}", torch=torch.__version__,
                cudnn=torch.backends.cudnn.version(),
                fa3=(package_version("fa3-fwd") or "yes") if bench.fa3 is not None else None,
                fa4=(package_version("flash-attn-4") or "yes") if bench.fa4 is not None else None,
                vflash=getattr(bench.vflash, "__version__", None), rounds=args.rounds, kernel=args.kernel)
    print(json.dumps(info))
    torch.manual_seed(0)
    peak = bench.matmul_tflops()
    print(f"bf16 matmul 8192^3: {peak:.0f} TFLOP/s")
    for path in args.workloads:
        with open(path) as f:
            workloads = json.load(f)
        for c in workloads.get("dense", []):
            bench.dense(c["name"], c["batch"], c["seqlen"], c["heads"], c["head_dim"], c.get("causal", False))
        for c in workloads.get("varlen", []):
            bench.varlen(c["name"], expand(c["seqlens"]), c["heads_q"], c["heads_k"], c["head_dim"],
                         c.get("causal", False))
            torch.cuda.empty_cache()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_peers.md"), "w") as f:
        f.write(markdown(info, peak, bench.rows, bench.notes))
    with open(os.path.join(args.out, "bench_peers.json"), "w") as f:
        json.dump(dict(info=info, matmul_tflops=peak, rows=bench.rows, notes=bench.notes), f, indent=1)
    plot(os.path.join(args.out, "bench_peers.png"), info, bench.rows)
    print(f"wrote {args.out}/bench_peers.md, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
