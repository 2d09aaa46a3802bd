"""torch custom ops (torch.ops.vflash.*): the path of torch tensors.

Registered with torch.library so that torch.compile (fullgraph) sees one opaque
op with a fake (meta) implementation, and CUDA-graph capture records the launch
on torch's current stream with outputs and workspace from torch's allocator.
Ops that write a caller's `out` are separate ops declaring the mutation.
The forward functions are differentiable: torch.autograd.Function classes run
the forward op (with the LSE the backward needs) and the backward op
vflash::varlen_bwd, which has a fake implementation too.
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


# Varlen rows past cu_seqlens_q[-1] belong to no sequence. In tensors vflash
# allocates they read as rows that see no key (out 0, lse -inf): the library
# writes them on the device (zero_rows_past_end), where it knows where they
# start without a host synchronisation. A caller's `out` keeps its contents
# there; the LSE vflash allocates beside it starts as -inf.
def _varlen_lse_filled(q: torch.Tensor, shape, wanted: bool) -> torch.Tensor:
    return q.new_full(shape, float("-inf"), dtype=_LSE_DTYPE) if wanted else _lse(q, shape, False)


# Tensors go to the extension as DLPack capsules from torch's C exporter:
# Tensor.__dlpack__ (what the extension would call otherwise) costs several
# times more per tensor, and a call passes five to seven.
_to_dlpack = torch.utils.dlpack.to_dlpack


def _dl(t):
    return _to_dlpack(t.detach())


def _dl_lse(lse):
    return _to_dlpack(lse) if lse.numel() else None


# The library makes the tensors' device current for the launch itself.
def _launch_varlen(q, k, v, cu_q, cu_k, max_q, max_k, out, lse, scale, causal, left, right, softcap, zero_rest):
    _C.varlen_fwd(
        _dl(q), _dl(k), _dl(v), _dl(cu_q), _dl(cu_k), max_q, max_k, _dl(out), _dl_lse(lse), scale, causal, left,
        right, softcap, _stream(q), _allocator(q), zero_rest,
    )


def _launch_dense(q, k, v, out, lse, scale, causal, left, right, softcap):
    _C.dense_fwd(
        _dl(q), _dl(k), _dl(v), _dl(out), _dl_lse(lse), scale, causal, left, right, softcap, _stream(q),
        _allocator(q),
    )


def _varlen_shapes(q, v):
    return (q.shape[0], q.shape[1], v.shape[2]), (q.shape[1], q.shape[0])


def _dense_shapes(q, v):
    return (q.shape[0], q.shape[1], q.shape[2], v.shape[3]), (q.shape[0], q.shape[2], q.shape[1])


def _varlen_new(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, want_lse):
    out_shape, lse_shape = _varlen_shapes(q, v)
    out = q.new_empty(out_shape)
    lse = _lse(q, lse_shape, want_lse)
    _launch_varlen(q, k, v, cu_q, cu_k, max_q, max_k, out, lse, scale, causal, left, right, softcap, True)
    return out, lse


def _varlen_into(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, want_lse, out):
    lse = _varlen_lse_filled(q, _varlen_shapes(q, v)[1], want_lse)
    _launch_varlen(q, k, v, cu_q, cu_k, max_q, max_k, out, lse, scale, causal, left, right, softcap, False)
    return lse


def _dense_new(q, k, v, scale, causal, left, right, softcap, want_lse):
    out_shape, lse_shape = _dense_shapes(q, v)
    out = q.new_empty(out_shape)
    lse = _lse(q, lse_shape, want_lse)
    _launch_dense(q, k, v, out, lse, scale, causal, left, right, softcap)
    return out, lse


def _dense_into(q, k, v, scale, causal, left, right, softcap, want_lse, out):
    lse = _lse(q, _dense_shapes(q, v)[1], want_lse)
    _launch_dense(q, k, v, out, lse, scale, causal, left, right, softcap)
    return lse


@torch.library.custom_op("vflash::varlen_fwd", mutates_args=())
def varlen_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, causal: bool, window_left: int,
    window_right: int, softcap: float, return_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _varlen_new(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                       window_left, window_right, softcap, return_lse)


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
    return _varlen_into(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                        window_left, window_right, softcap, return_lse, out)


@varlen_fwd_out.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left,
      window_right, softcap, return_lse, out):
    return _lse(q, _varlen_shapes(q, v)[1], return_lse)


@torch.library.custom_op("vflash::dense_fwd", mutates_args=())
def dense_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float, causal: bool, window_left: int,
    window_right: int, softcap: float, return_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _dense_new(q, k, v, softmax_scale, causal, window_left, window_right, softcap, return_lse)


@dense_fwd.register_fake
def _(q, k, v, softmax_scale, causal, window_left, window_right, softcap, return_lse):
    out_shape, lse_shape = _dense_shapes(q, v)
    return q.new_empty(out_shape), _lse(q, lse_shape, return_lse)


@torch.library.custom_op("vflash::dense_fwd_out", mutates_args=("out",))
def dense_fwd_out(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float, causal: bool, window_left: int,
    window_right: int, softcap: float, return_lse: bool, out: torch.Tensor,
) -> torch.Tensor:
    return _dense_into(q, k, v, softmax_scale, causal, window_left, window_right, softcap, return_lse, out)


@dense_fwd_out.register_fake
def _(q, k, v, softmax_scale, causal, window_left, window_right, softcap, return_lse, out):
    return _lse(q, _dense_shapes(q, v)[1], return_lse)


def _varlen_bwd_new(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap,
                    deterministic):
    dq, dk, dv = q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
    _C.varlen_bwd(
        _dl(dout), _dl(q), _dl(k), _dl(v), _dl(out), _dl(lse), _dl(cu_q), _dl(cu_k), max_q, max_k, _dl(dq), _dl(dk),
        _dl(dv), scale, causal, left, right, softcap, deterministic, _stream(q), _allocator(q),
    )
    return dq, dk, dv


@torch.library.custom_op("vflash::varlen_bwd", mutates_args=())
def varlen_bwd(
    dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
    cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int,
    softmax_scale: float, causal: bool, window_left: int, window_right: int, softcap: float, deterministic: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _varlen_bwd_new(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                           softmax_scale, causal, window_left, window_right, softcap, deterministic)


@varlen_bwd.register_fake
def _(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
      window_left, window_right, softcap, deterministic):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


# Calls go to the registered operators (OpOverload): their dispatch is several
# times cheaper than calling the CustomOpDef objects above.
_VARLEN = torch.ops.vflash.varlen_fwd.default
_VARLEN_OUT = torch.ops.vflash.varlen_fwd_out.default
_DENSE = torch.ops.vflash.dense_fwd.default
_DENSE_OUT = torch.ops.vflash.dense_fwd_out.default
_VARLEN_BWD = torch.ops.vflash.varlen_bwd.default


class _VarlenAttention(torch.autograd.Function):
    """out, lse = attention(q, k, v); gradients for q, k, v (lse is not differentiable)."""

    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, deterministic):
        out, lse = _VARLEN(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, True)
        ctx.save_for_backward(q, k, v, cu_q, cu_k, out, lse)
        ctx.options = (max_q, max_k, scale, causal, left, right, softcap, deterministic)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, cu_q, cu_k, out, lse = ctx.saved_tensors
        # Upstream gradients may be expanded views (stride 0): the library takes dense rows.
        dq, dk, dv = _VARLEN_BWD(dout.contiguous(), q, k, v, out, lse, cu_q, cu_k, *ctx.options)
        return dq, dk, dv, *([None] * 10)


class _DenseAttention(torch.autograd.Function):
    """Dense attention whose backward runs the varlen backward on the batch
    flattened into equal-length sequences."""

    @staticmethod
    def forward(ctx, q, k, v, scale, causal, left, right, softcap, deterministic):
        out, lse = _DENSE(q, k, v, scale, causal, left, right, softcap, True)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.options = (scale, causal, left, right, softcap, deterministic)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        batch, seqlen_q, heads_q, _ = q.shape
        seqlen_k = k.shape[1]

        def packed(t):
            return t.reshape(t.shape[0] * t.shape[1], t.shape[2], t.shape[3])

        def starts(seqlen):
            return torch.arange(0, (batch + 1) * seqlen, seqlen, dtype=torch.int32, device=q.device)

        # lse (batch, heads_q, seqlen_q) -> (heads_q, batch * seqlen_q), the varlen layout.
        lse_packed = lse.permute(1, 0, 2).reshape(heads_q, batch * seqlen_q)
        dq, dk, dv = _VARLEN_BWD(
            packed(dout.contiguous()), packed(q), packed(k), packed(v), packed(out), lse_packed, starts(seqlen_q),
            starts(seqlen_k), seqlen_q, seqlen_k, *ctx.options,
        )
        return dq.view(q.shape), dk.view(k.shape), dv.view(v.shape), *([None] * 6)


def _needs_grad(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _eager(*tensors):
    """Whether a call may run the ops' implementation directly: eager (torch.compile is not
    tracing it) with no autograd involved. The registered ops add tens of microseconds of
    dispatch per call, which short calls (64-token windows: ~0.1 ms) cannot hide."""
    if torch.compiler.is_compiling():
        return False
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


def _call(new, into, op, op_out, args, out, want_lse):
    """(out, lse or None): the registered op, or its implementation when eager; the `*_out`
    variant when the caller gives `out`. args start with q, k, v."""
    eager = _eager(*args[:3], out)
    if out is None:
        out, lse = new(*args) if eager else op(*args)
    else:
        lse = into(*args, out) if eager else op_out(*args, out)
    return out, lse if want_lse else None


def _no_out_with_grad(out):
    if out is not None:
        raise ValueError(
            "out: a caller's out cannot take part in autograd (q, k or v requires grad); pass out=None"
        )


def varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, want_lse, out,
           deterministic=False):
    if _needs_grad(q, k, v):
        _no_out_with_grad(out)
        out, lse = _VarlenAttention.apply(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap,
                                          deterministic)
        return out, lse if want_lse else None
    args = (q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, want_lse)
    return _call(_varlen_new, _varlen_into, _VARLEN, _VARLEN_OUT, args, out, want_lse)


def dense(q, k, v, scale, causal, left, right, softcap, want_lse, out, deterministic=False):
    if _needs_grad(q, k, v):
        _no_out_with_grad(out)
        out, lse = _DenseAttention.apply(q, k, v, scale, causal, left, right, softcap, deterministic)
        return out, lse if want_lse else None
    args = (q, k, v, scale, causal, left, right, softcap, want_lse)
    return _call(_dense_new, _dense_into, _DENSE, _DENSE_OUT, args, out, want_lse)


def varlen_backward(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap,
                    deterministic):
    """(dq, dk, dv) through the registered backward op (its implementation when eager)."""
    args = (dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, causal, left, right, softcap, deterministic)
    if torch.compiler.is_compiling():
        return _VARLEN_BWD(*args)
    return _varlen_bwd_new(*args)
