"""FLOPs against the reference numbers of docs/method.md §5 and the ToMe paper (DeiT-S, fvcore, attention counted)."""
import pytest
import timm

import tokred


@pytest.fixture(scope="module")
def deit_s():
    return timm.create_model("deit_small_patch16_224").eval()


def test_deit_small_baseline_counts_fused_attention(deit_s):
    assert deit_s.blocks[0].attn.fused_attn
    assert tokred.count_flops(deit_s) == pytest.approx(4.608, rel=0.005)


@pytest.mark.parametrize("r, ref", [(13, 2.712), (4, 4.016), (16, 2.298)])
def test_deit_small_tome(deit_s, r, ref):
    tokred.patch(deit_s, r=r)
    try:
        assert tokred.count_flops(deit_s) == pytest.approx(ref, rel=0.005)
    finally:
        tokred.unpatch(deit_s)


def test_patched_r0_equals_unpatched(deit_s):
    base = tokred.count_flops(deit_s)
    tokred.patch(deit_s, r=0)
    try:
        assert tokred.count_flops(deit_s) == pytest.approx(base, rel=1e-9)
    finally:
        tokred.unpatch(deit_s)


@pytest.mark.parametrize("keep_shape, method", [("uniform", "hquota_ff"), ("late", "hquota_ff"),
                                             ("uniform", "ours_size_norm")])
def test_flops_matching_hits_tome_r13(keep_shape, method):
    from timm.models.vision_transformer import VisionTransformer

    from tokred.flops import match_keep

    m = VisionTransformer(img_size=112, patch_size=8, embed_dim=48, depth=6, num_heads=3, num_classes=10).eval()
    target = tokred.count_flops(tokred.patch(m, "tome", r=13), (3, 112, 112))
    tokred.unpatch(m)
    keeps, achieved = match_keep(m, method, target, keep_shape=keep_shape, input_size=(3, 112, 112))
    assert achieved == pytest.approx(target, rel=0.01)
    # the schedule returned really costs what was reported
    tokred.patch(m, method, keep=keeps)
    assert tokred.count_flops(m, (3, 112, 112)) == pytest.approx(achieved, rel=1e-9)
    if keep_shape == "late":
        assert keeps[-3:] == [1.0, 1.0, 1.0]
