"""vflash.integrations.transformers on the CPU (vflash's reference, fp32): the registry hook,
each path of the attention function against torch's SDPA, and tiny Qwen2.5-VL / Qwen3-VL
vision towers and a Qwen2 language model with attn_implementation="vflash" against "sdpa".
Skipped without torch or transformers."""
import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402

vt = pytest.importorskip("vflash.integrations.transformers")
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS  # noqa: E402
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # noqa: E402

TOL = 1e-5


class Module(torch.nn.Module):
    def __init__(self, is_causal, groups=1):
        super().__init__()
        self.is_causal, self.num_key_value_groups = is_causal, groups


def close(a, b):
    return (a - b).abs().max().item() <= TOL * max(b.abs().max().item(), 1e-6)


def qkv(gen, batch, heads_q, heads_k, seq_q, seq_k, d=16, grad=False):
    make = lambda h, s: torch.randn(batch, h, s, d, generator=gen, requires_grad=grad)  # noqa: E731
    return make(heads_q, seq_q), make(heads_k, seq_k), make(heads_k, seq_k)


@pytest.fixture
def gen(seed):
    return torch.Generator().manual_seed(seed)


def sdpa_per_sequence(q, k, v, bounds, causal=False):
    """(1, H, S, D) packed -> (1, S, H, D), attention within each [bounds[i], bounds[i+1])."""
    outs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        outs.append(F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=causal))
    return torch.cat(outs, dim=2).transpose(1, 2)


def test_registered_with_both_registries():
    assert ALL_ATTENTION_FUNCTIONS["vflash"] is vt.attention_forward
    assert ALL_MASK_ATTENTION_FUNCTIONS["vflash"] is ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]
    import transformers.modeling_utils as mu

    assert mu.lazy_import_flash_attention("vflash") is None  # nothing to preload for vflash
    assert vt.register("vflash_again") == "vflash_again" and "vflash_again" in ALL_ATTENTION_FUNCTIONS
    with pytest.raises(ValueError, match="name"):
        vt.register("")


@pytest.mark.parametrize("causal", [False, True])
def test_packed_call_is_one_varlen_call(causal, gen):
    bounds = [0, 5, 5, 22, 40]
    q, k, v = qkv(gen, 1, 4, 4, 40, 40)
    cu = torch.tensor(bounds, dtype=torch.int32)
    vt.reset_call_counts()
    out, weights = vt.attention_forward(Module(False), q, k, v, None, scaling=None, is_causal=causal,
                                        cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=18, max_length_k=18)
    assert weights is None and out.shape == (1, 40, 4, 16)
    assert vt.call_counts() == {"varlen": 1, "padded": 0, "dense": 0, "fallback": 0}
    assert close(out, sdpa_per_sequence(q, k, v, bounds, causal))


def test_packed_call_needing_gradients_takes_the_torch_path(gen):
    bounds = [0, 7, 19]
    q, k, v = qkv(gen, 1, 4, 2, 19, 19, grad=True)
    cu = torch.tensor(bounds, dtype=torch.int32)
    vt.reset_call_counts()
    out, _ = vt.attention_forward(Module(False), q, k, v, None, is_causal=False, cu_seq_lens_q=cu,
                                  cu_seq_lens_k=cu, sliding_window=3, softcap=2.0)
    assert vt.call_counts()["fallback"] == 1 and vt.call_counts()["varlen"] == 0
    out.sum().backward()
    assert q.grad is not None
    with torch.no_grad():
        vt.reset_call_counts()
        served, _ = vt.attention_forward(Module(False), q, k, v, None, is_causal=False, cu_seq_lens_q=cu,
                                         cu_seq_lens_k=cu, sliding_window=3, softcap=2.0)
        assert vt.call_counts()["varlen"] == 1
    assert close(out.detach(), served)


def test_unserved_head_dim_takes_the_torch_path(gen):
    bounds = [0, 9, 30]
    q, k, v = qkv(gen, 1, 2, 2, 30, 30, d=12)
    cu = torch.tensor(bounds, dtype=torch.int32)
    vt.reset_call_counts()
    out, _ = vt.attention_forward(Module(False), q, k, v, None, is_causal=False, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    assert vt.call_counts()["fallback"] == 1
    assert close(out, sdpa_per_sequence(q, k, v, bounds))


@pytest.mark.parametrize("causal, seq_q, seq_k, path", [
    (False, 13, 21, "dense"), (True, 17, 17, "dense"), (True, 1, 9, "dense"), (True, 5, 9, "fallback"),
])
def test_no_mask_follows_sdpa(causal, seq_q, seq_k, path, gen):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v = qkv(gen, 2, 4, 2, seq_q, seq_k)
    module = Module(causal, groups=2)
    vt.reset_call_counts()
    out, _ = vt.attention_forward(module, q, k, v, None, scaling=0.2)
    assert vt.call_counts()[path] == 1
    want, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.2)
    assert close(out, want)


def test_4d_mask_goes_to_sdpa(gen):
    q, k, v = qkv(gen, 2, 2, 2, 6, 6)
    mask = torch.rand(2, 1, 6, 6, generator=gen) > 0.3
    mask[..., 0] = True
    vt.reset_call_counts()
    out, _ = vt.attention_forward(Module(False), q, k, v, mask)
    assert vt.call_counts()["fallback"] == 1
    assert close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2))


