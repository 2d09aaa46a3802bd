"""The backward on the CPU (numpy arrays -> the library's float64 reference):
flash_attn_varlen_bwd against the naive float64 numpy backward of reference.py, and
bad input raising ValueError / TypeError that name the argument."""
import numpy as np
import pytest

import reference
import vflash

FP32_TOL = 1e-5


def cu_seqlens(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def assert_close(got, want, what, seed, tol=FP32_TOL):
    got = np.asarray(got, dtype=np.float64)
    assert not np.isnan(got).any(), f"{what}: NaN (seed {seed})"
    scale = max(np.abs(want).max(initial=0.0), 1e-6)
    err = np.abs(got - want).max(initial=0.0) / scale
    assert err <= tol, f"{what}: max error {err:.3g} relative to max|ref| > {tol} (seed {seed})"


CASES = [
    dict(lens_q=[5, 0, 9, 3], lens_k=[7, 4, 9, 0], heads=(2, 2), d=16, dv=16),
    dict(lens_q=[6, 8], lens_k=[6, 11], heads=(4, 2), d=16, dv=8, causal=True),
    dict(lens_q=[10, 3], lens_k=[8, 5], heads=(3, 1), d=8, dv=24, window=(2, 1), softcap=1.5),
    dict(lens_q=[7], lens_k=[3], heads=(2, 1), d=32, dv=32, causal=True, window=(1, -1)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"hq{c['heads'][0]}_hk{c['heads'][1]}_d{c['d']}_dv{c['dv']}")
def test_numpy_backward_matches_naive_formula(case, rng, seed):
    heads_q, heads_k = case["heads"]
    cu_q, cu_k = cu_seqlens(case["lens_q"]), cu_seqlens(case["lens_k"])
    total_q, total_k = int(cu_q[-1]) + 2, int(cu_k[-1]) + 1  # rows past the last sequence
    q = rng.standard_normal((total_q, heads_q, case["d"])).astype(np.float32)
    k = rng.standard_normal((total_k, heads_k, case["d"])).astype(np.float32)
    v = rng.standard_normal((total_k, heads_k, case["dv"])).astype(np.float32)
    dout = rng.standard_normal((total_q, heads_q, case["dv"])).astype(np.float32)
    options = dict(causal=case.get("causal", False), window_size=case.get("window", (-1, -1)),
                   softcap=case.get("softcap", 0.0))
    max_q, max_k = max(case["lens_q"]), max(case["lens_k"])
    out, lse = vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, return_lse=True, **options)
    dq, dk, dv = vflash.flash_attn_varlen_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, **options)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    assert dq.dtype == dk.dtype == dv.dtype == np.float32
    want = reference.attention_backward(dout, q, k, v, cu_q, cu_k, 1 / np.sqrt(case["d"]), options["causal"],
                          options["window_size"], options["softcap"])
    for what, got, ref in zip(("dq", "dk", "dv"), (dq, dk, dv), want):
        assert_close(got, ref, what, seed)
        assert np.abs(ref).max() > 0, f"{what}: the case has no gradient to compare"
    assert not dq[cu_q[-1]:].any() and not dk[cu_k[-1]:].any() and not dv[cu_k[-1]:].any()


def test_numpy_backward_fp16_and_scale(rng, seed):
    lens = [12, 5]
    cu = cu_seqlens(lens)
    q, k, v, dout = (rng.standard_normal((17, 2, 16)).astype(np.float16) for _ in range(4))
    out, lse = vflash.flash_attn_varlen_func(q, k, v, cu, cu, 12, 12, softmax_scale=0.3, causal=True, return_lse=True)
    dq, dk, dv = vflash.flash_attn_varlen_bwd(dout, q, k, v, out, lse, cu, cu, 12, 12, softmax_scale=0.3, causal=True,
                                              deterministic=True)
    assert dq.dtype == np.float16
    want = reference.attention_backward(dout, q, k, v, cu, cu, 0.3, causal=True)
    for what, got, ref in zip(("dq", "dk", "dv"), (dq, dk, dv), want):
        assert_close(got, ref, what, seed, tol=2e-3)


def small_problem(rng):
    cu = cu_seqlens([4, 3])
    q, k, v, dout = (rng.standard_normal((7, 2, 8)).astype(np.float32) for _ in range(4))
    out, lse = vflash.flash_attn_varlen_func(q, k, v, cu, cu, 4, 4, return_lse=True)
    return dict(dout=dout, q=q, k=k, v=v, out=out, lse=lse, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=4,
                max_seqlen_k=4)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda a: a.update(dout=a["dout"][:, :, :4].copy()), ValueError, "dout.shape[2]"),
        (lambda a: a.update(dout=a["dout"].astype(np.float16)), TypeError, "dout.dtype"),
        (lambda a: a.update(lse=a["lse"].astype(np.float16)), TypeError, "lse.dtype"),
        (lambda a: a.update(lse=a["lse"][:1].copy()), ValueError, "lse.shape[0]"),
        (lambda a: a.update(out=a["out"][:5].copy()), ValueError, "out.shape[0]"),
        (lambda a: a.update(max_seqlen_q=3), ValueError, "max_seqlen_q"),
        (lambda a: a.update(window_size=(-2, 0)), ValueError, "window_size"),
        (lambda a: a.update(q=a["q"].tolist()), TypeError, "q"),
    ],
)
def test_bad_backward_input_names_the_argument(change, error, message, rng):
    args = small_problem(rng)
    change(args)
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        vflash.flash_attn_varlen_bwd(**args)


def test_dropout_stays_rejected(rng):
    cu = cu_seqlens([3])
    q = rng.standard_normal((3, 1, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="dropout_p: dropout is not supported"):
        vflash.flash_attn_varlen_func(q, q, q, cu, cu, 3, 3, dropout_p=0.1)


def test_backward_is_public():
    assert "flash_attn_varlen_bwd" in vflash.__all__
