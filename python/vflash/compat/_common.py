"""What the FlashAttention-3 and -4 call styles share: argument checks and the
mapping of their varlen / batch layouts (with optional seqused_q / seqused_k)
onto vflash's two entry points.

Works on every array type vflash takes (torch, CuPy, numpy) and needs none of
them to import.
"""
from __future__ import annotations

import math
import sys

import vflash

_INT32_MAX = 2**31 - 1


def reject_unless_default(name, value, default, why):
    """ValueError naming `name` when a feature vflash does not serve is asked for."""
    if value is None and default is None:
        return
    if value is not None and default is not None:
        try:
            if value == default:
                return
        except Exception:  # an array compared with a number: not the default
            pass
    raise ValueError(f"{name}: {why}; must be {default!r}, got {_describe(value)}")


def _describe(value):
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    return repr(value)


def check_hint_int(name, value, minimum, allow_none=False):
    """Scheduling hints (num_splits, sm_margin, ...): vflash schedules its own work, but a
    value FlashAttention itself would refuse is still an error."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ValueError(f"{name}: must be an int, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {int(value)}")


def check_hint_bool(name, value, allow_none=True):
    if value is None and allow_none:
        return
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be a bool{' or None' if allow_none else ''}, got {value!r}")


def softmax_scale(value):
    if value is None:
        return None
    scale = float(value)
    if not (math.isfinite(scale) and scale > 0.0):
        raise ValueError(f"softmax_scale: must be a finite number > 0 or None, got {value!r}")
    return scale


def softcap(value):
    cap = 0.0 if value is None else float(value)
    if not (math.isfinite(cap) and cap >= 0.0):
        raise ValueError(f"softcap: must be a finite number >= 0 (0 = off), got {value!r}")
    return cap


def window_pair(window_size):
    try:
        left, right = window_size
    except (TypeError, ValueError):
        raise ValueError(f"window_size: must be a pair (left, right), got {window_size!r}") from None
    return left, right


def _int_or_none(name, side, value):
    if value is None:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"window_size: {side} must be an int or None, got {value!r}")
    value = int(value)
    if value > _INT32_MAX:
        raise ValueError(f"window_size: {side} must be < 2^31, got {value}")
    return value


def fa3_window(window_size):
    """FlashAttention-3: (left, right), a negative side is unbounded."""
    left, right = window_pair(window_size)
    left = _int_or_none("window_size", "left", left)
    right = _int_or_none("window_size", "right", right)
    if left is None or right is None:
        raise ValueError(f"window_size: FlashAttention-3 takes ints (-1 = unbounded), got {window_size!r}")
    return (max(left, -1), max(right, -1))


def fa4_window(window_size, causal):
    """FlashAttention-4: (left, right) with None unbounded; causal sets right to 0; two ints
    adding up to less than 0 mean no window (so (-1, -1) is unbounded as in FA3). A negative
    side next to a non-negative one has no unbounded reading in FA4 and is refused."""
    left, right = window_pair(window_size)
    left = _int_or_none("window_size", "left", left)
    right = _int_or_none("window_size", "right", right)
    if causal:
        right = 0
    if left is not None and right is not None and left + right < 0:
        left = right = None
    for side, value in (("left", left), ("right", right)):
        if value is not None and value < 0:
            raise ValueError(
                f"window_size: {side} is {value} next to a non-negative other side; FlashAttention-4 reads that "
                f"as a shifted band, which vflash does not serve (use None for an unbounded side), got {window_size!r}"
            )
    return (-1 if left is None else left, -1 if right is None else right)


# ---------------------------------------------------------------------------
# Arrays of any framework, without importing one.


def _kind(x):
    root = type(x).__module__.split(".", 1)[0]
    return root if root in ("torch", "cupy", "numpy") else None


def _host_ints(x, name):
    if x is None:
        return None
    if _kind(x) is None:
        raise TypeError(f"{name}: expected a torch.Tensor, cupy.ndarray or numpy.ndarray, got {type(x).__name__}")
    if len(x.shape) != 1:
        raise ValueError(f"{name}: must have 1 dimension, got shape {tuple(x.shape)}")
    return [int(v) for v in x.tolist()]


def _index(like, values, dtype="int64"):
    """An integer array of the framework (and device) of `like`."""
    kind = _kind(like)
    xp = sys.modules[kind]
    if kind == "torch":
        return xp.tensor(values, dtype=getattr(xp, dtype), device=like.device)
    return xp.asarray(values, dtype=getattr(xp, dtype))


def _contiguous(x):
    if _kind(x) == "torch":
        return x.contiguous()
    return sys.modules[_kind(x)].ascontiguousarray(x)


def _full(like, shape, value, dtype=None):
    kind = _kind(like)
    xp = sys.modules[kind]
    if kind == "torch":
        return xp.full(shape, value, dtype=dtype or like.dtype, device=like.device)
    return xp.full(shape, value, dtype=dtype or like.dtype)


def _float32(like):
    return sys.modules[_kind(like)].float32


def _flat_tokens(x, name):
    """(batch, seqlen, heads, d) -> (batch * seqlen, heads, d)."""
    if len(x.shape) != 4:
        raise ValueError(
            f"{name}: without cu_seqlens it must have 4 dimensions (batch, seqlen, heads, head_dim), "
            f"got shape {tuple(x.shape)}"
        )
    return x.reshape(x.shape[0] * x.shape[1], x.shape[2], x.shape[3])


def _segments(x, cu, seqused, side):
    """Per sequence of `side` ('q' or 'k'): (first row in the flattened tokens, rows used)."""
    cu_name, used_name = f"cu_seqlens_{side}", f"seqused_{side}"
    used = _host_ints(seqused, used_name)
    if cu is not None:
        bounds = _host_ints(cu, cu_name)
        if len(bounds) < 2:
            raise ValueError(f"{cu_name}: must have batch + 1 >= 2 entries, got {len(bounds)}")
        starts = bounds[:-1]
        lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        for b, n in enumerate(lengths):
            if n < 0:
                raise ValueError(f"{cu_name}: must be non-decreasing, but entry {b + 1} < entry {b}")
    else:
        batch, seqlen = x.shape[0], x.shape[1]
        starts = [b * seqlen for b in range(batch)]
        lengths = [seqlen] * batch
    if used is not None:
        if len(used) != len(lengths):
            raise ValueError(f"{used_name}: must have one entry per sequence ({len(lengths)}), got {len(used)}")
        for b, (n, room) in enumerate(zip(used, lengths)):
            if not 0 <= n <= room:
                raise ValueError(f"{used_name}[{b}]: must be in [0, {room}] (the sequence's room), got {n}")
        lengths = used
    return starts, lengths


def _rows(starts, lengths):
    return [r for s, n in zip(starts, lengths) for r in range(s, s + n)]


def _prefix(lengths):
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return out


def attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_q, seqused_k,
              scale, causal, window, cap, want_lse):
    """(out, lse or None) in the caller's layout: varlen (cu_seqlens given: (total, heads, d),
    lse (heads, total)) or batch (no cu_seqlens: (batch, seqlen, heads, d), lse (batch, heads,
    seqlen)). Rows past seqused_q are zero, with lse -inf (they see no key)."""
    if (cu_seqlens_q is None) != (cu_seqlens_k is None) and seqused_q is None and seqused_k is None:
        given = "cu_seqlens_q" if cu_seqlens_k is None else "cu_seqlens_k"
        missing = "cu_seqlens_k" if cu_seqlens_k is None else "cu_seqlens_q"
        raise ValueError(f"{missing}: must be given with {given} (or pass seqused_q / seqused_k for a batch side)")
    opts = dict(softmax_scale=scale, causal=causal, window_size=window, softcap=cap, return_lse=want_lse)

    if seqused_q is None and seqused_k is None:
        if cu_seqlens_q is None:  # batch layout: vflash's dense entry point
            result = vflash.flash_attn_func(q, k, v, **opts)
        else:
            if max_seqlen_q is None:
                max_seqlen_q = max(_segments(q, cu_seqlens_q, None, "q")[1])
            if max_seqlen_k is None:
                max_seqlen_k = max(_segments(k, cu_seqlens_k, None, "k")[1])
            result = vflash.flash_attn_varlen_func(
                q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **opts
            )
        return result if want_lse else (result, None)

    # seqused_*: only a prefix of each sequence's room is attended. vflash packs sequences
    # back to back, so the used rows are gathered, attended, and scattered back.
    q_starts, q_lengths = _segments(q, cu_seqlens_q, seqused_q, "q")
    k_starts, k_lengths = _segments(k, cu_seqlens_k, seqused_k, "k")
    if len(q_lengths) != len(k_lengths):
        raise ValueError(
            f"cu_seqlens_k / seqused_k: describe {len(k_lengths)} sequences, but the query side has {len(q_lengths)}"
        )
    qf = q if cu_seqlens_q is not None else _flat_tokens(q, "q")
    kf = k if cu_seqlens_k is not None else _flat_tokens(k, "k")
    vf = v if cu_seqlens_k is not None else _flat_tokens(v, "v")
    q_rows, k_rows = _index(q, _rows(q_starts, q_lengths)), _index(k, _rows(k_starts, k_lengths))
    cu_q, cu_k = _index(q, _prefix(q_lengths), "int32"), _index(q, _prefix(k_lengths), "int32")
    packed = vflash.flash_attn_varlen_func(
        qf[q_rows], kf[k_rows], vf[k_rows], cu_q, cu_k, max(q_lengths, default=0), max(k_lengths, default=0),
        **dict(opts, return_lse=True),
    )
    out_packed, lse_packed = packed
    heads, d_v = qf.shape[1], vf.shape[2]
    out = _full(q, (qf.shape[0], heads, d_v), 0)
    out[q_rows] = out_packed
    lse = None
    if want_lse:
        lse = _full(q, (heads, qf.shape[0]), -math.inf, _float32(q))
        lse[:, q_rows] = lse_packed
    if cu_seqlens_q is None:
        batch, seqlen = q.shape[0], q.shape[1]
        out = out.reshape(batch, seqlen, heads, d_v)
        if lse is not None:
            lse = _contiguous(lse.reshape(heads, batch, seqlen).swapaxes(0, 1))
    return out, lse
