"""A Qwen-VL-style vision transformer block with vflash's varlen attention.

Images of different sizes are cut into 14x14 patches and packed into one token
sequence (no padding); cu_seqlens marks where each image starts. The block:
LayerNorm -> QKV projection -> 2-D rotary position embedding (row and column of
each patch) -> attention within each image -> output projection -> residual,
then LayerNorm -> MLP -> residual.

The same block with torch's scaled_dot_product_attention run image by image is
the reference: the script prints and asserts the max difference, and prints the
speed-up of the block and of the attention alone.

    python3 examples/qwen_vl_vision_block.py [--images 32x32,16x24,...] [--dim 1280 --heads 16]
"""
import argparse
import math

import torch
import torch.nn.functional as F

import vflash


class VisionRotary2D:
    """2-D RoPE: the first half of the rotary frequencies encode a patch's row, the second half its column."""

    def __init__(self, head_dim, theta=10000.0):
        quarter = head_dim // 4
        self.inv_freq = 1.0 / theta ** (torch.arange(quarter, dtype=torch.float32) / quarter)

    def cos_sin(self, grids, device):
        rows, cols = [], []
        for h, w in grids:
            rows.append(torch.arange(h).repeat_interleave(w))
            cols.append(torch.arange(w).repeat(h))
        inv_freq = self.inv_freq.to(device)
        rows = torch.cat(rows).to(device, torch.float32)
        cols = torch.cat(cols).to(device, torch.float32)
        angles = torch.cat([rows[:, None] * inv_freq, cols[:, None] * inv_freq], dim=-1)  # (tokens, d/2)
        angles = torch.cat([angles, angles], dim=-1)[:, None, :]  # (tokens, 1, d): rotate_half pairing
        return angles.cos(), angles.sin()


def rotate_half(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x, cos, sin):
    return (x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype)


class VisionBlock(torch.nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm1 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(dim, mlp_ratio * dim), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(mlp_ratio * dim, dim)
        )

    def qkv_rotated(self, x, cos, sin):
        qkv = self.qkv(self.norm1(x)).view(x.shape[0], 3, self.heads, self.head_dim)
        q, k, v = qkv.unbind(1)  # strided views: vflash takes them without a copy
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def forward(self, x, cos, sin, attention):
        q, k, v = self.qkv_rotated(x, cos, sin)
        x = x + self.proj(attention(q, k, v).reshape(x.shape[0], -1))
        return x + self.mlp(self.norm2(x))


def vflash_attention(cu_seqlens, max_seqlen):
    return lambda q, k, v: vflash.flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)


def sdpa_per_image(lengths):
    def attention(q, k, v):
        outs = []
        for qi, ki, vi in zip(q.split(lengths), k.split(lengths), v.split(lengths)):
            o = F.scaled_dot_product_attention(*(t.transpose(0, 1)[None] for t in (qi, ki, vi)))
            outs.append(o[0].transpose(0, 1))
        return torch.cat(outs)

    return attention


def median_ms(fn, runs=30):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def parse_grids(text):
    return [tuple(int(n) for n in item.split("x")) for item in text.split(",")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="64x64,32x48,96x96,16x16,40x56,24x24,72x48,8x8",
                        help="image grids in patches, rows x cols (default: 8 images, 21,440 tokens)")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--heads", type=int, default=16)
    args = parser.parse_args()

    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    grids = parse_grids(args.images) if on_gpu else [(6, 5), (3, 4), (8, 8)]  # CPU reference: keep it small
    dtype = torch.bfloat16
    torch.manual_seed(0)
    lengths = [h * w for h, w in grids]
    cu_seqlens = torch.tensor([0] + lengths, device=device).cumsum(0).to(torch.int32)
    max_seqlen = max(lengths)

    block = VisionBlock(args.dim, args.heads).to(device, dtype).eval()
    x = torch.randn(sum(lengths), args.dim, device=device, dtype=dtype)
    cos, sin = VisionRotary2D(args.dim // args.heads).cos_sin(grids, device)
    ours, theirs = vflash_attention(cu_seqlens, max_seqlen), sdpa_per_image(lengths)
    print(f"{len(grids)} images, {sum(lengths)} tokens (longest {max_seqlen}), dim {args.dim}, {args.heads} heads "
          f"of {args.dim // args.heads}, bf16, on {torch.cuda.get_device_name() if on_gpu else 'the CPU reference'}")

    with torch.no_grad():
        q, k, v = block.qkv_rotated(x, cos, sin)
        print(f"vflash kernel: {vflash.varlen_kernel_name(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)}")
        attention_ours, attention_ref = ours(q, k, v), theirs(q, k, v)
        y_ours, y_ref = block(x, cos, sin, ours), block(x, cos, sin, theirs)
        attention_err = ((attention_ours.float() - attention_ref.float()).abs().max() / attention_ref.float().abs().max()).item()
        block_err = ((y_ours.float() - y_ref.float()).abs().max() / y_ref.float().abs().max()).item()
        print(f"max |vflash - sdpa| / max |sdpa|: attention {attention_err:.2e}, block output {block_err:.2e}")
        assert math.isfinite(block_err) and attention_err <= 2e-2 and block_err <= 2e-2, "vflash block disagrees with SDPA"

        if on_gpu:
            t_attn_ours, t_attn_ref = median_ms(lambda: ours(q, k, v)), median_ms(lambda: theirs(q, k, v))
            t_block_ours = median_ms(lambda: block(x, cos, sin, ours))
            t_block_ref = median_ms(lambda: block(x, cos, sin, theirs))
            print(f"attention: vflash {t_attn_ours:.3f} ms, sdpa per image {t_attn_ref:.3f} ms: "
                  f"speed-up {t_attn_ref / t_attn_ours:.2f}x")
            print(f"block:     vflash {t_block_ours:.3f} ms, sdpa per image {t_block_ref:.3f} ms: "
                  f"speed-up {t_block_ref / t_block_ours:.2f}x")
        else:
            print("no GPU: checked on the CPU reference; no speed-up measured")


if __name__ == "__main__":
    main()
