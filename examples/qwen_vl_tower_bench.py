"""Qwen2.5-VL's and Qwen3-VL's vision towers (transformers, random weights, no download) on a
mixed batch of images with attn_implementation "sdpa", "vflash" and FlashAttention-3.

The towers are built from their configs at the real widths (Qwen2.5-VL: hidden 1280, 16 heads
of d80, windowed layers with 112-pixel windows and full layers every fourth block; Qwen3-VL:
hidden 1152, 16 heads of d72, all full) and a few blocks deep. One model per tower; its
attention implementation is switched between runs, so every row uses the same weights. The
script prints a markdown table: median wall time of a tower forward, the speed-up over
"sdpa", and each output's largest difference to "sdpa" and to the same tower in float32,
relative to the largest magnitude of the float32 output. It checks, with a forward hook on
every block, that each layer (full and windowed) was served by exactly one vflash varlen
call, and fails if not.

    python3 examples/qwen_vl_tower_bench.py                      # GPU, bf16, 8 images
    python3 examples/qwen_vl_tower_bench.py --device cpu --tiny  # CPU smoke test (vflash's reference)

"sdpa" is transformers' own path for non-flash implementations: attention image by image
(window by window in windowed layers). FlashAttention-3 comes from the fa3-fwd wheel's
``fa3_fwd_interface`` when it imports (bf16), registered like vflash under "fa3_flash".
"""
import argparse
import copy
import statistics
import sys
import time

try:
    import torch
    import transformers
except ImportError as error:
    sys.exit(f"this example needs torch and transformers: {error}")

import vflash
import vflash.integrations.transformers as vflash_hf

# (height, width) in patches, even (2x2 patches merge into one token): 256 .. 9216 patches.
IMAGES = [(16, 16), (24, 32), (32, 48), (48, 48), (40, 64), (64, 64), (72, 96), (96, 96)]
TINY_IMAGES = [(4, 4), (8, 12), (16, 16), (6, 10)]


def tower_specs(tiny, depth):
    """(label, module path, config class, model class, config kwargs) per tower family."""
    if tiny:
        q25 = dict(depth=4, hidden_size=64, num_heads=4, intermediate_size=128, out_hidden_size=48,
                   fullatt_block_indexes=[1, 3], window_size=56)
        q3 = dict(depth=3, hidden_size=64, num_heads=4, intermediate_size=128, out_hidden_size=48,
                  deepstack_visual_indexes=[1], num_position_embeddings=256)
    else:
        q25 = dict(depth=depth, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=2048,
                   window_size=112, fullatt_block_indexes=[i for i in range(depth) if i % 4 == 3])
        q3 = dict(depth=depth, hidden_size=1152, num_heads=16, intermediate_size=4304, out_hidden_size=2048,
                  num_position_embeddings=2304, deepstack_visual_indexes=[i for i in range(depth) if i % 4 == 1])
    return [
        ("Qwen2.5-VL", "transformers.models.qwen2_5_vl", "Qwen2_5_VLVisionConfig",
         "Qwen2_5_VisionTransformerPretrainedModel", q25),
        ("Qwen3-VL", "transformers.models.qwen3_vl", "Qwen3VLVisionConfig", "Qwen3VLVisionModel", q3),
    ]


def load_tower(label, module_path, config_name, model_name):
    """(config class, model class) or None, saying why."""
    try:
        configs = __import__(f"{module_path}.configuration_{module_path.rsplit('.', 1)[1]}", fromlist=[config_name])
        models = __import__(f"{module_path}.modeling_{module_path.rsplit('.', 1)[1]}", fromlist=[model_name])
        return getattr(configs, config_name), getattr(models, model_name)
    except (ImportError, AttributeError) as error:
        print(f"skipped {label}: transformers {transformers.__version__} has no {module_path}.{model_name} ({error})")
        return None


