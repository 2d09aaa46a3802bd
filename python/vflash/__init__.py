"""vflash: variable-length (packed) FlashAttention, forward and backward.

Drop-in for FlashAttention's entry points::

    from vflash import flash_attn_varlen_func   # instead of: from flash_attn import ...

The torch functions are differentiable (torch.autograd); every array type has
the explicit backward flash_attn_varlen_bwd.

Arrays may be torch tensors (run on torch's current stream, outputs and
workspace allocated by torch, through the custom op ``torch.ops.vflash``),
CuPy arrays (CuPy's current stream and allocator) or numpy arrays (the CPU
reference, float64 accumulation). Invalid arguments raise ValueError, dtype
problems TypeError, CUDA failures RuntimeError, each with the library's message
naming the argument and the rule.
"""
# Standard modules under private names: `import vflash` exposes only __all__.
import json as _json
import math as _math
import operator as _operator
import sys as _sys

from . import _C

try:  # torch is optional; when present its tensors take the custom-op path
    import torch as _torch
except ImportError:  # pragma: no cover - depends on the environment
    _torch = None
else:
    from . import _torch_ops

__version__ = _C.version()

__all__ = [
    "flash_attn_varlen_func",
    "flash_attn_func",
    "flash_attn_varlen_bwd",
    "varlen_kernel_name",
    "kernel_name",
    "doctor",
    "force_kernel",
    "pretend_capability",
]

_INT32_MAX = 2**31 - 1


def _options(dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, block_table=None):
    """Check the scalar arguments; returns (scale, causal, left, right, softcap) for the C ABI."""
    if dropout_p != 0.0:
        raise ValueError(f"dropout_p: dropout is not supported by vflash; must be 0.0, got {dropout_p!r}")
    if alibi_slopes is not None:
        raise ValueError("alibi_slopes: ALiBi is not supported by vflash; must be None")
    if block_table is not None:
        raise ValueError("block_table: paged KV caches are not supported by vflash; must be None")
    if softmax_scale is None:
        scale = 0.0  # the library's default: 1/sqrt(head_dim)
    else:
        scale = float(softmax_scale)
        if not (_math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"softmax_scale: must be a finite number > 0 or None, got {softmax_scale!r}")
    try:
        left, right = window_size
        left, right = _exact_int(left), _exact_int(right)
    except (TypeError, ValueError):
        raise ValueError(
            f"window_size: must be a pair (left, right) of ints, -1 = unbounded, got {window_size!r}"
        ) from None
    for side, value in (("left", left), ("right", right)):
        if not -1 <= value <= _INT32_MAX:
            raise ValueError(f"window_size: {side} must be -1 (unbounded) or in [0, 2^31), got {value}")
    softcap = float(softcap)
    return scale, bool(causal), left, right, softcap


