"""Float32 torch attention per sequence, the reference of the GPU tests in torch
(vflash's and FlashAttention's mask conventions: bottom-right aligned; query i
of a sequence sees keys [i + Lk - Lq - left, i + Lk - Lq + right], a negative
side unbounded, causal = right 0)."""
import math

import torch


def spans_of_cu(cu_q, cu_k):
    """(start, length) per sequence of two cu_seqlens tensors."""
    cu_q, cu_k = cu_q.tolist(), cu_k.tolist()
    return ([(cu_q[b], cu_q[b + 1] - cu_q[b]) for b in range(len(cu_q) - 1)],
            [(cu_k[b], cu_k[b + 1] - cu_k[b]) for b in range(len(cu_k) - 1)])


def attention(q, k, v, spans_q, spans_k, scale=None, causal=False, window=(-1, -1), softcap=0.0):
    """Packed q (total_q, heads_q, d), k/v (total_k, heads_k, d / d_v); spans_*: (start, length)
    per sequence -> out (total_q, heads_q, d_v), lse (heads_q, total_q), -inf and 0 for rows
    that see no key (and rows of no sequence)."""
    q, k, v = q.float(), k.float(), v.float()
    total_q, heads_q, d = q.shape
    group = heads_q // k.shape[1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = torch.zeros(total_q, heads_q, v.shape[2], device=q.device)
    lse = torch.full((heads_q, total_q), -math.inf, device=q.device)
    left, right = window
    if causal:
        right = 0
    for (q0, lq), (k0, lk) in zip(spans_q, spans_k):
        if lq == 0:
            continue
        i = torch.arange(lq, device=q.device)[:, None]
        j = torch.arange(lk, device=q.device)[None, :]
        diagonal = i + lk - lq
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device)
        if left >= 0:
            keep &= j >= diagonal - left
        if right >= 0:
            keep &= j <= diagonal + right
        qs = q[q0:q0 + lq].transpose(0, 1)  # (h, Lq, d)
        ks = k[k0:k0 + lk].repeat_interleave(group, dim=1).transpose(0, 1)
        vs = v[k0:k0 + lk].repeat_interleave(group, dim=1).transpose(0, 1)
        s = scale * qs @ ks.transpose(1, 2)
        if softcap > 0:
            s = softcap * torch.tanh(s / softcap)
        s = s.masked_fill(~keep, -math.inf)
        row_lse = torch.logsumexp(s, dim=-1)  # -inf for rows that see no key
        p = torch.exp(s - torch.where(torch.isinf(row_lse), 0.0, row_lse)[..., None])
        out[q0:q0 + lq] = (p @ vs).transpose(0, 1)
        lse[:, q0:q0 + lq] = row_lse
    return out, lse
