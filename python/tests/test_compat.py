"""vflash.compat.fa3 / fa4 on numpy arrays (the CPU reference): FlashAttention-3's and -4's
parameter names, order and defaults, their return conventions, the mapping of each option
(window readings, seqused_*, the batch layout) against the float64 oracle, and a ValueError
naming the argument for every feature that is not served."""
import inspect
import math
import subprocess
import sys

import numpy as np
import pytest

import reference
from vflash.compat import fa3, fa4

TOL = 1e-5  # fp32 inputs, relative to max |ref|

# The signatures as FlashAttention defines them (hopper/flash_attn_interface.py and
# flash_attn/cute/interface.py): (name, default), inspect.Parameter.empty = required.
REQ = inspect.Parameter.empty
FA3_VARLEN = [
    ("q", REQ), ("k", REQ), ("v", REQ), ("cu_seqlens_q", REQ), ("cu_seqlens_k", REQ), ("max_seqlen_q", REQ),
    ("max_seqlen_k", REQ), ("seqused_q", None), ("seqused_k", None), ("softmax_scale", None), ("causal", False),
    ("qv", None), ("q_descale", None), ("k_descale", None), ("v_descale", None), ("window_size", (-1, -1)),
    ("attention_chunk", 0), ("softcap", 0.0), ("num_splits", 1), ("pack_gqa", None), ("deterministic", False),
    ("sm_margin", 0), ("return_attn_probs", False),
]
FA3_DENSE = [
    ("q", REQ), ("k", REQ), ("v", REQ), ("softmax_scale", None), ("causal", False), ("qv", None),
    ("q_descale", None), ("k_descale", None), ("v_descale", None), ("window_size", (-1, -1)),
    ("attention_chunk", 0), ("softcap", 0.0), ("num_splits", 1), ("pack_gqa", None), ("deterministic", False),
    ("sm_margin", 0), ("return_attn_probs", False),
]
FA4_VARLEN = [
    ("q", REQ), ("k", REQ), ("v", REQ), ("qv", None), ("cu_seqlens_q", None), ("cu_seqlens_k", None),
    ("max_seqlen_q", None), ("max_seqlen_k", None), ("min_seqlen_k", None), ("seqused_q", None),
    ("seqused_k", None), ("gather_kv_indices", None), ("page_table", None), ("softmax_scale", None),
    ("causal", False), ("window_size", (None, None)), ("learnable_sink", None), ("softcap", 0.0),
    ("num_splits", 1), ("pack_gqa", None), ("deterministic", False), ("score_mod", None),
    ("score_mod_bwd", None), ("mask_mod", None), ("block_sparse_tensors", None), ("aux_tensors", None),
    ("aux_scalars", None), ("return_lse", False), ("scheduler_metadata", None), ("seqlen_k_per_split", None),
    ("disable_scheduler_metadata", False),
]
FA4_DENSE = [
    ("q", REQ), ("k", REQ), ("v", REQ), ("qv", None), ("gather_kv_indices", None), ("softmax_scale", None),
    ("causal", False), ("window_size", (None, None)), ("learnable_sink", None), ("softcap", 0.0),
    ("num_splits", 1), ("pack_gqa", None), ("deterministic", False), ("score_mod", None),
    ("score_mod_bwd", None), ("mask_mod", None), ("aux_tensors", None), ("aux_scalars", None),
    ("block_sparse_tensors", None), ("block_sparse_tensors_bwd", None), ("return_lse", False),
]


@pytest.mark.parametrize(
    "function, expected",
    [(fa3.flash_attn_varlen_func, FA3_VARLEN), (fa3.flash_attn_func, FA3_DENSE),
     (fa4.flash_attn_varlen_func, FA4_VARLEN), (fa4.flash_attn_func, FA4_DENSE)],
    ids=["fa3-varlen", "fa3-dense", "fa4-varlen", "fa4-dense"],
)
def test_signature_matches_flash_attention(function, expected):
    params = inspect.signature(function).parameters.values()
    got = [(p.name, p.default) for p in params]
    assert got == expected
    assert all(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)


