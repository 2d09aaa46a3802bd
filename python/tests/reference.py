"""A naive float64 attention and its backward in numpy: the oracle of the Python tests.

softmax(scale * Q K^T) V per sequence and head, with vflash's (FlashAttention's)
conventions: causal aligned bottom-right, window (left, right) around that
diagonal with -1 unbounded, softcap * tanh(s / softcap), GQA by integer head
groups; a row that sees no key gives zeros and lse = -inf.
"""
import numpy as np


def keep_mask(len_q, len_k, causal, window):
    i = np.arange(len_q)[:, None]
    j = np.arange(len_k)[None, :]
    diagonal = i + len_k - len_q
    left, right = window
    if causal:
        right = 0
    keep = np.ones((len_q, len_k), dtype=bool)
    if left >= 0:
        keep &= j >= diagonal - left
    if right >= 0:
        keep &= j <= diagonal + right
    return keep


def attention(q, k, v, cu_q, cu_k, scale=None, causal=False, window=(-1, -1), softcap=0.0):
    """q (total_q, hq, d), k (total_k, hk, d), v (total_k, hk, dv) -> out (total_q, hq, dv), lse (hq, total_q)."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    total_q, heads_q, d = q.shape
    heads_k, d_v = k.shape[1], v.shape[2]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    group = heads_q // heads_k
    out = np.zeros((total_q, heads_q, d_v))
    lse = np.full((heads_q, total_q), -np.inf)
    for b in range(len(cu_q) - 1):
        q0, q1, k0, k1 = int(cu_q[b]), int(cu_q[b + 1]), int(cu_k[b]), int(cu_k[b + 1])
        if q1 == q0:
            continue
        keep = keep_mask(q1 - q0, k1 - k0, causal, window)
        for h in range(heads_q):
            s = scale * q[q0:q1, h] @ k[k0:k1, h // group].T
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            s = np.where(keep, s, -np.inf)
            m = s.max(axis=1, initial=-np.inf)
            seen = np.isfinite(m)
            p = np.exp(s - np.where(seen, m, 0.0)[:, None])
            total = p.sum(axis=1)
            o = p @ v[k0:k1, h // group]
            out[q0:q1, h] = np.where(seen[:, None], o / np.where(seen, total, 1.0)[:, None], 0.0)
            lse[h, q0:q1] = np.where(seen, m + np.log(np.where(seen, total, 1.0)), -np.inf)
    return out, lse


def attention_backward(dout, q, k, v, cu_q, cu_k, scale, causal=False, window=(-1, -1), softcap=0.0):
    """dq, dk, dv in float64 of the loss sum(dout * out), from full per-(sequence, head) matrices:
    dV = P^T dO, dS = P * (dO V^T - rowsum(P * dO V^T)) * ds/d(q.k), dQ = dS K, dK = dS^T Q;
    dK and dV of a KV head sum its query heads; rows that see no key get zeros."""
    dout, q, k, v = (np.asarray(x, dtype=np.float64) for x in (dout, q, k, v))
    heads_q, heads_k = q.shape[1], k.shape[1]
    group = heads_q // heads_k
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for b in range(len(cu_q) - 1):
        q0, q1, k0, k1 = int(cu_q[b]), int(cu_q[b + 1]), int(cu_k[b]), int(cu_k[b + 1])
        keep = keep_mask(q1 - q0, k1 - k0, causal, window)
        for h in range(heads_q):
            hk = h // group
            raw = scale * q[q0:q1, h] @ k[k0:k1, hk].T
            s = softcap * np.tanh(raw / softcap) if softcap > 0 else raw
            slope = scale * (1 - (s / softcap) ** 2) if softcap > 0 else np.full_like(s, scale)
            s = np.where(keep, s, -np.inf)
            m = s.max(axis=1, initial=-np.inf, keepdims=True)
            e = np.where(keep, np.exp(s - np.where(np.isfinite(m), m, 0.0)), 0.0)
            total = e.sum(axis=1, keepdims=True)
            p = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
            dp = dout[q0:q1, h] @ v[k0:k1, hk].T
            ds = p * (dp - (p * dp).sum(axis=1, keepdims=True)) * slope
            dq[q0:q1, h] += ds @ k[k0:k1, hk]
            dk[k0:k1, hk] += ds.T @ q[q0:q1, h]
            dv[k0:k1, hk] += p.T @ dout[q0:q1, h]
    return dq, dk, dv
