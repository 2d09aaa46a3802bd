"""vflash as a Hugging Face transformers attention backend.

    import vflash.integrations.transformers          # registers "vflash"
    model = Qwen2_5_VLForConditionalGeneration(config, attn_implementation="vflash")
    # or on a loaded model: model.set_attn_implementation("vflash")

Importing this module registers the name "vflash" with transformers' attention-function
registry (``AttentionInterface``) and, for the masks the model builds, with its mask registry
(``AttentionMaskInterface``, SDPA's masks). ``register(name)`` registers another name.

How calls are served:

* Packed varlen calls (``cu_seq_lens_q`` / ``cu_seq_lens_k`` given, no mask): one vflash varlen
  call over the whole batch. This is how transformers >= 5.0 runs the vision towers of
  Qwen2-VL, Qwen2.5-VL (full and windowed layers: each layer passes its own cu_seqlens) and
  Qwen3-VL / Qwen3-VL-MoE (and other towers written the same way) when the implementation's
  name contains "flash", which "vflash" does: no split per image.
* A 2-D padding mask (models that build FlashAttention-style masks because the name contains
  "flash"): unpadded, one vflash varlen call, padded back (FlashAttention's semantics:
  causal aligned bottom-right per sequence, padded query rows zero).
* No mask and no cu_seqlens (e.g. the per-image split of transformers < 5.0 towers, or a
  prefill with a skipped causal mask): vflash's dense path where it equals SDPA exactly
  (non-causal, or causal with as many queries as keys); otherwise transformers' SDPA function.
* Anything else (a 4-D mask, a position bias, dropout in training, tensors that need
  gradients, head dims vflash does not serve, devices other than CUDA / CPU): transformers'
  SDPA function with the same arguments, or for packed calls a per-sequence torch path, so a
  call is never served wrongly; ``call_counts()`` says which path each call took.
* Attention sinks (``s_aux``) raise ValueError: neither vflash nor SDPA serves them.

Tensors on the CPU run on vflash's float64-accumulating reference (slow; for tests).
"""
from __future__ import annotations

try:
    import torch
    import transformers  # noqa: F401  (the error below names what is missing)
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import AttentionInterface
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"vflash.integrations.transformers needs torch and transformers installed ({error})"
    ) from error

import vflash

__all__ = ["NAME", "register", "attention_forward", "call_counts", "reset_call_counts"]

NAME = "vflash"

_registered = set()
_counts = {"varlen": 0, "padded": 0, "dense": 0, "fallback": 0}


def call_counts():
    """How many calls took each path since the last reset: 'varlen' (packed, vflash),
    'padded' (2-D padding mask, vflash), 'dense' (vflash) and 'fallback' (torch / SDPA)."""
    return dict(_counts)


def reset_call_counts():
    for key in _counts:
        _counts[key] = 0


