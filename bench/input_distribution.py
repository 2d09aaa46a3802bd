"""How much the input distribution moves attention timings on this GPU.

`vflash bench` draws its inputs from U[-2, 2), `bench_peers.py` from N(0, 1); the
GPU's clocks depend on the data. This times torch's FA2 (SDPA flash backend) on
both kinds of input, alternating the order per round, with bench_peers.py's
timer (CUDA events, L2 flushed before each run; docs/tuning.md, "Measuring").

    python3 bench/input_distribution.py [--rounds 4]
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench_peers import Timer, flops

CASES = [("std-s8192-d256", 2, 8192, 8, 256), ("std-s1024-d128", 16, 1024, 16, 128),
         ("std-s8192-d128", 2, 8192, 16, 128)]
INPUTS = {
    "N(0,1)": lambda shape: torch.randn(shape, device="cuda", dtype=torch.bfloat16),
    "U[-2,2)": lambda shape: torch.rand(shape, device="cuda", dtype=torch.bfloat16) * 4 - 2,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    timer = Timer(min_runs=60, max_runs=60)  # bench_peers.py's timing, 60 runs per figure
    for name, batch, seqlen, heads, head_dim in CASES:
        flop = flops([seqlen] * batch, heads, head_dim, causal=False)
        shape = (batch, heads, seqlen, head_dim)
        inputs = {kind: [make(shape) for _ in range(3)] for kind, make in INPUTS.items()}
        tflops = {kind: [] for kind in INPUTS}
        for r in range(args.rounds):
            for kind in list(INPUTS) if r % 2 == 0 else list(INPUTS)[::-1]:
                q, k, v = inputs[kind]
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                    ms = timer.median_ms(lambda: F.scaled_dot_product_attention(q, k, v))
                tflops[kind].append(flop / ms / 1e9)
        print(name, "  ".join(f"{kind}: " + " ".join(f"{t:.1f}" for t in ts) for kind, ts in tflops.items()))


if __name__ == "__main__":
    main()