def cu_seqlens(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def inputs(rng, lengths_q, lengths_k, heads_q, heads_k, d=16, d_v=None):
    make = lambda n, h, dim: rng.standard_normal((n, h, dim)).astype(np.float32)  # noqa: E731
    return (make(sum(lengths_q), heads_q, d), make(sum(lengths_k), heads_k, d),
            make(sum(lengths_k), heads_k, d_v or d), cu_seqlens(lengths_q), cu_seqlens(lengths_k))


def assert_close(got, want, what, seed):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(np.abs(want).max(initial=0.0), 1e-6)
    err = np.abs(np.asarray(got, np.float64) - want).max(initial=0.0) / scale
    assert err <= TOL, f"{what}: max error {err:.3g} (seed {seed})"


def assert_lse(got, want, what, seed):
    assert got.dtype == np.float32 and got.shape == want.shape, f"{what}: {got.dtype} {got.shape}"
    assert np.array_equal(np.isneginf(got), np.isneginf(want)), f"{what}: -inf rows differ (seed {seed})"
    finite = np.isfinite(want)
    assert np.abs(got[finite] - want[finite]).max(initial=0.0) <= 1e-4 * max(1.0, np.abs(want[finite]).max()), what


# name: (lengths_q, lengths_k, heads_q, heads_k, reference options, fa3 kwargs, fa4 kwargs)
CASES = {
    "plain": ([5, 0, 17, 33], None, 4, 4, {}, {}, {}),
    "causal": ([7, 1, 40], [9, 3, 40], 2, 2, dict(causal=True), dict(causal=True), dict(causal=True)),
    "gqa": ([9, 21], None, 6, 2, {}, {}, {}),
    "window": ([30, 13], None, 2, 2, dict(window=(4, 2)), dict(window_size=(4, 2)), dict(window_size=(4, 2))),
    "window-causal": ([30, 5], None, 2, 1, dict(causal=True, window=(3, -1)),
                      dict(causal=True, window_size=(3, -1)), dict(causal=True, window_size=(3, None))),
    "softcap-scale": ([25, 6], None, 2, 2, dict(softcap=1.5, scale=0.3), dict(softcap=1.5, softmax_scale=0.3),
                      dict(softcap=1.5, softmax_scale=0.3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fa3_varlen_matches_reference_with_and_without_lse(case, rng, seed):
    lengths_q, lengths_k, hq, hk, ref_opts, fa3_opts, _ = CASES[case]
    lengths_k = lengths_k or lengths_q
    q, k, v, cu_q, cu_k = inputs(rng, lengths_q, lengths_k, hq, hk)
    want, want_lse = reference.attention(q, k, v, cu_q, cu_k, **ref_opts)
    out = fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k), **fa3_opts)
    assert isinstance(out, np.ndarray)  # not a tuple without return_attn_probs
    assert_close(out, want, case, seed)
    result = fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k),
                                        return_attn_probs=True, **fa3_opts)
    assert isinstance(result, tuple) and len(result) == 2
    assert_close(result[0], want, case, seed)
    assert_lse(result[1], want_lse, case, seed)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fa4_varlen_matches_reference_and_returns_a_pair(case, rng, seed):
    lengths_q, lengths_k, hq, hk, ref_opts, _, fa4_opts = CASES[case]
    lengths_k = lengths_k or lengths_q
    q, k, v, cu_q, cu_k = inputs(rng, lengths_q, lengths_k, hq, hk)
    want, want_lse = reference.attention(q, k, v, cu_q, cu_k, **ref_opts)
    # max_seqlen_* left out: computed from cu_seqlens
    out, lse = fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, **fa4_opts)
    assert lse is None
    assert_close(out, want, case, seed)
    out, lse = fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                                          max_seqlen_q=max(lengths_q), max_seqlen_k=max(lengths_k),
                                          return_lse=True, **fa4_opts)
    assert_close(out, want, case, seed)
    assert_lse(lse, want_lse, case, seed)


@pytest.mark.parametrize(
    "fa3_window, fa4_window, causal, ref_window, ref_causal",
    [
        ((-5, -9), (-1, -1), False, (-1, -1), False),  # negative = unbounded / both ints adding to < 0 = none
        ((-1, 0), (None, 0), False, (-1, 0), False),   # FA4: (None, 0) is causal
        ((6, -3), (6, None), False, (6, -1), False),
        ((2, 7), (2, 7), True, (2, 0), True),          # causal trims the right side
    ],
)
def test_window_readings(fa3_window, fa4_window, causal, ref_window, ref_causal, rng, seed):
    q, k, v, cu_q, cu_k = inputs(rng, [19, 8], [19, 11], 2, 2)
    want, _ = reference.attention(q, k, v, cu_q, cu_k, causal=ref_causal, window=ref_window)
    got3 = fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 19, 19, causal=causal, window_size=fa3_window)
    got4, _ = fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, causal=causal,
                                         window_size=fa4_window)
    assert_close(got3, want, f"fa3 {fa3_window}", seed)
    assert_close(got4, want, f"fa4 {fa4_window}", seed)


