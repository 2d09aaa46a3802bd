"""vflash.compat.fa3 against FlashAttention-3 itself (the fa3-fwd wheel's ``fa3_fwd_interface``)
on the same random bf16 inputs: flash_attn_varlen_func over mixed-length batches (a zero-length
query side, a zero-length key side, rows without keys), MHA and GQA, causal, the window
readings, softcap, seqused_k, with and without LSE, head dims 64 / 96 / 128 / 256, and
flash_attn_func causal and not.

Checks: the same return structure (a tensor, or an (out, lse) tuple), shapes, dtypes and LSE
layout; vflash's error against a float32 torch reference at most twice FA3's (+1e-3, relative
to max |ref|) and the two outputs within 2e-2 of each other; LSE within 1e-3 relative where a
row has keys and infinite in both where it has none (vflash -inf, FA3 +inf: see docs/python.md).

The fa3-fwd build leaves local (sliding-window) attention out: a real window is checked against
the reference alone when FA3 refuses it; the window readings FA3 turns into causal or no window
(a side of -1, a side past every sequence) are compared with FA3.

Skips without torch, without a CUDA GPU, or without fa3_fwd_interface (the wheel installed
with `pip install --no-index --no-deps --target DIR .whl/fa3_fwd-*.whl`, DIR on PYTHONPATH)."""

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU visible to torch", allow_module_level=True)
fa3_ref = pytest.importorskip("fa3_fwd_interface")

from vflash.compat import fa3  # noqa: E402
from torch_reference import attention  # noqa: E402

DTYPE = torch.bfloat16
OUT_VS_FA3 = 2e-2  # max |vflash - FA3| relative to max |ref|
REF_ALONE = 1e-2  # vflash vs the float32 reference where FA3 does not serve the call
LSE_REL = 1e-3

# (lengths_q, lengths_k): self-attention with an empty sequence; cross lengths with an empty
# query side, an empty key side (rows without keys) and Lq > Lk (causal rows without keys).
SELF = ([130, 0, 1, 63, 257, 17, 512], [130, 0, 1, 63, 257, 17, 512])
CROSS = ([40, 0, 100, 9, 300, 64], [60, 33, 0, 3, 450, 64])


def cu_of(lengths):
    return torch.tensor([0] + list(lengths), device="cuda").cumsum(0).to(torch.int32)