def fa3_attention_function():
    """An AttentionInterface function over the fa3-fwd wheel's varlen kernel, or None."""
    try:
        from fa3_fwd_interface import flash_attn_varlen_func as fa3_varlen
    except Exception as error:  # ImportError, or a CUDA library the wheel cannot load
        print(f"FlashAttention-3 skipped: fa3_fwd_interface does not import ({error})")
        return None

    def fa3_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
        cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
        if cu_q is None or attention_mask is not None:
            raise RuntimeError("fa3_flash: this benchmark serves only packed (cu_seqlens) calls")
        seq, heads, d = query.shape[2], query.shape[1], query.shape[3]
        q = query.transpose(1, 2).reshape(seq, heads, d)
        k = key.transpose(1, 2).reshape(seq, key.shape[1], d)
        v = value.transpose(1, 2).reshape(seq, value.shape[1], value.shape[3])
        out = fa3_varlen(q, k, v, cu_q.int(), cu_k.int(), int(kwargs["max_length_q"]), int(kwargs["max_length_k"]),
                         softmax_scale=scaling, causal=bool(is_causal))
        return out.reshape(1, seq, heads, value.shape[3]), None

    return fa3_attention


def randomize(model, seed):
    """Weights ~ N(0, 1/fan_in), biases 0 (O(1) activations, so the softmax is not flat)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * fan_in**-0.5)
            elif name.endswith("bias"):
                p.zero_()


def set_impl(model, impl):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:  # older transformers
        model.config._attn_implementation = impl
    assert model.config._attn_implementation == impl, (model.config._attn_implementation, impl)


def outputs(result):
    """The tower's outputs to compare: last hidden state, merged (pooled) tokens."""
    last = getattr(result, "last_hidden_state", None)
    pooled = getattr(result, "pooler_output", None)
    if last is None:  # transformers versions returning a tensor or a tuple
        last = result[0] if isinstance(result, (tuple, list)) else result
    return {"hidden": last, "merged": pooled}


