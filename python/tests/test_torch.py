"""torch tests: GPU output against a float32 torch reference over the matrix of
the C++ GPU suite (head dims {32, 64, 72, 80, 96, 128, 192, 256}, fp16 / bf16,
causal / window, GQA / MQA, softcap, LSE, lengths 0, 1, 63, 64, 65, 4096),
torch.compile (fullgraph) and CUDA-graph capture through the custom op, streams
and CuPy interop. GPU tests skip without torch.cuda (CuPy ones without CuPy)."""
import math

import pytest

torch = pytest.importorskip("torch")
import vflash  # noqa: E402
from torch_reference import attention, spans_of_cu  # noqa: E402

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")

HEAD_DIMS = [32, 64, 72, 80, 96, 128, 192, 256]
TOL = {torch.float16: 2e-3, torch.bfloat16: 1e-2}  # relative to max |ref|, per element
LENGTHS = [0, 1, 63, 64, 65, 4096]


def torch_reference(q, k, v, cu_q, cu_k, **options):
    """float32 softmax(QK^T)V per sequence -> out, lse (heads_q, total_q)."""
    return attention(q, k, v, *spans_of_cu(cu_q, cu_k), **options)


def check(got, want, dtype, what):
    assert not torch.isnan(got).any(), f"{what}: NaN in output"
    scale = max(want.abs().max().item() if want.numel() else 0.0, 1e-6)
    err = (got.float() - want).abs().max().item() / scale if want.numel() else 0.0
    assert err <= TOL[dtype], f"{what}: max error {err:.3g} relative to max|ref| > {TOL[dtype]}"


def check_lse(got, want, what):
    assert not torch.isnan(got).any(), f"{what}: NaN in lse"
    assert torch.equal(torch.isneginf(got), torch.isneginf(want)), f"{what}: -inf rows differ"
    finite = torch.isfinite(want)
    if finite.any():
        err = (got[finite] - want[finite]).abs().max().item()
        assert err <= 1e-3 * max(1.0, want[finite].abs().max().item()), f"{what}: lse error {err:.3g}"


def cu_of(lengths, device):
    return torch.tensor([0] + list(lengths), device=device).cumsum(0).to(torch.int32)


