"""tokred.patch against the official ToMe and the unpatched timm model."""
import copy
import os
import sys

import pytest
import timm
import torch
from timm.models.vision_transformer import Block, VisionTransformer

import tokred
from tokred.select import bipartite_plan

sys.path.insert(0, os.path.dirname(__file__))
import make_tome_reference as ref  # noqa: E402

REF = torch.load(os.path.join(os.path.dirname(__file__), "data", "tome_reference.pt"), weights_only=False)


def _models():
    return ref.build_models()


@pytest.mark.parametrize("name", ["plain", "distilled"])
@pytest.mark.parametrize("i", range(len(ref.SCHEDULES)))
def test_matches_recorded_official_tome(name, i):
    model = _models()[name]
    model.load_state_dict(REF["models"][name])
    r = REF["schedules"][i]
    tokred.patch(model, method="tome", r=r)
    with torch.no_grad():
        out = model(REF["inputs"].float())
    torch.testing.assert_close(out, REF["logits"][(name, i)], atol=1e-5, rtol=0)


def test_r0_equals_unpatched_fused():
    model = timm.create_model("deit_tiny_patch16_224").eval()
    assert model.blocks[0].attn.fused_attn
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        base = model(x)
        tokred.patch(model, r=0)
        out = model(x)
    torch.testing.assert_close(out, base, atol=1e-5, rtol=0)


def test_repatch_and_unpatch_restore():
    model = _models()["plain"]
    x = REF["inputs"].float()
    with torch.no_grad():
        base = model(x)
        tokred.patch(model, r=13)
        reduced = model(x)
        tokred.patch(model, r=0)
        again = model(x)
        tokred.unpatch(model)
        restored = model(x)
    assert (reduced - base).abs().max() > 1e-4  # the reduction really changes the output
    torch.testing.assert_close(again, base, atol=1e-5, rtol=0)
    torch.testing.assert_close(restored, base, atol=0, rtol=0)
    assert type(model) is VisionTransformer and all(type(b) is Block for b in model.blocks)
    assert not tokred.is_patched(model)


def test_keep_ratio_schedule_and_token_counts():
    model = _models()["plain"]
    seen = []
    model.blocks[-1].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    tokred.patch(model, keep=[0.3, 0.9])  # 0.3 is capped at 50% of the 196 patches
    with torch.no_grad():
        model(REF["inputs"].float())
    assert model._tokred.rs == [98, 10, 0, 0, 0, 0]
    assert seen == [1 + 196 - 98 - 10]


def test_trace_source_partitions_input_patches():
    model = _models()["distilled"]
    tokred.patch(model, r=20, trace_source=True)
    with torch.no_grad():
        model(REF["inputs"].float())
    src = model._tokred.source  # [B, tokens, 2 + 196]
    assert src.shape == (3, 2 + 196 - 6 * 20, 198)
    # every input token is held by exactly one output token; protected tokens hold only themselves
    torch.testing.assert_close(src.sum(1), torch.ones(3, 198))
    assert src[:, 0, 0].eq(1).all() and src[:, 1, 1].eq(1).all()
    assert src[:, :2].sum(-1).eq(1).all()
    torch.testing.assert_close(model._tokred.size[..., 0], src.sum(-1))


def test_protected_tokens_never_merge():
    torch.manual_seed(0)
    metric = torch.randn(2, 11, 4)
    metric[:, 1] = metric[:, 2]  # the distill token is the perfect match of an A token
    plan = bipartite_plan(metric, 5, num_prefix_tokens=2)
    idx = plan.index
    assert plan.num_out == 11 - (11 - 2) // 2  # r capped at half the unprotected tokens
    assert idx[:, 0].eq(0).all() and idx[:, 1].eq(1).all()
    for b in range(2):
        assert (idx[b] == 0).sum() == 1 and (idx[b] == 1).sum() == 1


def test_patch_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        tokred.patch(_models()["plain"], method="nope", r=1)
    with pytest.raises(ValueError, match="keep"):
        tokred.patch(_models()["plain"], keep=1.5)
    with pytest.raises(TypeError):
        tokred.patch(torch.nn.Linear(2, 2), r=1)
