"""FlashAttention-4's call style (``flash_attn.cute``) over vflash.

    from vflash.compat.fa4 import flash_attn_varlen_func   # was: from flash_attn.cute import ...

Same parameter names, order and defaults; the same return: always the pair ``(out, lse)``,
``lse`` None unless ``return_lse=True`` (float32, ``(heads_q, total_q)`` varlen,
``(batch, heads_q, seqlen_q)`` batch). Arrays of every type vflash takes (torch, CuPy,
numpy on the CPU reference).

Served: softmax_scale, causal (bottom-right), window_size with FA4's reading (None = unbounded,
causal sets right to 0, two ints adding up to < 0 = no window), softcap (None = 0), GQA/MQA,
cu_seqlens_* or the batch layout, max_seqlen_* None (computed from cu_seqlens: a GPU sync),
seqused_q / seqused_k (rows past seqused_q come back zero, lse -inf; the call synchronises a
GPU). Scheduling hints are checked and otherwise left to vflash's dispatch: num_splits,
pack_gqa, deterministic, min_seqlen_k, scheduler_metadata, seqlen_k_per_split,
disable_scheduler_metadata.
Refused with a ValueError naming the argument: qv, gather_kv_indices, page_table,
learnable_sink, score_mod / score_mod_bwd / mask_mod / aux_tensors / aux_scalars,
block_sparse_tensors (and block_sparse_tensors_bwd), a window side < 0 next to a side >= 0.
"""
from __future__ import annotations

from . import _common

__all__ = ["flash_attn_varlen_func", "flash_attn_func"]

_UNSERVED = {
    "qv": "the extra query-value term (MLA absorption) is not served by vflash",
    "gather_kv_indices": "top-k sparse key gathering is not served by vflash",
    "page_table": "paged KV caches are not served by vflash",
    "learnable_sink": "attention sinks are not served by vflash",
    "score_mod": "score modifiers are not served by vflash",
    "score_mod_bwd": "score modifiers are not served by vflash",
    "mask_mod": "mask modifiers are not served by vflash (causal / window_size are)",
    "aux_tensors": "score / mask modifiers' inputs are not served by vflash",
    "aux_scalars": "score / mask modifiers' inputs are not served by vflash",
    "block_sparse_tensors": "block-sparse attention is not served by vflash",
    "block_sparse_tensors_bwd": "block-sparse attention is not served by vflash",
}


def _options(unserved, softmax_scale, causal, window_size, softcap, num_splits, pack_gqa, deterministic,
             return_lse):
    for name, value in unserved.items():
        _common.reject_unless_default(name, value, None, _UNSERVED[name])
    _common.check_hint_int("num_splits", num_splits, minimum=-(2**31))
    _common.check_hint_bool("pack_gqa", pack_gqa)
    _common.check_hint_bool("deterministic", deterministic, allow_none=False)
    _common.check_hint_bool("return_lse", return_lse, allow_none=False)
    causal = bool(causal)
    return dict(
        scale=_common.softmax_scale(softmax_scale),
        causal=causal,
        window=_common.fa4_window(window_size, causal),
        cap=_common.softcap(softcap),
        want_lse=return_lse,
    )


def flash_attn_varlen_func(
    q,
    k,
    v,
    qv=None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
    max_seqlen_q=None,
    max_seqlen_k=None,
    min_seqlen_k=None,
    seqused_q=None,
    seqused_k=None,
    gather_kv_indices=None,
    page_table=None,
    softmax_scale=None,
    causal=False,
    window_size=(None, None),
    learnable_sink=None,
    softcap=0.0,
    num_splits=1,
    pack_gqa=None,
    deterministic=False,
    score_mod=None,
    score_mod_bwd=None,
    mask_mod=None,
    block_sparse_tensors=None,
    aux_tensors=None,
    aux_scalars=None,
    return_lse=False,
    scheduler_metadata=None,
    seqlen_k_per_split=None,
    disable_scheduler_metadata=False,
):
    """Packed variable-length attention, FlashAttention-4's signature.

    q (total_q, heads_q, d) with cu_seqlens_q, or (batch, seqlen_q, heads_q, d) without; k / v
    likewise with cu_seqlens_k. Returns (out, lse): lse None unless return_lse=True.
    """
    unserved = dict(qv=qv, gather_kv_indices=gather_kv_indices, page_table=page_table,
                    learnable_sink=learnable_sink, score_mod=score_mod, score_mod_bwd=score_mod_bwd,
                    mask_mod=mask_mod, block_sparse_tensors=block_sparse_tensors, aux_tensors=aux_tensors,
                    aux_scalars=aux_scalars)
    opts = _options(unserved, softmax_scale, causal, window_size, softcap, num_splits, pack_gqa, deterministic,
                    return_lse)
    _common.check_hint_int("min_seqlen_k", min_seqlen_k, minimum=0, allow_none=True)
    _common.check_hint_int("seqlen_k_per_split", seqlen_k_per_split, minimum=1, allow_none=True)
    _common.check_hint_bool("disable_scheduler_metadata", disable_scheduler_metadata, allow_none=False)
    return _common.attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_q,
                             seqused_k, **opts)


def flash_attn_func(
    q,
    k,
    v,
    qv=None,
    gather_kv_indices=None,
    softmax_scale=None,
    causal=False,
    window_size=(None, None),
    learnable_sink=None,
    softcap=0.0,
    num_splits=1,
    pack_gqa=None,
    deterministic=False,
    score_mod=None,
    score_mod_bwd=None,
    mask_mod=None,
    aux_tensors=None,
    aux_scalars=None,
    block_sparse_tensors=None,
    block_sparse_tensors_bwd=None,
    return_lse=False,
):
    """Attention over a batch: q (batch, seqlen_q, heads_q, d), k / v (batch, seqlen_k, heads_k, d / d_v).
    Returns (out, lse): lse (batch, heads_q, seqlen_q) with return_lse=True, else None."""
    unserved = dict(qv=qv, gather_kv_indices=gather_kv_indices, learnable_sink=learnable_sink,
                    score_mod=score_mod, score_mod_bwd=score_mod_bwd, mask_mod=mask_mod, aux_tensors=aux_tensors,
                    aux_scalars=aux_scalars, block_sparse_tensors=block_sparse_tensors,
                    block_sparse_tensors_bwd=block_sparse_tensors_bwd)
    opts = _options(unserved, softmax_scale, causal, window_size, softcap, num_splits, pack_gqa, deterministic,
                    return_lse)
    return _common.attention(q, k, v, None, None, None, None, None, None, **opts)