def make_inputs(lengths_q, lengths_k, heads_q, heads_k, d, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    rand = lambda n, h: torch.randn(n, h, d, device="cuda", generator=gen).to(DTYPE)  # noqa: E731
    return rand(sum(lengths_q), heads_q), rand(sum(lengths_k), heads_k), rand(sum(lengths_k), heads_k)


def spans(lengths, used=None):
    starts = [0]
    for n in lengths[:-1]:
        starts.append(starts[-1] + n)
    return list(zip(starts, used if used is not None else lengths))


def unpack(result, want_lse, what):
    """(out, lse or None), after checking the return structure."""
    if want_lse:
        assert isinstance(result, tuple) and len(result) == 2, f"{what}: expected (out, lse), got {type(result)}"
        return result
    assert isinstance(result, torch.Tensor), f"{what}: expected a tensor, got {type(result)}"
    return result, None


def rel_err(got, want, scale):
    return (got.float() - want).abs().max().item() / scale if want.numel() else 0.0


def compare(ours, theirs, ref, want_lse, what):
    """ours / theirs: call results (theirs None: FA3 refused the call); ref: (out, lse) float32."""
    out, lse = unpack(ours, want_lse, f"{what} vflash")
    want, want_lse_ = ref
    assert out.shape == want.shape and out.dtype == DTYPE and out.device == want.device, \
        f"{what}: out {tuple(out.shape)} {out.dtype} {out.device}"
    assert not torch.isnan(out).any(), f"{what}: NaN in vflash's output"
    scale = max(want.abs().max().item() if want.numel() else 0.0, 1e-6)
    err = rel_err(out, want, scale)
    keyless = torch.isneginf(want_lse_)  # (heads_q, rows)
    if keyless.any():
        rows = keyless.transpose(-1, -2) if out.dim() == 3 else keyless.transpose(1, 2)
        assert not out[rows].any(), f"{what}: rows without keys are not zero in vflash's output"
    if theirs is None:
        assert err <= REF_ALONE, f"{what}: vflash error {err:.3g} vs float32 reference > {REF_ALONE}"
    else:
        out_f, lse_f = unpack(theirs, want_lse, f"{what} FA3")
        assert out_f.shape == out.shape and out_f.dtype == out.dtype, \
            f"{what}: FA3 out {tuple(out_f.shape)} {out_f.dtype} vs vflash {tuple(out.shape)} {out.dtype}"
        err_f = rel_err(out_f, want, scale)
        assert err <= 2 * err_f + 1e-3, f"{what}: vflash error {err:.3g} > 2 x FA3's {err_f:.3g} + 1e-3"
        diff = rel_err(out, out_f.float(), scale)
        assert diff <= OUT_VS_FA3, f"{what}: max |vflash - FA3| {diff:.3g} > {OUT_VS_FA3} (FA3 vs ref {err_f:.3g})"
    if not want_lse:
        return
    assert lse.shape == want_lse_.shape and lse.dtype == torch.float32, \
        f"{what}: lse {tuple(lse.shape)} {lse.dtype}, want {tuple(want_lse_.shape)} float32"
    assert not torch.isnan(lse).any(), f"{what}: NaN in vflash's lse"
    assert torch.equal(torch.isneginf(lse), keyless), f"{what}: vflash's -inf lse rows differ from the keyless rows"
    finite = ~keyless
    bound = lambda x: LSE_REL * x.abs().clamp(min=1.0)  # noqa: E731
    if finite.any():
        e = (lse[finite] - want_lse_[finite]).abs()
        assert (e <= bound(want_lse_[finite])).all(), f"{what}: vflash lse vs reference, max error {e.max().item():.3g}"
    if theirs is not None:
        assert lse_f.shape == lse.shape and lse_f.dtype == lse.dtype, \
            f"{what}: FA3 lse {tuple(lse_f.shape)} {lse_f.dtype} vs vflash {tuple(lse.shape)} {lse.dtype}"
        if finite.any():
            e = (lse[finite] - lse_f[finite]).abs()
            assert (e <= bound(lse_f[finite])).all(), f"{what}: lse vs FA3, max difference {e.max().item():.3g}"
        assert torch.isinf(lse_f[keyless]).all(), f"{what}: FA3's lse is finite on rows without keys"


def run_varlen(lengths, heads, d, seed, want_lse, seqused_k=None, **kw):
    lengths_q, lengths_k = lengths
    q, k, v = make_inputs(lengths_q, lengths_k, heads[0], heads[1], d, seed)
    cu_q, cu_k = cu_of(lengths_q), cu_of(lengths_k)
    used_k = None if seqused_k is None else torch.tensor(seqused_k, device="cuda", dtype=torch.int32)
    args = (q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k))
    ours = fa3.flash_attn_varlen_func(*args, seqused_k=used_k, return_attn_probs=want_lse, **kw)
    try:
        theirs = fa3_ref.flash_attn_varlen_func(*args, seqused_k=used_k, return_attn_probs=want_lse, **kw)
    except RuntimeError as error:
        if "local" not in str(error):  # "does not support local attention" / "Expected !params.is_local"
            raise
        theirs = None  # this FA3 build has no sliding window
    ref_kw = {key: kw[key] for key in ("causal", "softcap") if key in kw}
    ref_kw["scale"] = kw.get("softmax_scale")
    ref_kw["window"] = kw.get("window_size", (-1, -1))
    ref = attention(q, k, v, spans(lengths_q), spans(lengths_k, seqused_k), **ref_kw)
    return ours, theirs, ref