def register(name=NAME, function=None):
    """Register `name` with transformers' attention and mask registries (idempotent): for
    vflash's attention function, or for `function` (an attention function of transformers'
    contract, e.g. another kernel to compare with, served the same way).

    A name containing "flash" makes transformers' vision towers pass cu_seqlens (the packed
    path); transformers then also preloads a FlashAttention package for that name at model
    construction, which is skipped for names registered here."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: must be a non-empty string, got {name!r}")
    if function is not None and not callable(function):
        raise ValueError(f"function: must be callable or None, got {function!r}")
    AttentionInterface.register(name, function or attention_forward)
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:  # pragma: no cover - transformers before the mask registry
        pass
    else:
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    _registered.add(name)
    _skip_flash_preload()
    return name


def _skip_flash_preload():
    """transformers >= 5.0 preloads a FlashAttention package (or a kernel from the Hub) for
    every implementation whose name contains "flash"; there is none to load for vflash."""
    try:
        import transformers.modeling_utils as modeling_utils
    except ImportError:  # pragma: no cover
        return
    original = getattr(modeling_utils, "lazy_import_flash_attention", None)
    if original is None or getattr(original, "_vflash_skips", False):
        return

    def lazy_import_flash_attention(implementation, *args, **kwargs):
        if implementation in _registered:
            return None
        return original(implementation, *args, **kwargs)

    lazy_import_flash_attention._vflash_skips = True
    lazy_import_flash_attention.__wrapped__ = original
    modeling_utils.lazy_import_flash_attention = lazy_import_flash_attention


# ---------------------------------------------------------------------------


def _servable(query, key, value, dropout):
    """Whether vflash serves these tensors exactly (otherwise a torch path does)."""
    if dropout:
        return False
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad):
        return False  # vflash is forward-only
    if not (query.dtype == key.dtype == value.dtype):
        return False
    if query.is_cuda:
        if query.dtype not in (torch.float16, torch.bfloat16):
            return False
    elif query.device.type == "cpu":
        if query.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            return False
    else:
        return False
    d, d_v = query.shape[-1], value.shape[-1]
    if key.shape[-1] != d or any(not (8 <= x <= 256 and x % 8 == 0) for x in (d, d_v)):
        return False
    heads_q, heads_k = query.shape[-3], key.shape[-3]
    return heads_k > 0 and heads_q % heads_k == 0


def _layout(t):
    """t unchanged if vflash takes its strides (last dimension contiguous, others multiples of
    16 bytes, 16-byte aligned), else a contiguous copy."""
    step = max(16 // t.element_size(), 1)
    ok = t.stride(-1) == 1 and t.data_ptr() % 16 == 0
    ok = ok and all(s % step == 0 for s, n in zip(t.stride()[:-1], t.shape[:-1]) if n > 1)
    return t if ok else t.contiguous()


def _window(sliding_window):
    # transformers' FlashAttention convention: a window of `sliding_window` tokens each side
    # (inclusive of the token itself), so (w - 1, w - 1); causal trims the right side.
    if sliding_window is None:
        return (-1, -1)
    w = int(sliding_window)
    return (w - 1, w - 1) if w > 0 else (-1, -1)


def _softcap(value):
    return 0.0 if value is None else float(value)


def _as_int(value):
    return int(value.item()) if isinstance(value, torch.Tensor) else int(value)


def _torch_varlen(q, k, v, cu_q, cu_k, scale, causal, window, softcap):
    """Per-sequence torch attention with vflash's semantics (bottom-right causal, window,
    softcap, rows that see no key give zeros): the exact fallback for packed calls."""
    bounds_q, bounds_k = cu_q.tolist(), cu_k.tolist()
    heads_q, heads_k, d = q.shape[1], k.shape[1], q.shape[2]
    scale = d**-0.5 if scale is None else scale
    out = q.new_zeros(q.shape[0], heads_q, v.shape[2])
    for b in range(len(bounds_q) - 1):
        q0, q1, k0, k1 = bounds_q[b], bounds_q[b + 1], bounds_k[b], bounds_k[b + 1]
        lq, lk = q1 - q0, k1 - k0
        if lq == 0:
            continue
        if lk == 0:
            continue  # no key: zeros
        qs = q[q0:q1].transpose(0, 1).float()
        ks = k[k0:k1].transpose(0, 1).float().repeat_interleave(heads_q // heads_k, dim=0)
        vs = v[k0:k1].transpose(0, 1).float().repeat_interleave(heads_q // heads_k, dim=0)
        i = torch.arange(lq, device=q.device)[:, None] + (lk - lq)  # the diagonal, bottom-right
        j = torch.arange(lk, device=q.device)[None, :]
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device)
        left, right = window
        if causal:
            right = 0
        if left >= 0:
            keep &= j >= i - left
        if right >= 0:
            keep &= j <= i + right
        scores = torch.matmul(qs, ks.transpose(1, 2)) * scale
        if softcap > 0:
            scores = softcap * torch.tanh(scores / softcap)
        scores = scores.masked_fill(~keep, float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows with no key: zeros
        out[q0:q1] = torch.matmul(probs, vs).transpose(0, 1).to(out.dtype)
    return out


def _varlen(query, key, value, cu_q, cu_k, max_q, max_k, dropout, scaling, causal, window, softcap):
    batch, heads_q, seq_q, d = query.shape
    seq_k = key.shape[2]
    q = query.transpose(1, 2).reshape(batch * seq_q, heads_q, d)
    k = key.transpose(1, 2).reshape(batch * seq_k, key.shape[1], d)
    v = value.transpose(1, 2).reshape(batch * seq_k, value.shape[1], value.shape[3])
    cu_q = cu_q.to(torch.int32)
    cu_k = cu_k.to(torch.int32)
    if _servable(query, key, value, dropout):
        lengths_q, lengths_k = cu_q[1:] - cu_q[:-1], cu_k[1:] - cu_k[:-1]
        max_q = _as_int(lengths_q.max()) if max_q is None else _as_int(max_q)
        max_k = _as_int(lengths_k.max()) if max_k is None else _as_int(max_k)
        out = vflash.flash_attn_varlen_func(
            _layout(q), _layout(k), _layout(v), cu_q, cu_k, max_q, max_k, softmax_scale=scaling, causal=causal,
            window_size=window, softcap=softcap,
        )
        _counts["varlen"] += 1
    else:
        if dropout:
            raise ValueError(f"dropout: the packed path has no dropout; got {dropout} (call model.eval())")
        out = _torch_varlen(q, k, v, cu_q, cu_k, scaling, causal, window, softcap)
        _counts["fallback"] += 1
    return out.reshape(batch, seq_q, heads_q, value.shape[3]), None


def _padded(query, key, value, mask, dropout, scaling, causal, window, softcap):
    """A FlashAttention-style 2-D padding mask (batch, kv_len), 1 = token: unpad, varlen, pad."""
    batch, heads_q, seq_q, d = query.shape
    mask = mask.to(torch.bool)
    key, value = key[:, :, : mask.shape[1]], value[:, :, : mask.shape[1]]
    seq_k = key.shape[2]
    mask = mask[:, -seq_k:]
    lengths_k = mask.sum(dim=1, dtype=torch.int32)
    rows_k = mask.flatten().nonzero().flatten()
    if seq_q == seq_k:
        mask_q = mask
    elif seq_q == 1:
        mask_q = torch.ones(batch, 1, dtype=torch.bool, device=mask.device)
    else:
        mask_q = mask[:, -seq_q:]  # left padding, as transformers assumes
    lengths_q = mask_q.sum(dim=1, dtype=torch.int32)
    rows_q = mask_q.flatten().nonzero().flatten()
    zero = torch.zeros(1, dtype=torch.int32, device=mask.device)
    cu_q, cu_k = torch.cat([zero, lengths_q.cumsum(0, dtype=torch.int32)]), torch.cat([zero, lengths_k.cumsum(0, dtype=torch.int32)])
    q = query.transpose(1, 2).reshape(batch * seq_q, heads_q, d)[rows_q]
    k = key.transpose(1, 2).reshape(batch * seq_k, key.shape[1], d)[rows_k]
    v = value.transpose(1, 2).reshape(batch * seq_k, value.shape[1], value.shape[3])[rows_k]
    if _servable(query, key, value, dropout):
        packed = vflash.flash_attn_varlen_func(
            q, k, v, cu_q, cu_k, _as_int(lengths_q.max()), _as_int(lengths_k.max()), softmax_scale=scaling,
            causal=causal, window_size=window, softcap=softcap,
        )
        _counts["padded"] += 1
    else:
        if dropout:
            raise ValueError(f"dropout: the padded FlashAttention-style path has no dropout; got {dropout}")
        packed = _torch_varlen(q, k, v, cu_q, cu_k, scaling, causal, window, softcap)
        _counts["fallback"] += 1
    out = query.new_zeros(batch * seq_q, heads_q, value.shape[3])
    out[rows_q] = packed
    return out.reshape(batch, seq_q, heads_q, value.shape[3]), None


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
    """transformers' attention-function contract: query (batch, heads_q, seq_q, d), key / value
    (batch, heads_k, seq_k, d / d_v); returns (output (batch, seq_q, heads_q, d_v), None)."""
    if kwargs.get("s_aux") is not None:
        raise ValueError("s_aux: attention sinks are served neither by vflash nor by its SDPA fallback; "
                         "load this model with another attn_implementation")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal)
    window = _window(kwargs.get("sliding_window"))
    softcap = _softcap(kwargs.get("softcap"))
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")

    if attention_mask is None and cu_q is not None and cu_k is not None:
        return _varlen(query, key, value, cu_q, cu_k, kwargs.get("max_length_q"), kwargs.get("max_length_k"),
                       dropout, scaling, causal, window, softcap)
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
        return _padded(query, key, value, attention_mask, dropout, scaling, causal, window, softcap)

    # SDPA's semantics from here on (the mask registered for this name is SDPA's).
    seq_q, seq_k = query.shape[2], key.shape[2]
    sdpa_causal = seq_q > 1 and causal
    if (
        attention_mask is None
        and kwargs.get("position_bias") is None
        and (not sdpa_causal or seq_q == seq_k)
        and _servable(query, key, value, dropout)
    ):
        out = vflash.flash_attn_func(
            _layout(query.transpose(1, 2)), _layout(key.transpose(1, 2)), _layout(value.transpose(1, 2)),
            softmax_scale=scaling, causal=sdpa_causal, softcap=softcap,
        )
        _counts["dense"] += 1
        return out, None
    _counts["fallback"] += 1
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


register(NAME)