def test_fa4_minus_one_and_zero_is_no_window_unlike_fa3(rng, seed):
    # FA4 reads two ints adding up to < 0 as "no window", so (-1, 0) is full attention there
    # while FlashAttention-2/3 (and vflash) read it as "nothing to the right".
    q, k, v, cu_q, cu_k = inputs(rng, [12], [12], 2, 2)
    full, _ = reference.attention(q, k, v, cu_q, cu_k)
    got4, _ = fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, window_size=(-1, 0))
    assert_close(got4, full, "fa4 (-1, 0)", seed)
    got3 = fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 12, 12, window_size=(-1, 0))
    assert np.abs(got3 - full).max() > 1e-3  # a causal-like band, not full attention


def seqused_reference(q, k, v, q_starts, q_used, k_starts, k_used, total_q, **opts):
    """Attention over the used prefixes; rows past seqused_q zero with lse -inf."""
    out = np.zeros((total_q, q.shape[1], v.shape[2]))
    lse = np.full((q.shape[1], total_q), -np.inf)
    for qs, qn, ks, kn in zip(q_starts, q_used, k_starts, k_used):
        o, l = reference.attention(q[qs:qs + qn], k[ks:ks + kn], v[ks:ks + kn], [0, qn], [0, kn], **opts)
        out[qs:qs + qn], lse[:, qs:qs + qn] = o, l
    return out, lse


@pytest.mark.parametrize("causal", [False, True])
def test_seqused_attends_each_sequences_used_prefix(causal, rng, seed):
    lengths_q, lengths_k = [6, 9, 4], [10, 3, 8]
    q, k, v, cu_q, cu_k = inputs(rng, lengths_q, lengths_k, 4, 2)
    used_q, used_k = np.array([6, 5, 0], np.int32), np.array([7, 3, 2], np.int32)
    want, want_lse = seqused_reference(q, k, v, cu_q[:-1], used_q, cu_k[:-1], used_k, q.shape[0], causal=causal)
    out, lse = fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 9, 10, seqused_q=used_q, seqused_k=used_k,
                                          causal=causal, return_attn_probs=True)
    assert_close(out, want, "fa3 seqused", seed)
    assert_lse(lse, want_lse, "fa3 seqused", seed)
    out, lse = fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, seqused_k=used_k,
                                          causal=causal, return_lse=True)
    want, want_lse = seqused_reference(q, k, v, cu_q[:-1], lengths_q, cu_k[:-1], used_k, q.shape[0], causal=causal)
    assert_close(out, want, "fa4 seqused_k", seed)
    assert_lse(lse, want_lse, "fa4 seqused_k", seed)


def test_batch_layout_with_seqused_k(rng, seed):
    batch, seq_q, seq_k, hq, hk, d = 3, 5, 9, 4, 2, 16
    q = rng.standard_normal((batch, seq_q, hq, d)).astype(np.float32)
    k = rng.standard_normal((batch, seq_k, hk, d)).astype(np.float32)
    v = rng.standard_normal((batch, seq_k, hk, d)).astype(np.float32)
    used_k = np.array([9, 4, 1], np.int32)
    out, lse = fa4.flash_attn_varlen_func(q, k, v, seqused_k=used_k, causal=True, return_lse=True)
    assert out.shape == (batch, seq_q, hq, d) and lse.shape == (batch, hq, seq_q)
    flat = lambda x: x.reshape(-1, x.shape[2], x.shape[3])  # noqa: E731
    want, want_lse = seqused_reference(flat(q), flat(k), flat(v), [0, 5, 10], [5] * 3, [0, 9, 18], used_k,
                                       batch * seq_q, causal=True)
    assert_close(out.reshape(-1, hq, d), want, "fa4 batch seqused_k", seed)
    assert_lse(lse.transpose(1, 0, 2).reshape(hq, -1), want_lse, "fa4 batch seqused_k", seed)


@pytest.mark.parametrize("module", [fa3, fa4], ids=["fa3", "fa4"])
def test_dense_entry_point(module, rng, seed):
    q = rng.standard_normal((2, 7, 4, 16)).astype(np.float32)
    k = rng.standard_normal((2, 11, 2, 16)).astype(np.float32)
    v = rng.standard_normal((2, 11, 2, 8)).astype(np.float32)
    flat = lambda x: x.reshape(-1, x.shape[2], x.shape[3])  # noqa: E731
    want, want_lse = reference.attention(flat(q), flat(k), flat(v), [0, 7, 14], [0, 11, 22], causal=True)
    if module is fa3:
        out, lse = fa3.flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
        assert isinstance(fa3.flash_attn_func(q, k, v), np.ndarray)
    else:
        out, lse = fa4.flash_attn_func(q, k, v, causal=True, return_lse=True)
        assert fa4.flash_attn_func(q, k, v)[1] is None
    assert out.shape == (2, 7, 4, 8) and lse.shape == (2, 4, 7)
    assert_close(out.reshape(-1, 4, 8), want, "dense", seed)
    assert_lse(lse.transpose(1, 0, 2).reshape(4, -1), want_lse, "dense", seed)