@pytest.mark.parametrize("want_lse", [False, True], ids=["out", "lse"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("heads", [(8, 8), (8, 2)], ids=["mha", "gqa"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("lengths", [SELF, CROSS], ids=["self", "cross"])
def test_varlen_matches_fa3(lengths, d, heads, causal, want_lse, seed):
    ours, theirs, ref = run_varlen(lengths, heads, d, seed, want_lse, causal=causal)
    assert theirs is not None
    compare(ours, theirs, ref, want_lse, f"d={d} heads={heads} causal={causal} seed={seed}")


@pytest.mark.parametrize("d", [96, 256])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_varlen_other_head_dims(d, causal, seed):
    ours, theirs, ref = run_varlen(CROSS, (8, 2), d, seed, True, causal=causal)
    assert theirs is not None
    compare(ours, theirs, ref, True, f"d={d} causal={causal} seed={seed}")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("d", [64, 128])
def test_varlen_softcap(d, causal, seed):
    ours, theirs, ref = run_varlen(SELF, (8, 2), d, seed, True, causal=causal, softcap=5.0, softmax_scale=0.25)
    assert theirs is not None
    compare(ours, theirs, ref, True, f"softcap d={d} causal={causal} seed={seed}")


# FA3 reads (-1, 0) and (>= max_seqlen_k - 1, 0) as causal, a side >= max_seqlen - 1 as none;
# (48, 16), (0, 0) and (100, 0) are sliding windows (compared with FA3 where the build serves them).
FA3_READS_AS_CAUSAL_OR_FULL = [(-1, 0), (600, 0), (-1, 600), (600, 600)]  # 600 > every length here


@pytest.mark.parametrize("window,causal", [
    ((-1, 0), False), ((600, 0), False), ((-1, 600), False), ((600, 600), False),
    ((48, 16), False), ((0, 0), False), ((100, 0), False), ((100, 5), True),
])
@pytest.mark.parametrize("lengths", [SELF, CROSS], ids=["self", "cross"])
def test_varlen_window(lengths, window, causal, seed):
    ours, theirs, ref = run_varlen(lengths, (8, 2), 128, seed, True, causal=causal, window_size=window)
    if window in FA3_READS_AS_CAUSAL_OR_FULL:
        assert theirs is not None, f"FA3 refused window {window}, which it reads as causal or no window"
    compare(ours, theirs, ref, True, f"window={window} causal={causal} seed={seed}")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_varlen_seqused_k(causal, seed):
    lengths = ([40, 0, 100, 9, 300], [64, 33, 128, 16, 300])
    used_k = [40, 20, 0, 16, 123]
    ours, theirs, ref = run_varlen(lengths, (8, 2), 64, seed, True, seqused_k=used_k, causal=causal)
    assert theirs is not None
    compare(ours, theirs, ref, True, f"seqused_k causal={causal} seed={seed}")


@pytest.mark.parametrize("causal,want_lse", [(False, False), (True, True)], ids=["full", "causal-lse"])
def test_dense_matches_fa3(causal, want_lse, seed):
    b, s_q, s_k, h, h_k, d = 3, 200, 333, 8, 2, 128
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(b, s_q, h, d, device="cuda", generator=gen).to(DTYPE)
    k, v = (torch.randn(b, s_k, h_k, d, device="cuda", generator=gen).to(DTYPE) for _ in range(2))
    ours = fa3.flash_attn_func(q, k, v, causal=causal, return_attn_probs=want_lse)
    theirs = fa3_ref.flash_attn_func(q, k, v, causal=causal, return_attn_probs=want_lse)
    out, lse = attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), spans([s_q] * b), spans([s_k] * b),
                         causal=causal)
    ref = (out.reshape(b, s_q, h, d), lse.reshape(h, b, s_q).transpose(0, 1))  # lse (batch, heads, seqlen_q)
    compare(ours, theirs, ref, want_lse, f"dense causal={causal} seed={seed}")