def timed(fn, device, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def layer_hooks(model, full_layers):
    """Forward hooks recording, per block, the vflash call counts its attention added."""
    served = {}

    def before(index):
        return lambda *_: served.__setitem__(index, vflash_hf.call_counts())

    def after(index):
        def hook(*_):
            start, end = served[index], vflash_hf.call_counts()
            served[index] = {key: end[key] - start[key] for key in end}
        return hook

    handles = []
    for index, block in enumerate(model.blocks):
        handles.append(block.attn.register_forward_pre_hook(before(index)))
        handles.append(block.attn.register_forward_hook(after(index)))
    return served, handles


def check_served(label, served, full_layers, depth):
    one_varlen = {"varlen": 1, "padded": 0, "dense": 0, "fallback": 0}
    bad = [i for i in range(depth) if served.get(i) != one_varlen]
    full = [i for i in range(depth) if i in full_layers]
    windowed = [i for i in range(depth) if i not in full_layers]
    print(f"{label}: vflash served {depth - len(bad)}/{depth} layers with one varlen call each "
          f"(full layers {full}, windowed layers {windowed or 'none'})")
    if bad:
        sys.exit(f"{label}: layers {bad} were not served by one vflash varlen call: {[served.get(i) for i in bad]}")


def run_tower(spec, args, device, dtype, fa3_name, rows):
    label, module_path, config_name, model_name, config_kwargs = spec
    classes = load_tower(label, module_path, config_name, model_name)
    if classes is None:
        return
    config_class, model_class = classes
    config = config_class(**config_kwargs)
    model = model_class._from_config(copy.deepcopy(config), attn_implementation="sdpa")
    randomize(model, args.seed)
    model = model.to(device=device, dtype=torch.float32).eval()

    patch = config.patch_size
    frames = config.temporal_patch_size
    images = TINY_IMAGES if args.tiny else IMAGES[: args.images]
    grid = torch.tensor([[1, h, w] for h, w in images], device=device)
    tokens = int(grid.prod(-1).sum())
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    pixels = torch.randn(tokens, config.in_channels * frames * patch * patch, generator=gen).to(device)
    print(f"{label}: {len(images)} images, {tokens} patches ({min(h * w for h, w in images)}.."
          f"{max(h * w for h, w in images)} each), hidden {config.hidden_size}, {config.num_heads} heads of "
          f"d{config.hidden_size // config.num_heads}, depth {config.depth}")

    with torch.no_grad():
        reference = outputs(model(pixels, grid_thw=grid)) if not args.no_fp32 else None
        reference = {k: v.float() for k, v in reference.items() if v is not None} if reference else None
    model = model.to(dtype)
    pixels = pixels.to(dtype)

    impls = ["sdpa", "vflash"] + ([fa3_name] if fa3_name and device.type == "cuda" and dtype == torch.bfloat16 else [])
    results, times = {}, {}
    full_layers = set(getattr(config, "fullatt_block_indexes", None) or range(config.depth))
    for impl in impls:
        set_impl(model, impl)
        with torch.no_grad():
            if impl == "vflash":
                vflash_hf.reset_call_counts()
                served, handles = layer_hooks(model, full_layers)
                results[impl] = {k: v.float() for k, v in outputs(model(pixels, grid_thw=grid)).items() if v is not None}
                for handle in handles:
                    handle.remove()
                check_served(label, served, full_layers, config.depth)
            else:
                results[impl] = {k: v.float() for k, v in outputs(model(pixels, grid_thw=grid)).items() if v is not None}
            times[impl] = timed(lambda: model(pixels, grid_thw=grid), device, args.iters, args.warmup)

    for impl in impls:
        row = {"tower": label, "impl": impl, "ms": times[impl], "speedup": times["sdpa"] / times[impl]}
        for name, value in results[impl].items():
            scale = max(reference[name].abs().max().item(), 1e-6) if reference else None
            base = results["sdpa"][name]
            row[f"{name} vs sdpa"] = (value - base).abs().max().item() / (scale or base.abs().max().item())
            if reference:
                row[f"{name} vs fp32"] = (value - reference[name]).abs().max().item() / scale
        rows.append(row)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"],
                        help="default: bf16 on a GPU, fp32 on the CPU")
    parser.add_argument("--depth", type=int, default=8, help="blocks per tower (real: 32 / 27)")
    parser.add_argument("--images", type=int, default=len(IMAGES), help=f"how many of the {len(IMAGES)} images")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny widths and images (a CPU smoke test)")
    parser.add_argument("--no-fp32", action="store_true", help="skip the float32 reference run")
    parser.add_argument("--towers", default="Qwen2.5-VL,Qwen3-VL")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    if device.type == "cuda" and dtype == torch.float32:
        sys.exit("--dtype fp32 runs only on the CPU: vflash's GPU kernels take fp16 / bf16")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, vflash {vflash.__version__}, "
          f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, {dtype}")

    fa3 = fa3_attention_function() if device.type == "cuda" else None
    fa3_name = vflash_hf.register("fa3_flash", fa3) if fa3 is not None else None

    rows = []
    wanted = set(args.towers.split(","))
    for spec in tower_specs(args.tiny, args.depth):
        if spec[0] in wanted:
            run_tower(spec, args, device, dtype, fa3_name, rows)
    if not rows:
        sys.exit("no tower ran")

    keys = [k for k in rows[0] if k not in ("tower", "impl", "ms", "speedup")]
    print()
    print("| tower | attn_implementation | ms / forward | vs sdpa | " + " | ".join(keys) + " |")
    print("|---|---|---|---|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{row.get(k, float('nan')):.2e}" for k in keys]
        print(f"| {row['tower']} | {row['impl']} | {row['ms']:.2f} | {row['speedup']:.2f}x | " + " | ".join(cells) + " |")
    print("\n(differences: largest absolute difference relative to the largest |float32 output|; "
          "'hidden' = last block's output, 'merged' = the patch merger's tokens)")


if __name__ == "__main__":
    main()