def test_scheduling_hints_do_not_change_the_result(rng, seed):
    q, k, v, cu_q, cu_k = inputs(rng, [13, 20], [13, 20], 4, 2)
    base = fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 20, 20, causal=True)
    hinted = fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 20, 20, causal=True, num_splits=0, pack_gqa=True,
                                        deterministic=True, sm_margin=8)
    assert np.array_equal(base, hinted)
    out, _ = fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, causal=True, num_splits=3,
                                        pack_gqa=False, min_seqlen_k=13, seqlen_k_per_split=64)
    assert np.array_equal(base, out)


FA3_REFUSED = {
    "qv": np.zeros((33, 4, 16), np.float32),
    "q_descale": np.ones((2, 2), np.float32),
    "k_descale": np.ones((2, 2), np.float32),
    "v_descale": np.ones((2, 2), np.float32),
    "attention_chunk": 8,
    "window_size": (None, None),
    "softmax_scale": -1.0,
    "softcap": -0.5,
    "sm_margin": -1,
    "pack_gqa": "yes",
    "num_splits": 1.5,
}
FA4_REFUSED = {
    "qv": np.zeros((33, 4, 16), np.float32),
    "gather_kv_indices": np.zeros((33, 4), np.int32),
    "page_table": np.zeros((2, 4), np.int32),
    "learnable_sink": np.zeros(4, np.float32),
    "score_mod": lambda *a: a[0],
    "score_mod_bwd": lambda *a: a[0],
    "mask_mod": lambda *a: True,
    "block_sparse_tensors": [np.zeros(1)],
    "aux_tensors": [np.zeros(1)],
    "aux_scalars": (1.0,),
    "window_size": (5, -1),
    "return_lse": "yes",
    "seqlen_k_per_split": 0,
}


@pytest.mark.parametrize("name", sorted(FA3_REFUSED))
def test_fa3_refuses_what_it_does_not_serve_naming_the_argument(name, rng):
    q, k, v, cu_q, cu_k = inputs(rng, [13, 20], [13, 20], 4, 2)
    with pytest.raises(ValueError, match=name):
        fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 20, 20, **{name: FA3_REFUSED[name]})


@pytest.mark.parametrize("name", sorted(FA4_REFUSED))
def test_fa4_refuses_what_it_does_not_serve_naming_the_argument(name, rng):
    q, k, v, cu_q, cu_k = inputs(rng, [13, 20], [13, 20], 4, 2)
    with pytest.raises(ValueError, match=name):
        fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, **{name: FA4_REFUSED[name]})


def test_bad_seqused_and_cu_seqlens_name_the_argument(rng):
    q, k, v, cu_q, cu_k = inputs(rng, [4, 6], [4, 6], 2, 2)
    with pytest.raises(ValueError, match=r"seqused_k\[1\]"):
        fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 6, 6, seqused_k=np.array([4, 7], np.int32))
    with pytest.raises(ValueError, match="seqused_q"):
        fa3.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 6, 6, seqused_q=np.array([1, 1, 1], np.int32))
    with pytest.raises(ValueError, match="cu_seqlens_k"):
        fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q)
    with pytest.raises(ValueError, match=r"q\b"):  # vflash's own check of the layout
        fa4.flash_attn_varlen_func(q, k, v)
    with pytest.raises(TypeError, match="cu_seqlens_q"):  # vflash's dtype rule passes through
        fa3.flash_attn_varlen_func(q, k, v, cu_q.astype(np.int64), cu_k, 6, 6)


def test_rows_that_see_no_key(rng):
    q, k, v, cu_q, cu_k = inputs(rng, [3, 4], [0, 4], 2, 2)
    out, lse = fa4.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, return_lse=True)
    assert np.all(out[:3] == 0) and np.all(np.isneginf(lse[:, :3])) and np.all(np.isfinite(lse[:, 3:]))
    assert not math.isnan(float(out.sum()))


def test_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import vflash.compat.fa3, vflash.compat.fa4, vflash.compat\n"
        "assert sys.modules['torch'] is None\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=None)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