def test_2d_padding_mask_has_flash_attention_semantics(gen):
    q, k, v = qkv(gen, 2, 2, 2, 8, 8)
    pad = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [1] * 8])  # left padding in the first row
    vt.reset_call_counts()
    out, _ = vt.attention_forward(Module(True), q, k, v, pad)
    assert vt.call_counts()["padded"] == 1
    assert torch.all(out[0, :3] == 0)  # padded query rows
    for b, start in ((0, 3), (1, 0)):
        want = F.scaled_dot_product_attention(q[b:b + 1, :, start:], k[b:b + 1, :, start:], v[b:b + 1, :, start:],
                                              is_causal=True).transpose(1, 2)
        assert close(out[b:b + 1, start:], want)


def test_attention_sinks_are_refused(gen):
    q, k, v = qkv(gen, 1, 2, 2, 4, 4)
    with pytest.raises(ValueError, match="s_aux"):
        vt.attention_forward(Module(True), q, k, v, None, s_aux=torch.zeros(2))


# --- whole models ---------------------------------------------------------------------------


def build_pair(model_class, config):
    models = {}
    for impl in ("sdpa", "vflash"):
        torch.manual_seed(0)
        models[impl] = model_class._from_config(copy.deepcopy(config), attn_implementation=impl).eval()
    models["vflash"].load_state_dict(models["sdpa"].state_dict())
    assert models["vflash"].config._attn_implementation == "vflash"
    return models


def count_layer_calls(model):
    """Per vision block: the call counts its attention added (a forward hook on each block)."""
    seen = []
    for block in model.blocks:
        block.attn.register_forward_pre_hook(lambda *_: seen.append(vt.call_counts()))
        block.attn.register_forward_hook(lambda *_: seen.append(vt.call_counts()))
    return seen


def check_tower(models, grid, pixels, depth):
    seen = count_layer_calls(models["vflash"])
    with torch.no_grad():
        want = models["sdpa"](pixels, grid_thw=grid)
        vt.reset_call_counts()
        got = models["vflash"](pixels, grid_thw=grid)
    assert vt.call_counts() == {"varlen": depth, "padded": 0, "dense": 0, "fallback": 0}
    deltas = [{key: after[key] - before[key] for key in after} for before, after in zip(seen[::2], seen[1::2])]
    assert deltas == [{"varlen": 1, "padded": 0, "dense": 0, "fallback": 0}] * depth  # every layer served by vflash
    for name in ("last_hidden_state", "pooler_output"):
        assert close(getattr(got, name), getattr(want, name)), name


GRID = [[1, 8, 12], [1, 16, 16], [1, 4, 4], [2, 6, 8]]  # (t, h, w) in patches: images and a 2-frame video


def test_qwen2_5_vl_vision_tower_full_and_windowed_layers():
    module = pytest.importorskip("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl")
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig

    config = Qwen2_5_VLVisionConfig(depth=4, hidden_size=64, num_heads=4, intermediate_size=128,
                                    out_hidden_size=48, fullatt_block_indexes=[1, 3], window_size=56)
    models = build_pair(module.Qwen2_5_VisionTransformerPretrainedModel, config)
    cu_seen = []
    models["vflash"].blocks[0].attn.register_forward_pre_hook(
        lambda mod, args, kwargs: cu_seen.append(kwargs["cu_seqlens"]), with_kwargs=True)
    models["vflash"].blocks[1].attn.register_forward_pre_hook(
        lambda mod, args, kwargs: cu_seen.append(kwargs["cu_seqlens"]), with_kwargs=True)
    grid = torch.tensor(GRID)
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14)
    check_tower(models, grid, pixels, depth=4)
    windowed, full = cu_seen[-2], cu_seen[-1]
    assert len(full) == 1 + len(GRID) + 1  # one sequence per image, per frame of the video
    assert len(windowed) > len(full)  # the windowed layer's sequences are the windows


def test_qwen3_vl_vision_tower():
    module = pytest.importorskip("transformers.models.qwen3_vl.modeling_qwen3_vl")
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLVisionConfig

    config = Qwen3VLVisionConfig(depth=3, hidden_size=64, num_heads=4, intermediate_size=128, out_hidden_size=48,
                                 deepstack_visual_indexes=[1], num_position_embeddings=256)
    models = build_pair(module.Qwen3VLVisionModel, config)
    grid = torch.tensor(GRID)
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 16 * 16)
    check_tower(models, grid, pixels, depth=3)


def test_causal_language_model_with_padding_matches_sdpa():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    models = build_pair(Qwen2ForCausalLM, config)
    ids = torch.randint(0, 97, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, :4] = 0
    with torch.no_grad():
        for attention_mask, path in ((None, "dense"), (mask, "fallback")):
            vt.reset_call_counts()
            got = models["vflash"](ids, attention_mask=attention_mask).logits
            want = models["sdpa"](ids, attention_mask=attention_mask).logits
            assert vt.call_counts()[path] == 2, vt.call_counts()
            keep = slice(None) if attention_mask is None else (mask == 1)
            assert close(got[keep], want[keep])