def _exact_int(value):
    """value as an int, for ints and integer scalars (numpy, torch) only: int() would
    truncate a float (3.7 -> 3) and turn a bool into 0 / 1, silently."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an int here")
    return _operator.index(value)


def _seqlen(value, name):
    try:
        n = _exact_int(value)
    except TypeError:
        raise ValueError(
            f"{name}: must be an int (an integer, not truncated), got {type(value).__name__} {value!r}"
        ) from None
    if not 0 <= n <= _INT32_MAX:
        raise ValueError(f"{name}: must be in [0, 2^31), got {n}")
    return n


def _check_numpy_arrays(arrays):
    """numpy arrays DLPack cannot carry, named here rather than by the binding's
    generic refusal: non-native byte order (DLPack has none), a read-only `out`."""
    for name, array in arrays.items():
        if array is None:
            continue
        if not array.dtype.isnative:
            raise TypeError(
                f"{name}: must be in the machine's byte order, got dtype {array.dtype.str!r}; convert it with "
                f"{name}.astype({name}.dtype.newbyteorder('='))"
            )
        if name == "out" and not array.flags.writeable:
            raise ValueError("out: must be writable (vflash writes the result into it), got a read-only array")


def _check_ndim(array, name, ndim, layout):
    if len(array.shape) != ndim:
        raise ValueError(f"{name}: must have {ndim} dimensions {layout}, got shape {tuple(array.shape)}")


def _framework(q, arrays):
    """'torch', 'cupy' or 'numpy': the framework of q; every other array must match it."""
    if _torch is not None and isinstance(q, _torch.Tensor):
        kind = "torch"
    else:
        root = type(q).__module__.split(".", 1)[0]
        if root not in ("cupy", "numpy"):
            raise TypeError(f"q: expected a torch.Tensor, cupy.ndarray or numpy.ndarray, got {type(q).__name__}")
        kind = root
    for name, array in arrays.items():
        if array is None:
            continue
        if kind == "torch":
            same = isinstance(array, _torch.Tensor)
        else:
            same = type(array).__module__.split(".", 1)[0] == kind
        if not same:
            raise TypeError(f"{name}: must be a {kind} array like q, got {type(array).__name__}")
    if kind == "numpy":
        _check_numpy_arrays(dict(q=q, **arrays))
    return kind


class _ArrayBackend:
    """Output, workspace and stream for CuPy and numpy arrays."""

    def __init__(self, kind):
        self.xp = _sys.modules[kind]
        self.is_cupy = kind == "cupy"

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        return self.xp.full(shape, value, dtype=dtype)

    def stream(self):
        return self.xp.cuda.get_current_stream().ptr if self.is_cupy else 0

    def allocate(self, nbytes):
        return self.xp.empty(nbytes, dtype=self.xp.uint8)


def _result(out, lse, return_lse, return_attn_probs):
    # FlashAttention-2 returns (out, softmax_lse, S_dmask) for return_attn_probs;
    # without dropout there is no S_dmask to give.
    if return_attn_probs:
        return out, lse, None
    if return_lse:
        return out, lse
    return out


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    block_table=None,
    *,
    return_lse=False,
    out=None,
):
    """Attention over packed variable-length sequences (FlashAttention's varlen layout).

    q: (total_q, heads_q, d); k: (total_k, heads_k, d); v: (total_k, heads_k, d_v);
    cu_seqlens_q / cu_seqlens_k: int32 (batch + 1,) prefix sums of the sequence
    lengths, starting at 0; max_seqlen_q / max_seqlen_k: ints bounding the sequence
    lengths from above (the longest sequence, or any larger value).
    softmax_scale defaults to 1/sqrt(d); causal masking is aligned bottom-right;
    window_size = (left, right) keys around the diagonal, -1 = unbounded;
    softcap > 0 applies softcap * tanh(s / softcap) to the scores;
    heads_q % heads_k == 0 (GQA / MQA).

    Returns out (total_q, heads_q, d_v) of q's dtype; with return_lse=True
    (out, lse) where lse is float32 (heads_q, total_q), -inf for rows that see no
    key (FlashAttention gives +inf there); with FlashAttention-2's
    return_attn_probs=True (out, lse, None). `out`, when given, is written and
    returned; rows past cu_seqlens_q[-1] are left as they are in it, and are zeros
    (lse -inf) in an out vflash allocates. dropout_p must be 0, alibi_slopes and block_table None.
    torch tensors that require grad make the call differentiable (q, k, v; lse is not);
    deterministic=True makes that backward bit-identical run to run (the forward always is).
    A caller's `out` cannot be combined with autograd.
    """
    scale, causal, left, right, softcap = _options(
        dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, block_table
    )
    max_seqlen_q = _seqlen(max_seqlen_q, "max_seqlen_q")
    max_seqlen_k = _seqlen(max_seqlen_k, "max_seqlen_k")
    kind = _framework(q, dict(k=k, v=v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, out=out))
    layout = "(total_tokens, heads, head_dim)"
    _check_ndim(q, "q", 3, layout)
    _check_ndim(v, "v", 3, layout)
    want_lse = bool(return_lse or return_attn_probs)
    if kind == "torch":
        out, lse = _torch_ops.varlen(
            q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, scale, causal, left, right,
            softcap, want_lse, out, bool(deterministic),
        )
        return _result(out, lse, return_lse, return_attn_probs)

    backend = _ArrayBackend(kind)
    total_q, heads_q = q.shape[0], q.shape[1]
    # Rows past cu_seqlens_q[-1] belong to no sequence: in arrays vflash
    # allocates the library writes them as rows that see no key (zeros, lse
    # -inf; zero_rows_past_end); a caller's `out` keeps its contents there
    # (FlashAttention's rule) and the LSE beside it starts as -inf.
    zero_rest = out is None
    if zero_rest:
        out = backend.empty((total_q, heads_q, v.shape[2]), q.dtype)
        lse = backend.empty((heads_q, total_q), backend.xp.float32) if want_lse else None
    else:
        lse = backend.full((heads_q, total_q), -_math.inf, backend.xp.float32) if want_lse else None
    _C.varlen_fwd(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, out, lse, scale, causal, left, right,
        softcap, backend.stream(), backend.allocate, zero_rest,
    )
    return _result(out, lse, return_lse, return_attn_probs)


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    *,
    return_lse=False,
    out=None,
):
    """Attention over a dense batch: q (batch, seqlen_q, heads_q, d), k (batch, seqlen_k, heads_k, d),
    v (batch, seqlen_k, heads_k, d_v). Options and returns as flash_attn_varlen_func;
    lse is float32 (batch, heads_q, seqlen_q)."""
    scale, causal, left, right, softcap = _options(dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes)
    kind = _framework(q, dict(k=k, v=v, out=out))
    layout = "(batch, seqlen, heads, head_dim)"
    _check_ndim(q, "q", 4, layout)
    _check_ndim(v, "v", 4, layout)
    want_lse = bool(return_lse or return_attn_probs)
    if kind == "torch":
        out, lse = _torch_ops.dense(q, k, v, scale, causal, left, right, softcap, want_lse, out, bool(deterministic))
        return _result(out, lse, return_lse, return_attn_probs)

    backend = _ArrayBackend(kind)
    batch, seqlen_q, heads_q = q.shape[0], q.shape[1], q.shape[2]
    if out is None:
        out = backend.empty((batch, seqlen_q, heads_q, v.shape[3]), q.dtype)
    lse = backend.empty((batch, heads_q, seqlen_q), backend.xp.float32) if want_lse else None
    _C.dense_fwd(q, k, v, out, lse, scale, causal, left, right, softcap, backend.stream(), backend.allocate)
    return _result(out, lse, return_lse, return_attn_probs)


def flash_attn_varlen_bwd(
    dout,
    q,
    k,
    v,
    out,
    lse,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    deterministic=False,
):
    """Gradients (dq, dk, dv) of flash_attn_varlen_func for the upstream gradient dout.

    q, k, v, cu_seqlens_*, max_seqlen_* and the options are the forward call's; out and
    lse are what it returned (lse as with return_lse=True: float32 (heads_q, total_q)).
    dout has out's shape and dtype. Returns dq, dk, dv shaped and typed as q, k, v:
    dk and dv of a KV head sum the query heads of its group (GQA / MQA); rows past the
    last sequence and query rows that see no key get zeros. deterministic=True makes the
    GPU result bit-identical run to run (the CPU reference always is). Arrays may be
    torch tensors, CuPy or numpy arrays, as for the forward.
    """
    scale, causal, left, right, softcap = _options(0.0, softmax_scale, causal, window_size, softcap, None)
    max_seqlen_q = _seqlen(max_seqlen_q, "max_seqlen_q")
    max_seqlen_k = _seqlen(max_seqlen_k, "max_seqlen_k")
    kind = _framework(
        q, dict(dout=dout, k=k, v=v, out=out, lse=lse, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    )
    layout = "(total_tokens, heads, head_dim)"
    for name, array in (("dout", dout), ("q", q), ("k", k), ("v", v), ("out", out)):
        _check_ndim(array, name, 3, layout)
    if kind == "torch":
        inputs = [t.detach() for t in (dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k)]
        return _torch_ops.varlen_backward(
            *inputs, max_seqlen_q, max_seqlen_k, scale, causal, left, right, softcap, bool(deterministic)
        )
    backend = _ArrayBackend(kind)
    dq = backend.empty(q.shape, q.dtype)
    dk = backend.empty(k.shape, k.dtype)
    dv = backend.empty(v.shape, v.dtype)
    _C.varlen_bwd(
        dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dq, dk, dv, scale, causal,
        left, right, softcap, bool(deterministic), backend.stream(), backend.allocate,
    )
    return dq, dk, dv


def _kernel_query(kind, inputs, out_shape, lse_shape, return_lse):
    """The inputs (q first; detached for torch), then an out and an lse (None unless return_lse) of
    these shapes: validation wants the outputs described too (dispatch looks at whether LSE is written)."""
    if kind == "torch":
        inputs = [t.detach() for t in inputs]
        out = inputs[0].new_empty(out_shape)
        lse = inputs[0].new_empty(lse_shape, dtype=_torch.float32) if return_lse else None
    else:
        backend = _ArrayBackend(kind)
        out = backend.empty(out_shape, inputs[0].dtype)
        lse = backend.empty(lse_shape, backend.xp.float32) if return_lse else None
    return (*inputs, out, lse)


def varlen_kernel_name(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale=None, causal=False,
    window_size=(-1, -1), softcap=0.0, return_lse=False,
):
    """Name of the kernel flash_attn_varlen_func would run for these arguments."""
    scale, causal, left, right, softcap = _options(0.0, softmax_scale, causal, window_size, softcap, None)
    kind = _framework(q, dict(k=k, v=v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k))
    _check_ndim(q, "q", 3, "(total_tokens, heads, head_dim)")
    _check_ndim(v, "v", 3, "(total_tokens, heads, head_dim)")
    out_shape, lse_shape = (q.shape[0], q.shape[1], v.shape[2]), (q.shape[1], q.shape[0])
    q, k, v, cu_seqlens_q, cu_seqlens_k, out, lse = _kernel_query(
        kind, (q, k, v, cu_seqlens_q, cu_seqlens_k), out_shape, lse_shape, return_lse
    )
    return _C.varlen_kernel_name(
        q, k, v, cu_seqlens_q, cu_seqlens_k, _seqlen(max_seqlen_q, "max_seqlen_q"),
        _seqlen(max_seqlen_k, "max_seqlen_k"), out, lse, scale, causal, left, right, softcap,
    )


def kernel_name(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, return_lse=False):
    """Name of the kernel flash_attn_func would run for these arguments."""
    scale, causal, left, right, softcap = _options(0.0, softmax_scale, causal, window_size, softcap, None)
    kind = _framework(q, dict(k=k, v=v))
    _check_ndim(q, "q", 4, "(batch, seqlen, heads, head_dim)")
    _check_ndim(v, "v", 4, "(batch, seqlen, heads, head_dim)")
    batch, seqlen_q, heads_q = q.shape[0], q.shape[1], q.shape[2]
    out_shape, lse_shape = (batch, seqlen_q, heads_q, v.shape[3]), (batch, heads_q, seqlen_q)
    q, k, v, out, lse = _kernel_query(kind, (q, k, v), out_shape, lse_shape, return_lse)
    return _C.dense_kernel_name(q, k, v, out, lse, scale, causal, left, right, softcap)


def doctor():
    """The `vflash doctor --json` report as a dict: device, targets, dispatch decisions."""
    return _json.loads(_C.doctor_json())


def force_kernel(name):
    """Make dispatch consider only kernel `name` (None restores normal dispatch)."""
    _C.force_kernel(name)


def pretend_capability(capability):
    """Make dispatch decide as if the GPU had `capability` ("10.3", "sm_121"; None clears)."""
    _C.pretend_capability(capability)
