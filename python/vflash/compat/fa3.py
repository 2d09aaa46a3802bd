"""FlashAttention-3's call style (the hopper package's ``flash_attn_interface``) over vflash.

    from vflash.compat.fa3 import flash_attn_varlen_func   # was: from flash_attn_interface import ...

Same parameter names, order and defaults; the same returns: ``out``, or
``(out, softmax_lse)`` with ``return_attn_probs=True`` (lse float32, ``(heads_q, total_q)``
varlen, ``(batch, heads_q, seqlen_q)`` batch). Arrays of every type vflash takes (torch,
CuPy, numpy on the CPU reference).

Served: softmax_scale, causal (bottom-right), window_size (a negative side is unbounded),
softcap, GQA/MQA, seqused_q / seqused_k (rows past seqused_q come back zero, lse -inf;
the used rows are gathered on the host's say, so the call synchronises a GPU).
Scheduling hints are checked and otherwise left to vflash's dispatch: num_splits, pack_gqa,
sm_margin, deterministic (the forward pass is deterministic).
Refused with a ValueError naming the argument: qv, q_descale / k_descale / v_descale (FP8),
attention_chunk != 0.
"""
from __future__ import annotations

from . import _common

__all__ = ["flash_attn_varlen_func", "flash_attn_func"]


def _options(softmax_scale, causal, qv, q_descale, k_descale, v_descale, window_size, attention_chunk, softcap,
             num_splits, pack_gqa, deterministic, sm_margin, return_attn_probs):
    _common.reject_unless_default("qv", qv, None, "the extra query-value term (MLA absorption) is not served by vflash")
    for name, value in (("q_descale", q_descale), ("k_descale", k_descale), ("v_descale", v_descale)):
        _common.reject_unless_default(name, value, None, "FP8 inputs are not served by vflash (fp16/bf16/fp32 only)")
    _common.reject_unless_default("attention_chunk", attention_chunk, 0, "chunked attention is not served by vflash")
    _common.check_hint_int("num_splits", num_splits, minimum=-(2**31))
    _common.check_hint_bool("pack_gqa", pack_gqa)
    _common.check_hint_bool("deterministic", deterministic, allow_none=False)
    _common.check_hint_int("sm_margin", sm_margin, minimum=0)
    _common.check_hint_bool("return_attn_probs", return_attn_probs, allow_none=False)
    return dict(
        scale=_common.softmax_scale(softmax_scale),
        causal=bool(causal),
        window=_common.fa3_window(window_size),
        cap=_common.softcap(softcap),
        want_lse=return_attn_probs,
    )


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    seqused_q=None,
    seqused_k=None,
    softmax_scale=None,
    causal=False,
    qv=None,
    q_descale=None,
    k_descale=None,
    v_descale=None,
    window_size=(-1, -1),
    attention_chunk=0,
    softcap=0.0,
    num_splits=1,
    pack_gqa=None,
    deterministic=False,
    sm_margin=0,
    return_attn_probs=False,
):
    """Packed variable-length attention, FlashAttention-3's signature.

    q (total_q, heads_q, d), k (total_k, heads_k, d), v (total_k, heads_k, d_v); cu_seqlens_*
    int32 (batch + 1,) (None with a batch-layout side, (batch, seqlen, heads, d), and seqused_*).
    Returns out (total_q, heads_q, d_v), or (out, softmax_lse) with return_attn_probs=True.
    """
    opts = _options(softmax_scale, causal, qv, q_descale, k_descale, v_descale, window_size, attention_chunk,
                    softcap, num_splits, pack_gqa, deterministic, sm_margin, return_attn_probs)
    out, lse = _common.attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_q,
                                 seqused_k, **opts)
    return (out, lse) if return_attn_probs else out


def flash_attn_func(
    q,
    k,
    v,
    softmax_scale=None,
    causal=False,
    qv=None,
    q_descale=None,
    k_descale=None,
    v_descale=None,
    window_size=(-1, -1),
    attention_chunk=0,
    softcap=0.0,
    num_splits=1,
    pack_gqa=None,
    deterministic=False,
    sm_margin=0,
    return_attn_probs=False,
):
    """Attention over a batch: q (batch, seqlen_q, heads_q, d), k / v (batch, seqlen_k, heads_k, d / d_v).
    Returns out, or (out, softmax_lse) with return_attn_probs=True (lse (batch, heads_q, seqlen_q))."""
    opts = _options(softmax_scale, causal, qv, q_descale, k_descale, v_descale, window_size, attention_chunk,
                    softcap, num_splits, pack_gqa, deterministic, sm_margin, return_attn_probs)
    out, lse = _common.attention(q, k, v, None, None, None, None, None, None, **opts)
    return (out, lse) if return_attn_probs else out
