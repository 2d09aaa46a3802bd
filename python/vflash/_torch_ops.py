"""torch custom ops (torch.ops.vflash.*): the path of torch tensors.

Registered with torch.library so that torch.compile (fullgraph) sees one opaque
op with a fake (meta) implementation, and CUDA-graph capture records the launch
on torch's current stream with outputs and workspace from torch's allocator.
Ops that write a caller's `out` are separate ops declaring the mutation.
"""
from __future__ import annotations

import torch

from . import _C

_LSE_DTYPE = torch.float32


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0


def _allocator(t: torch.Tensor):
    return lambda nbytes: torch.empty(nbytes, dtype=torch.uint8, device=t.device)


def _lse(q: torch.Tensor, shape, wanted: bool) -> torch.Tensor:
    # Ops return a fixed number of tensors: an absent LSE is an empty one.
    return q.new_empty(shape if wanted else (0,), dtype=_LSE_DTYPE)


# The library makes the tensors' device current for the launch itself.
def _launch_varlen(q, k, v, cu_q, cu_k, max_q, max_k, out, lse, scale, causal, left, right, softcap):
    _C.varlen_fwd(
        q.detach(), k.detach(), v.detach(), cu_q.detach(), cu_k.detach(), max_q, max_k, out.detach(),
        lse if lse.numel() else None, scale, causal, left, right, softcap, _stream(q), _allocator(q),
    )


def _launch_dense(q, k, v, out, lse, scale, causal, left, right, softcap):
    _C.dense_fwd(
        q.detach(), k.detach(), v.detach(), out.detach(), lse if lse.numel() else None, scale, causal, left, right,
        softcap, _stream(q), _allocator(q),
    )


def _varlen_shapes(q, v):
    return (q.shape[0], q.shape[1], v.shape[2]), (q.shape[1], q.shape[0])


def _dense_shapes(q, v):
    return (q.shape[0], q.shape[1], q.shape[2], v.shape[3]), (q.shape[0], q.shape[2], q.shape[1])


@torch.library.custom_op("vflash::varlen_fwd", mutates_args=())
def varlen_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, causal: bool, window_left: int,
    window_right: int, softcap: float, return_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    out_shape, lse_shape = _varlen_shapes(q, v)
    out = q.new_empty(out_shape)
    lse = _lse(q, lse_shape, return_lse)
    _launch_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, out, lse, softmax_scale,
                   causal, window_left, window_right, softcap)
    return out, lse


@varlen_fwd.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left,
      window_right, softcap, return_lse):
    out_shape, lse_shape = _varlen_shapes(q, v)
    return q.new_empty(out_shape), _lse(q, lse_shape, return_lse)


@torch.library.custom_op("vflash::varlen_fwd_out", mutates_args=("out",))
def varlen_fwd_out(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, causal: bool, window_left: int,
    window_right: int, softcap: float, return_lse: bool, out: torch.Tensor,
) -> torch.Tensor:
    lse = _lse(q, _varlen_shapes(q, v)[1], return_lse)
    _launch_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, out, lse, softmax_scale,
                   causal, window_left, window_right, softcap)
    return lse


@varlen_fwd_out.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left,
      window_right, softcap, return_lse, out):
    return _lse(q, _varlen_shapes(q, v)[1], return_lse)


@torch.library.custom_op("vflash::dense_fwd", mutates_args=())
def dense_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float, causal: bool, window_left: int,
    window_right: int, softcap: float, return_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    out_shape, lse_shape = _dense_shapes(q, v)
    out = q.new_empty(out_shape)
    lse = _lse(q, lse_shape, return_lse)
    _launch_dense(q, k, v, out, lse, softmax_scale, causal, window_left, window_right, softcap)
    return out, lse


@dense_fwd.register_fake
def _(q, k, v, softmax_scale, causal, window_left, window_right, softcap, return_lse):
    out_shape, lse_shape = _dense_shapes(q, v)
    return q.new_empty(out_shape), _lse(q, lse_shape, return_lse)


@torch.library.custom_op("vflash::dense_fwd_out", mutates_args=("out",))
def dense_fwd_out(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float, causal: bool, window_left: int,
    window_right: int, softcap: float, return_lse: bool, out: torch.Tensor,
) -> torch.Tensor:
    lse = _lse(q, _dense_shapes(q, v)[1], return_lse)
    _launch_dense(q, k, v, out, lse, softmax_scale, causal, window_left, window_right, softcap)
    return lse


@dense_fwd_out.register_fake
def _(q, k, v, softmax_scale, causal, window_left, window_right, softcap, return_lse, out):
    return _lse(q, _dense_shapes(q, v)[1], return_lse)


# Calls go to the registered operators (OpOverload): their dispatch is several
# times cheaper than calling the CustomOpDef objects above.
_VARLEN = torch.ops.vflash.varlen_fwd.default
_VARLEN_OUT = torch.ops.vflash.varlen_fwd_out.default
_DENSE = torch.ops.vflash.dense_fwd.default
_DENSE_OUT = torch.ops.vflash.dense_fwd_out.default


def varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, want_lse, out):
    """(out, lse or None) through the custom ops."""
    if out is None:
        out, lse = _VARLEN(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, want_lse)
    else:
        lse = _VARLEN_OUT(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, want_lse, out)
    return out, lse if want_lse else None


def dense(q, k, v, scale, causal, left, right, softcap, want_lse, out):
    if out is None:
        out, lse = _DENSE(q, k, v, scale, causal, left, right, softcap, want_lse)
    else:
        lse = _DENSE_OUT(q, k, v, scale, causal, left, right, softcap, want_lse, out)
    return out, lse if want_lse else None
