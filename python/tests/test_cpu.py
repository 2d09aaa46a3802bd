"""CPU tests (numpy arrays -> the library's CPU reference): correctness against
a float64 numpy softmax(QK^T)V, FlashAttention's signature and return
conventions, and bad input raising ValueError / TypeError that name the argument."""
import inspect
import math

import numpy as np
import pytest

import reference
import vflash

FP16_TOL = 2e-3  # relative to max |ref|, per element
FP32_TOL = 1e-5


def packed(rng, lengths, heads, d, dtype):
    x = rng.standard_normal((sum(lengths), heads, d)).astype(dtype)
    return x


def cu_seqlens(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def poisoned_like(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def assert_close(got, want, dtype, what, seed):
    got = np.asarray(got, dtype=np.float64)
    assert not np.isnan(got).any(), f"{what}: NaN in output (seed {seed})"
    tol = FP16_TOL if dtype == np.float16 else FP32_TOL
    scale = max(np.abs(want).max(initial=0.0), 1e-6)
    err = np.abs(got - want).max(initial=0.0) / scale
    assert err <= tol, f"{what}: max error {err:.3g} relative to max|ref| > {tol} (seed {seed})"


def assert_lse_close(got, want, what, seed):
    assert not np.isnan(got).any(), f"{what}: NaN in lse (seed {seed})"
    assert np.array_equal(np.isneginf(got), np.isneginf(want)), f"{what}: -inf rows differ (seed {seed})"
    finite = np.isfinite(want)
    err = np.abs(got[finite] - want[finite]).max(initial=0.0)
    assert err <= 1e-4 * max(1.0, np.abs(want[finite]).max(initial=0.0)), f"{what}: lse error {err:.3g} (seed {seed})"


CASES = {
    # name: (lengths_q, lengths_k or None (= q), heads_q, heads_k, kwargs)
    "plain": ([5, 0, 1, 17, 33], None, 4, 4, {}),
    "causal": ([7, 1, 0, 40], None, 2, 2, dict(causal=True)),
    "causal-q-shorter-than-k": ([3, 9, 1], [10, 9, 4], 2, 2, dict(causal=True)),
    "causal-q-longer-than-k": ([12, 5], [4, 0], 2, 2, dict(causal=True)),
    "window": ([30, 13], None, 2, 2, dict(window_size=(4, 2))),
    "window-causal": ([30, 2], None, 2, 2, dict(causal=True, window_size=(5, -1))),
    "gqa": ([9, 21], None, 6, 2, {}),
    "mqa-causal": ([16, 3], None, 4, 1, dict(causal=True)),
    "softcap": ([25, 6], None, 2, 2, dict(softcap=1.5)),
    "scale": ([11], None, 2, 2, dict(softmax_scale=0.3)),
}


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("head_dim", [8, 72])
@pytest.mark.parametrize("case", sorted(CASES))
def test_varlen_matches_float64_reference(case, head_dim, dtype, rng, seed):
    lengths_q, lengths_k, heads_q, heads_k, kwargs = CASES[case]
    lengths_k = lengths_k or lengths_q
    q = packed(rng, lengths_q, heads_q, head_dim, dtype)
    k = packed(rng, lengths_k, heads_k, head_dim, dtype)
    v = packed(rng, lengths_k, heads_k, head_dim, dtype)
    cu_q, cu_k = cu_seqlens(lengths_q), cu_seqlens(lengths_k)
    out = poisoned_like(q.shape[:2] + (head_dim,), dtype)
    got, lse = vflash.flash_attn_varlen_func(
        q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k), return_lse=True, out=out, **kwargs
    )
    assert got is out
    want, want_lse = reference.attention(
        q, k, v, cu_q, cu_k, kwargs.get("softmax_scale"), kwargs.get("causal", False),
        kwargs.get("window_size", (-1, -1)), kwargs.get("softcap", 0.0),
    )
    assert got.dtype == dtype and lse.dtype == np.float32 and lse.shape == (heads_q, q.shape[0])
    assert_close(got, want, dtype, case, seed)
    assert_lse_close(lse, want_lse, case, seed)


@pytest.mark.parametrize("causal", [False, True])
def test_dense_matches_reference(causal, rng, seed):
    batch, seqlen_q, seqlen_k, heads_q, heads_k, d, d_v = 3, 9, 14, 4, 2, 16, 24
    q = rng.standard_normal((batch, seqlen_q, heads_q, d)).astype(np.float32)
    k = rng.standard_normal((batch, seqlen_k, heads_k, d)).astype(np.float32)
    v = rng.standard_normal((batch, seqlen_k, heads_k, d_v)).astype(np.float32)
    out, lse = vflash.flash_attn_func(q, k, v, causal=causal, return_lse=True)
    assert out.shape == (batch, seqlen_q, heads_q, d_v) and lse.shape == (batch, heads_q, seqlen_q)
    cu_q = np.arange(batch + 1, dtype=np.int32) * seqlen_q
    cu_k = np.arange(batch + 1, dtype=np.int32) * seqlen_k
    want, want_lse = reference.attention(
        q.reshape(-1, heads_q, d), k.reshape(-1, heads_k, d), v.reshape(-1, heads_k, d_v), cu_q, cu_k, causal=causal
    )
    assert_close(out.reshape(-1, heads_q, d_v), want, np.float32, "dense", seed)
    # reference lse is (heads, batch * seqlen_q); dense lse is (batch, heads, seqlen_q)
    want_lse = want_lse.reshape(heads_q, batch, seqlen_q).transpose(1, 0, 2)
    assert_lse_close(lse, want_lse, "dense", seed)


def test_strided_views_of_a_packed_qkv(rng, seed):
    """Vision encoders slice q, k, v out of one (tokens, 3, heads, d) projection: no copy needed."""
    lengths, heads, d = [10, 4, 19], 3, 32
    qkv = rng.standard_normal((sum(lengths), 3, heads, d)).astype(np.float16)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    assert not q.flags.c_contiguous
    cu = cu_seqlens(lengths)
    got = vflash.flash_attn_varlen_func(q, k, v, cu, cu, max(lengths), max(lengths))
    want, _ = reference.attention(q, k, v, cu, cu)
    assert_close(got, want, np.float16, "strided", seed)


def test_rows_that_see_no_key_give_zeros_and_minus_inf_lse_dense(rng):
    """vflash's LSE of a row without keys is -inf (log of an empty sum) in every entry point,
    where FlashAttention gives +inf (see docs/python.md)."""
    q = rng.standard_normal((2, 3, 2, 8)).astype(np.float32)
    empty = np.zeros((2, 0, 2, 8), np.float32)
    out, lse = vflash.flash_attn_func(q, empty, empty, return_lse=True)
    assert np.array_equal(out, np.zeros_like(out))
    assert lse.shape == (2, 2, 3) and np.isneginf(lse).all()


def test_rows_that_see_no_key_give_zeros_and_minus_inf_lse(rng):
    q = rng.standard_normal((3, 2, 8)).astype(np.float32)
    k = np.zeros((0, 2, 8), np.float32)
    v = np.zeros((0, 2, 8), np.float32)
    out, lse = vflash.flash_attn_varlen_func(
        q, k, v, np.array([0, 3], np.int32), np.array([0, 0], np.int32), 3, 0, return_lse=True
    )
    assert np.array_equal(out, np.zeros_like(out))
    assert np.isneginf(lse).all()


def test_return_conventions(rng):
    q = rng.standard_normal((4, 2, 8)).astype(np.float32)
    cu = np.array([0, 4], np.int32)
    plain = vflash.flash_attn_varlen_func(q, q, q, cu, cu, 4, 4)
    assert isinstance(plain, np.ndarray)
    out, lse = vflash.flash_attn_varlen_func(q, q, q, cu, cu, 4, 4, return_lse=True)
    np.testing.assert_array_equal(out, plain)
    fa2 = vflash.flash_attn_varlen_func(q, q, q, cu, cu, 4, 4, return_attn_probs=True)
    assert len(fa2) == 3 and fa2[2] is None
    np.testing.assert_array_equal(fa2[1], lse)
    dense = vflash.flash_attn_func(q[None], q[None], q[None])
    np.testing.assert_array_equal(dense[0], plain)


def test_signature_follows_flash_attn():
    """FlashAttention-2's parameter names, order and defaults, then return_lse and out (keyword-only)."""
    varlen = inspect.signature(vflash.flash_attn_varlen_func).parameters
    assert list(varlen)[:16] == [
        "q", "k", "v", "cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k", "dropout_p",
        "softmax_scale", "causal", "window_size", "softcap", "alibi_slopes", "deterministic",
        "return_attn_probs", "block_table",
    ]
    dense = inspect.signature(vflash.flash_attn_func).parameters
    assert list(dense)[:11] == [
        "q", "k", "v", "dropout_p", "softmax_scale", "causal", "window_size", "softcap", "alibi_slopes",
        "deterministic", "return_attn_probs",
    ]
    for params in (varlen, dense):
        defaults = {name: p.default for name, p in params.items()}
        assert defaults["dropout_p"] == 0.0 and defaults["softmax_scale"] is None
        assert defaults["causal"] is False and defaults["window_size"] == (-1, -1)
        assert defaults["softcap"] == 0.0 and defaults["return_attn_probs"] is False
        for name in ("return_lse", "out"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert defaults["return_lse"] is False and defaults["out"] is None


def test_kernel_name_and_doctor_without_gpu(rng):
    q = rng.standard_normal((4, 2, 8)).astype(np.float32)
    cu = np.array([0, 4], np.int32)
    assert vflash.varlen_kernel_name(q, q, q, cu, cu, 4, 4) == "cpu_reference"
    assert vflash.kernel_name(q[None], q[None], q[None]) == "cpu_reference"
    report = vflash.doctor()
    assert isinstance(report, dict) and report
    assert vflash.__version__


# ---- bad input: each raises with the argument named, and the interpreter survives


def good_args(rng, dtype=np.float16):
    lengths = [3, 5]
    q = packed(rng, lengths, 4, 16, dtype)
    k = packed(rng, lengths, 2, 16, dtype)
    v = packed(rng, lengths, 2, 16, dtype)
    cu = cu_seqlens(lengths)
    return dict(q=q, k=k, v=v, cu_seqlens_q=cu, cu_seqlens_k=cu.copy(), max_seqlen_q=5, max_seqlen_k=5)


def read_only(array):
    array.flags.writeable = False
    return array


def call(args, **kwargs):
    return vflash.flash_attn_varlen_func(**args, **kwargs)


BAD_VALUES = {
    # name: (mutation of the good arguments, keyword options, text the message must hold)
    "heads not divisible": (lambda a: a.update(k=a["k"][:, :1].repeat(3, axis=1), v=a["v"][:, :1].repeat(3, axis=1)),
                            {}, "k.shape[1]"),
    "head dim not served": (lambda a: a.update(q=a["q"][..., :12].copy(), k=a["k"][..., :12].copy()),
                            {}, "q.shape[2]"),
    "k head dim differs": (lambda a: a.update(k=a["k"][..., :8].copy()), {}, "k.shape[2]"),
    "v tokens differ": (lambda a: a.update(v=a["v"][:-1].copy()), {}, "v.shape[0]"),
    "cu_seqlens length differs": (lambda a: a.update(cu_seqlens_k=np.array([0, 8], np.int32)), {}, "cu_seqlens_k"),
    "cu_seqlens not from 0": (lambda a: a.update(cu_seqlens_q=np.array([1, 3, 8], np.int32)), {}, "cu_seqlens_q"),
    "cu_seqlens decreasing": (lambda a: a.update(cu_seqlens_q=np.array([0, 5, 3], np.int32)), {}, "cu_seqlens_q"),
    "cu_seqlens past total": (lambda a: a.update(cu_seqlens_k=np.array([0, 3, 9], np.int32)), {}, "cu_seqlens_k"),
    "sequence longer than max_seqlen": (lambda a: a.update(max_seqlen_q=4), {}, "cu_seqlens_q"),
    "batch 0": (lambda a: a.update(cu_seqlens_q=np.array([0], np.int32), cu_seqlens_k=np.array([0], np.int32)),
                {}, "cu_seqlens_q.shape[0]"),
    "max_seqlen negative": (lambda a: a.update(max_seqlen_k=-1), {}, "max_seqlen_k"),
    "max_seqlen a float": (lambda a: a.update(max_seqlen_q=3.7), {}, "max_seqlen_q: must be an int"),
    "max_seqlen an integral float": (lambda a: a.update(max_seqlen_k=5.0), {}, "max_seqlen_k: must be an int"),
    "max_seqlen a bool": (lambda a: a.update(max_seqlen_q=True), {}, "max_seqlen_q: must be an int"),
    "window a float": (lambda a: None, dict(window_size=(3.7, 0)), "window_size"),
    "out read-only": (lambda a: None, dict(out=read_only(np.zeros((8, 4, 16), np.float16))), "out: must be writable"),
    "q not 3-D": (lambda a: a.update(q=a["q"][0]), {}, "q"),
    "last dim not contiguous": (lambda a: a.update(q=np.repeat(a["q"], 2, axis=2)[..., ::2]), {}, "q.stride[2]"),
    "out wrong shape": (lambda a: None, dict(out=np.empty((8, 4, 8), np.float16)), "out.shape[2]"),
    "dropout": (lambda a: None, dict(dropout_p=0.1), "dropout_p"),
    "scale zero": (lambda a: None, dict(softmax_scale=0.0), "softmax_scale"),
    "scale nan": (lambda a: None, dict(softmax_scale=math.nan), "softmax_scale"),
    "softcap negative": (lambda a: None, dict(softcap=-1.0), "softcap"),
    "window not a pair": (lambda a: None, dict(window_size=(3,)), "window_size"),
    "window below -1": (lambda a: None, dict(window_size=(-2, 0)), "window_size"),
    "alibi": (lambda a: None, dict(alibi_slopes=np.ones(4, np.float32)), "alibi_slopes"),
    "paged kv": (lambda a: None, dict(block_table=np.zeros((2, 1), np.int32)), "block_table"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_value_raises_value_error_naming_the_argument(case, rng):
    mutate, kwargs, names = BAD_VALUES[case]
    args = good_args(rng)
    mutate(args)
    with pytest.raises(ValueError) as err:
        call(args, **kwargs)
    assert names in str(err.value), f"message {str(err.value)!r} does not name {names}"


def test_loose_max_seqlen_is_an_upper_bound(rng, seed):
    """As in FlashAttention, max_seqlen_q/k bound the lengths from above: any value from the
    longest sequence up gives the same result, even past the token count."""
    args = good_args(rng, np.float32)
    want, want_lse = call(args, return_lse=True)
    for loose in (6, 99, 2**31 - 1):
        got, lse = call(dict(args, max_seqlen_q=loose, max_seqlen_k=loose), return_lse=True)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(lse, want_lse)
    # Integer scalars of numpy count as ints.
    got = call(dict(args, max_seqlen_q=np.int64(5), max_seqlen_k=np.int32(5)))
    np.testing.assert_array_equal(got, want)


def test_windows_longer_than_every_sequence_are_no_window(rng):
    args = good_args(rng, np.float32)
    want = call(args)
    for window in [(2**31 - 1, 2**31 - 1), (5, 5), (-1, 2**31 - 1)]:
        np.testing.assert_array_equal(call(args, window_size=window), want)


def test_rows_past_the_last_sequence(rng):
    """cu_seqlens_q[-1] < total_q: the trailing rows belong to no sequence. In arrays vflash
    allocates they are zeros with lse -inf (rows that see no key); a caller's out keeps them."""
    args = good_args(rng, np.float32)
    lengths, tail = [3, 5], 3
    args["q"] = np.concatenate([args["q"], rng.standard_normal((tail, 4, 16)).astype(np.float32)])
    assert int(args["cu_seqlens_q"][-1]) == sum(lengths) == args["q"].shape[0] - tail
    for _ in range(3):  # fresh allocations: garbage would show on some run
        out, lse = call(args, return_lse=True)
        assert out.shape == (sum(lengths) + tail, 4, 16)
        assert np.array_equal(out[-tail:], np.zeros((tail, 4, 16), np.float32)), out[-tail:]
        assert np.isneginf(lse[:, -tail:]).all(), lse[:, -tail:]
        assert np.isfinite(lse[:, :-tail]).all() and np.abs(out[:-tail]).max() > 0
        mine = np.full((sum(lengths) + tail, 4, 16), np.nan, np.float32)
        got = call(args, out=mine)
        assert got is mine and np.isnan(mine[-tail:]).all()
        np.testing.assert_array_equal(mine[:-tail], out[:-tail])


def test_read_only_inputs_are_accepted(rng):
    args = good_args(rng)
    want = call(args)
    for name in ("q", "k", "v", "cu_seqlens_q", "cu_seqlens_k"):
        args[name] = read_only(args[name].copy())
    np.testing.assert_array_equal(call(args), want)


@pytest.mark.parametrize("name", ["q", "k", "v", "cu_seqlens_q", "cu_seqlens_k"])
def test_non_native_byte_order_is_named(name, rng):
    args = good_args(rng)
    array = args[name]
    args[name] = array.astype(array.dtype.newbyteorder("S"))
    with pytest.raises(TypeError, match=f"^{name}: must be in the machine's byte order"):
        call(args)


def test_binding_names_arrays_it_cannot_take(rng):
    """The extension itself names the argument and the rule, for callers below the Python layer."""
    a = good_args(rng)
    out = np.zeros((8, 4, 16), np.float16)
    opts = (0.0, False, -1, -1, 0.0, 0, None)
    base = [a["q"], a["k"], a["v"], a["cu_seqlens_q"], a["cu_seqlens_k"], 5, 5]
    vflash._C.varlen_fwd(*base, out, None, *opts)
    with pytest.raises(ValueError, match="^out: must be writable"):
        vflash._C.varlen_fwd(*base, read_only(out.copy()), None, *opts)
    swapped = [x.astype(x.dtype.newbyteorder("S")) if i == 1 else x for i, x in enumerate(base)]
    with pytest.raises(TypeError, match="^k: must be in the machine's byte order"):
        vflash._C.varlen_fwd(*swapped, out, None, *opts)
    with pytest.raises(TypeError, match="^v: must be an array"):
        vflash._C.varlen_fwd(a["q"], a["k"], "not an array", *base[3:], out, None, *opts)
    with pytest.raises(ValueError, match="^lse: must be writable"):
        vflash._C.varlen_fwd(*base, out, read_only(np.zeros((4, 8), np.float32)), *opts)


BAD_TYPES = {
    "q float64": (lambda a: a.update(q=a["q"].astype(np.float64)), "q"),
    "k dtype differs": (lambda a: a.update(k=a["k"].astype(np.float32)), "k.dtype"),
    "out dtype differs": (lambda a: a.update(out=np.empty((8, 4, 16), np.float32)), "out.dtype"),
    "cu_seqlens int64": (lambda a: a.update(cu_seqlens_q=a["cu_seqlens_q"].astype(np.int64)), "cu_seqlens_q"),
    "q int32": (lambda a: a.update(q=a["q"].astype(np.int32)), "q.dtype"),
    "q a list": (lambda a: a.update(q=a["q"].tolist()), "q"),
    "k a list": (lambda a: a.update(k=a["k"].tolist()), "k"),
}


@pytest.mark.parametrize("case", sorted(BAD_TYPES))
def test_bad_type_raises_type_error_naming_the_argument(case, rng):
    mutate, name = BAD_TYPES[case]
    args = good_args(rng)
    mutate(args)
    with pytest.raises(TypeError) as err:
        call(args)
    assert name in str(err.value), f"message {str(err.value)!r} does not name {name}"


def test_dense_bad_input(rng):
    q = rng.standard_normal((2, 5, 4, 16)).astype(np.float16)
    with pytest.raises(ValueError, match="k.shape"):
        vflash.flash_attn_func(q, q[:1], q[:1])  # batch differs
    with pytest.raises(ValueError, match="q"):
        vflash.flash_attn_func(q[0], q[0], q[0])  # 3-D
    with pytest.raises(TypeError, match="v.dtype"):
        vflash.flash_attn_func(q, q, q.astype(np.float32))


def test_module_exposes_only_its_api():
    """`import vflash` gives the names of __all__ (plus subpackages imported by the caller), nothing else."""
    public = {
        name for name, value in vars(vflash).items()
        if not name.startswith("_") and not getattr(value, "__name__", "").startswith("vflash.")
    }
    assert public == set(vflash.__all__), sorted(public ^ set(vflash.__all__))
    for name in vflash.__all__:
        assert callable(getattr(vflash, name)), name