@needs_gpu
@pytest.mark.parametrize("d,d_v", [(192, 128), (256, 64)])
def test_gpu_value_head_dim_differs(d, d_v, seed):
    torch.manual_seed(seed)
    lengths = [65, 0, 300]
    q, k = (torch.randn(sum(lengths), 4, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    v = torch.randn(sum(lengths), 4, d_v, device="cuda", dtype=torch.bfloat16)
    cu = cu_of(lengths, "cuda")
    out, lse = vflash.flash_attn_varlen_func(q, k, v, cu, cu, 300, 300, causal=True, return_lse=True)
    assert out.shape == (sum(lengths), 4, d_v)
    want, want_lse = torch_reference(q, k, v, cu, cu, causal=True)
    check(out, want, torch.bfloat16, f"d={d} d_v={d_v} seed={seed}")
    check_lse(lse, want_lse, "d_v lse")


@needs_gpu
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_dense(causal, seed):
    torch.manual_seed(seed)
    b, s, h, d = 3, 300, 4, 128
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out, lse = vflash.flash_attn_func(q, k, v, causal=causal, return_lse=True)
    cu = torch.arange(b + 1, device="cuda", dtype=torch.int32) * s
    want, want_lse = torch_reference(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), cu, cu, causal=causal)
    check(out.flatten(0, 1), want, torch.bfloat16, f"dense causal={causal} seed={seed}")
    check_lse(lse, want_lse.reshape(h, b, s).transpose(0, 1), "dense lse")


@needs_gpu
def test_gpu_result_matches_sdpa(seed):
    """The drop-in claim: same numbers as torch's own attention on one image."""
    torch.manual_seed(seed)
    s, h, d = 1024, 16, 80
    q, k, v = (torch.randn(s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    cu = torch.tensor([0, s], device="cuda", dtype=torch.int32)
    got = vflash.flash_attn_varlen_func(q, k, v, cu, cu, s, s)
    want = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(0, 1)[None].float() for x in (q, k, v)))
    check(got, want[0].transpose(0, 1), torch.bfloat16, "vs sdpa")


@needs_gpu
def test_custom_op_registration():
    """torch.library.opcheck: schema, fake (meta) kernel, and AOT dispatch agree with the real op."""
    lengths = [3, 70, 0, 129]
    dev = "cuda"
    q = torch.randn(sum(lengths), 4, 64, device=dev, dtype=torch.float16)
    k = torch.randn(sum(lengths), 2, 64, device=dev, dtype=torch.float16)
    cu = cu_of(lengths, dev)
    args = (q, k, k.clone(), cu, cu, max(lengths), max(lengths), 0.0, True, -1, -1, 0.0, True)
    torch.library.opcheck(torch.ops.vflash.varlen_fwd.default, args)
    dense = (q[None, :64], k[None, :64], k[None, :64].clone(), 0.0, False, -1, -1, 0.0, True)
    torch.library.opcheck(torch.ops.vflash.dense_fwd.default, dense)


@needs_gpu
# Inductor for the functional op; the `out=` op (a declared mutation) through AOT
# functionalization, which is where a mutating op can go wrong, without a second
# inductor compile.
@pytest.mark.parametrize("with_out,backend", [(False, "inductor"), (True, "aot_eager")])
def test_torch_compile_fullgraph(with_out, backend, seed):
    torch.manual_seed(seed)
    torch._dynamo.reset()
    lengths = [100, 7, 512]
    dev = "cuda"
    q, k, v = (torch.randn(sum(lengths), 8, 64, device=dev, dtype=torch.bfloat16) for _ in range(3))
    cu = cu_of(lengths, dev)
    proj = torch.randn(64, 64, device=dev, dtype=torch.bfloat16)

    def block(q, k, v, cu):
        out = torch.empty_like(q) if with_out else None
        o, lse = vflash.flash_attn_varlen_func(
            q @ proj, k, v, cu, cu, max(lengths), max(lengths), causal=True, return_lse=True, out=out
        )
        # Sum in fp32: a bf16 sum rounds (ulp 0.06 near 10) where inductor's fused one need not.
        return o.float().sum(dim=-1) + lse.t(), o

    eager = block(q, k, v, cu)
    compiled = torch.compile(block, fullgraph=True, backend=backend)(q, k, v, cu)
    for e, c in zip(eager, compiled):
        # The attention is the same kernel; the surrounding ops may fuse and round differently,
        # so bf16 tolerances (a wrongly wired op is off by O(1)).
        torch.testing.assert_close(c, e, rtol=1.6e-2, atol=1e-2)


@needs_gpu
def test_cuda_graph_capture_and_replay(seed):
    torch.manual_seed(seed)
    lengths = [64, 300, 1, 65]
    dev = "cuda"
    q, k, v = (torch.randn(sum(lengths), 4, 128, device=dev, dtype=torch.float16) for _ in range(3))
    cu = cu_of(lengths, dev)

    def run():
        return vflash.flash_attn_varlen_func(q, k, v, cu, cu, max(lengths), max(lengths), causal=True,
                                             return_lse=True)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture, as torch recommends
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = run()
    for _ in range(2):  # new inputs in the captured buffers, then replay
        for t in (q, k, v):
            t.copy_(torch.randn_like(t))
        graph.replay()
        torch.cuda.synchronize()
        want, want_lse = torch_reference(q, k, v, cu, cu, causal=True)
        check(out, want, torch.float16, f"graph replay seed={seed}")
        check_lse(lse, want_lse, "graph replay lse")


@needs_gpu
def test_runs_on_the_current_stream(seed):
    torch.manual_seed(seed)
    lengths = [2000, 3000]
    q, k, v = (torch.randn(sum(lengths), 8, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    cu = cu_of(lengths, "cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = vflash.flash_attn_varlen_func(q, k, v, cu, cu, 3000, 3000)
    stream.synchronize()  # only this stream: the result must be complete on it
    want, _ = torch_reference(q, k, v, cu, cu)
    check(out, want, torch.bfloat16, "side stream")


@needs_gpu
def test_gpu_bad_input_raises():
    q = torch.randn(8, 4, 64, device="cuda", dtype=torch.float16)
    cu_cpu = torch.tensor([0, 8], dtype=torch.int32)
    with pytest.raises(ValueError, match="cu_seqlens_q.device"):
        vflash.flash_attn_varlen_func(q, q, q, cu_cpu, cu_cpu, 8, 8)
    cu = cu_cpu.cuda()
    with pytest.raises(TypeError, match="dtype"):
        vflash.flash_attn_varlen_func(q.float(), q.float(), q.float(), cu, cu, 8, 8)
    with pytest.raises(ValueError, match="k.shape"):
        vflash.flash_attn_varlen_func(q, q[:, :3], q[:, :3], cu, cu, 8, 8)
    # the process is still healthy: a valid call works afterwards
    vflash.flash_attn_varlen_func(q, q, q, cu, cu, 8, 8)
    torch.cuda.synchronize()


def test_torch_cpu_tensors_use_the_cpu_reference(seed):
    torch.manual_seed(seed)
    lengths = [5, 9]
    q, k, v = (torch.randn(sum(lengths), 2, 16, dtype=torch.float32) for _ in range(3))
    cu = cu_of(lengths, "cpu")
    out = vflash.flash_attn_varlen_func(q, k, v, cu, cu, 9, 9, causal=True)
    want, _ = torch_reference(q, k, v, cu, cu, causal=True)
    assert torch.allclose(out, want, atol=1e-5)


@needs_gpu
def test_cupy_interop(seed):
    cupy = pytest.importorskip("cupy")
    rs = cupy.random.RandomState(seed)
    lengths = [33, 64, 0, 200]
    q, k, v = (rs.standard_normal((sum(lengths), 4, 64)).astype(cupy.float16) for _ in range(3))
    cu = cupy.asarray([0] + list(cupy.cumsum(cupy.asarray(lengths)).get()), dtype=cupy.int32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        out, lse = vflash.flash_attn_varlen_func(q, k, v, cu, cu, max(lengths), max(lengths), causal=True,
                                                 return_lse=True)
    stream.synchronize()
    assert isinstance(out, cupy.ndarray) and out.dtype == cupy.float16 and lse.dtype == cupy.float32
    tq, tk, tv, tcu = (torch.from_dlpack(x) for x in (q, k, v, cu))
    want, want_lse = torch_reference(tq, tk, tv, tcu, tcu, causal=True)
    check(torch.from_dlpack(out), want, torch.float16, f"cupy seed={seed}")
    check_lse(torch.from_dlpack(lse), want_lse, "cupy lse")


# The matrix of the C++ GPU suite comes last: the feature tests above are quicker.
MODES = {
    # name: (heads_q, heads_k, options, key lengths or None (= query lengths))
    "plain": (4, 4, {}, None),
    "causal": (4, 4, dict(causal=True), None),
    "window": (4, 4, dict(window_size=(48, 16)), None),
    "gqa-causal-window": (8, 2, dict(causal=True, window_size=(100, -1)), None),
    "mqa": (4, 1, {}, None),
    "softcap": (4, 4, dict(softcap=2.0), None),
    "causal-q-ne-k": (2, 2, dict(causal=True), [5, 1, 100, 64, 30, 4000]),
}


@needs_gpu
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_gpu_matches_float32_reference(head_dim, dtype, mode, seed):
    torch.manual_seed(seed)
    heads_q, heads_k, options, lengths_k = MODES[mode]
    lengths_k = lengths_k or LENGTHS
    dev = torch.device("cuda")
    q = torch.randn(sum(LENGTHS), heads_q, head_dim, device=dev, dtype=dtype)
    k = torch.randn(sum(lengths_k), heads_k, head_dim, device=dev, dtype=dtype)
    v = torch.randn(sum(lengths_k), heads_k, head_dim, device=dev, dtype=dtype)
    cu_q, cu_k = cu_of(LENGTHS, dev), cu_of(lengths_k, dev)
    out = torch.full_like(q, math.nan)  # poisoned: every row must be written
    got, lse = vflash.flash_attn_varlen_func(
        q, k, v, cu_q, cu_k, max(LENGTHS), max(lengths_k), return_lse=True, out=out, **options
    )
    torch.cuda.synchronize()
    assert got is out and lse.shape == (heads_q, q.shape[0]) and lse.dtype == torch.float32
    want, want_lse = torch_reference(
        q, k, v, cu_q, cu_k, causal=options.get("causal", False), window=options.get("window_size", (-1, -1)),
        softcap=options.get("softcap", 0.0),
    )
    kernel = vflash.varlen_kernel_name(q, k, v, cu_q, cu_k, max(LENGTHS), max(lengths_k), return_lse=True, **options)
    what = f"d={head_dim} {dtype} {mode} seed={seed} kernel={kernel}"
    check(got, want, dtype, what)
    check_lse(lse, want_lse, what)


def test_eager_calls_skip_the_registered_op_unless_autograd_is_involved(seed, monkeypatch):
    """Eager calls run the ops' implementation directly (the op's dispatch costs tens of
    microseconds a call); inputs that require grad still go through the registered op."""
    from vflash import _torch_ops

    through_op = []
    registered = _torch_ops._VARLEN
    monkeypatch.setattr(_torch_ops, "_VARLEN", lambda *args: through_op.append(1) or registered(*args))
    torch.manual_seed(seed)
    lengths = [3, 4]
    q, k, v = (torch.randn(sum(lengths), 2, 16, dtype=torch.float32) for _ in range(3))
    cu = cu_of(lengths, "cpu")
    eager = vflash.flash_attn_varlen_func(q, k, v, cu, cu, 4, 4, softmax_scale=0.3, causal=True)
    assert through_op == []
    via_op, _ = torch.ops.vflash.varlen_fwd.default(q, k, v, cu, cu, 4, 4, 0.3, True, -1, -1, 0.0, False)
    assert torch.equal(eager, via_op)
    q.requires_grad_()
    vflash.flash_attn_varlen_func(q, k, v, cu, cu, 4, 4, softmax_scale=0.3, causal=True)
    assert through_op == [1]
    with torch.no_grad():
        vflash.flash_attn_varlen_func(q, k, v, cu, cu, 4, 4, softmax_scale=0.3, causal=True)
    assert through_op == [1]
