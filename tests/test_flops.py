"""FLOPs against the reference numbers of DESIGN.md §3 (DeiT-S, fvcore, attention counted)."""
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
