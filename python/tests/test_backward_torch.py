"""torch backward: autograd through flash_attn_varlen_func / flash_attn_func
(torch.autograd.Function over the custom ops), the explicit
flash_attn_varlen_bwd, the backward op's fake implementation (opcheck),
torch.compile and CUDA graphs. CPU tensors run the float64 reference and are
compared with reference.py's numpy backward; GPU tests compare with it too and
skip without torch.cuda; all skip without torch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import reference  # noqa: E402
import vflash  # noqa: E402

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}  # relative to max |ref|


def cu_seqlens(lengths, device):
    return torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device=device)


def problem(seed, device, dtype, lens_q=(9, 0, 14, 3), lens_k=(11, 5, 14, 0), heads=(4, 2), d=32, dv=16):
    g = torch.Generator().manual_seed(seed)
    cu_q, cu_k = cu_seqlens(lens_q, device), cu_seqlens(lens_k, device)
    total_q, total_k = sum(lens_q) + 1, sum(lens_k)  # one q row past the last sequence

    def make(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    q, k, v = make(total_q, heads[0], d), make(total_k, heads[1], d), make(total_k, heads[1], dv)
    dout = make(total_q, heads[0], dv)
    return q, k, v, dout, cu_q, cu_k, max(lens_q), max(lens_k)


def check(got, want, dtype, what):
    got = got.detach().double().cpu().numpy()
    assert not np.isnan(got).any(), f"{what}: NaN"
    scale = max(np.abs(want).max(initial=0.0), 1e-6)
    err = np.abs(got - want).max(initial=0.0) / scale
    assert err <= TOL[dtype], f"{what}: max error {err:.3g} relative to max|ref| > {TOL[dtype]}"


def expected(q, k, v, dout, cu_q, cu_k, **options):
    as_np = [t.detach().double().cpu().numpy() for t in (dout, q, k, v)]
    scale = options.pop("softmax_scale", 1 / np.sqrt(q.shape[2]))
    return reference.attention_backward(*as_np, cu_q.cpu().numpy(), cu_k.cpu().numpy(), scale,
                                        options.get("causal", False), options.get("window_size", (-1, -1)),
                                        options.get("softcap", 0.0))


OPTIONS = [dict(), dict(causal=True), dict(window_size=(3, 1), softcap=2.0), dict(causal=True, window_size=(4, -1))]


def run_autograd(device, dtype, options, seed, deterministic=False):
    q, k, v, dout, cu_q, cu_k, max_q, max_k = problem(seed, device, dtype)
    for t in (q, k, v):
        t.requires_grad_(True)
    out = vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, deterministic=deterministic, **options)
    out.backward(dout)
    want = expected(q, k, v, dout, cu_q, cu_k, **options)
    for what, t, ref in zip(("dq", "dk", "dv"), (q, k, v), want):
        check(t.grad, ref, dtype, what)
        assert np.abs(ref).max() > 0
    assert not q.grad[int(cu_q[-1]):].any(), "rows past the last sequence get zero gradient"
    return q.grad, k.grad, v.grad


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_autograd_cpu(options, seed):
    run_autograd("cpu", torch.float32, dict(options), seed)


def test_autograd_lse_is_not_differentiable_and_out_is_refused(seed):
    q, k, v, dout, cu_q, cu_k, max_q, max_k = problem(seed, "cpu", torch.float32)
    q.requires_grad_(True)
    out, lse = vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, return_lse=True)
    assert out.requires_grad and not lse.requires_grad
    with pytest.raises(ValueError, match="out: a caller's out cannot take part in autograd"):
        vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, out=torch.empty_like(out))
    with pytest.raises(ValueError, match="dropout_p"):
        vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.1)


def test_explicit_backward_cpu_matches_autograd(seed):
    q, k, v, dout, cu_q, cu_k, max_q, max_k = problem(seed, "cpu", torch.float32)
    out, lse = vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=True, return_lse=True)
    dq, dk, dv = vflash.flash_attn_varlen_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, causal=True)
    want = expected(q, k, v, dout, cu_q, cu_k, causal=True)
    for what, got, ref in zip(("dq", "dk", "dv"), (dq, dk, dv), want):
        check(got, ref, torch.float32, what)


def test_dense_autograd_cpu(seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 6, 2, 16, generator=g, requires_grad=True) for _ in range(3))
    dout = torch.randn(2, 6, 2, 16, generator=g)
    vflash.flash_attn_func(q, k, v, causal=True).backward(dout)
    cu = torch.tensor([0, 6, 12], dtype=torch.int32)
    flat = [t.detach().reshape(12, 2, 16) for t in (q, k, v, dout)]
    want = expected(*flat[:3], flat[3], cu, cu, causal=True)
    for what, t, ref in zip(("dq", "dk", "dv"), (q, k, v), want):
        check(t.grad.reshape(12, 2, 16), ref, torch.float32, what)


def test_backward_op_fake_and_schema(seed):
    q, k, v, dout, cu_q, cu_k, max_q, max_k = problem(seed, "cpu", torch.float32)
    out, lse = vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, return_lse=True)
    args = (dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, 0.0, False, -1, -1, 0.0, False)
    torch.library.opcheck(torch.ops.vflash.varlen_bwd.default, args, test_utils=("test_schema", "test_faketensor"))


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_autograd_gpu(dtype, options, seed):
    run_autograd("cuda", dtype, dict(options), seed)


@needs_gpu
def test_deterministic_gpu_is_bit_identical(seed):
    first = run_autograd("cuda", torch.bfloat16, dict(causal=True), seed, deterministic=True)
    for _ in range(2):
        again = run_autograd("cuda", torch.bfloat16, dict(causal=True), seed, deterministic=True)
        for a, b in zip(first, again):
            assert torch.equal(a, b)


@needs_gpu
def test_compiled_backward_gpu(seed):
    q, k, v, dout, cu_q, cu_k, max_q, max_k = problem(seed, "cuda", torch.bfloat16)
    for t in (q, k, v):
        t.requires_grad_(True)

    @torch.compile(fullgraph=True)
    def loss(q, k, v):
        out = vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=True)
        return (out.float() * dout.float()).sum()

    loss(q, k, v).backward()
    want = expected(q, k, v, dout, cu_q, cu_k, causal=True)
    for what, t, ref in zip(("dq", "dk", "dv"), (q, k, v), want):
        check(t.grad, ref, torch.bfloat16, what)


@needs_gpu
def test_backward_in_cuda_graph(seed):
    q, k, v, dout, cu_q, cu_k, max_q, max_k = problem(seed, "cuda", torch.float16)
    out, lse = vflash.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, return_lse=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture
        vflash.flash_attn_varlen_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        grads = vflash.flash_attn_varlen_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k)
    for t in grads:
        t.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    want = expected(q, k, v, dout, cu_q, cu_k)
    for what, got, ref in zip(("dq", "dk", "dv"), grads, want):
        check(got, ref, torch.float16, what)
