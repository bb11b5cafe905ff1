"""Regression tests for faults in the core reduction library: pooled read-outs of merged tokens,
low-precision merges and selection, and numpy / torch scalars as schedule values."""
import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import tokred
from tokred import schedule
from tokred.methods import resolve_method


def tome_parse_r(num_layers, r):
    """ToMe's `parse_r` (tome/utils.py), verbatim arithmetic, for the real-valued r cases."""
    inflect = 0
    if isinstance(r, tuple):
        r, inflect = r
    min_val = int(r * (1.0 - inflect))
    max_val = 2 * r - min_val
    step = (max_val - min_val) / (num_layers - 1)
    return [int(min_val + step * i) for i in range(num_layers)]


# --- 8. numpy and tensor scalars as schedule values ---------------------------------------------

INTS = [np.int32(8), np.int64(8), np.float64(8.0), np.float32(8.0), torch.tensor(8), torch.tensor(8.0),
        np.array(8)]


@pytest.mark.parametrize("r", INTS, ids=repr)
def test_scalar_r_of_any_numeric_type(r):
    assert schedule.resolve(12, 196, r) == schedule.resolve(12, 196, 8) == [8] * 12


@pytest.mark.parametrize("r", [(np.int64(13), np.float32(-0.5)), (torch.tensor(13), torch.tensor(-0.5)),
                               (np.float64(13.0), np.float64(-0.5))], ids=repr)
def test_scalar_types_in_r_inflection_tuple(r):
    assert schedule.resolve(12, 196, r) == schedule.resolve(12, 196, (13, -0.5))


@pytest.mark.parametrize("r", [[np.int64(3), torch.tensor(2), np.int32(5)], np.array([3, 2, 5]),
                               torch.tensor([3, 2, 5]), [3.0, np.float32(2.0), 5]], ids=repr)
def test_scalar_types_in_r_lists(r):
    assert schedule.resolve(4, 196, r) == [3, 2, 5, 0]


@pytest.mark.parametrize("keep", [np.float32(0.7), np.float64(0.7), torch.tensor(0.7), torch.tensor(0.7,
                                  dtype=torch.float64)], ids=repr)
def test_scalar_types_as_keep_ratio(keep):
    assert schedule.resolve(12, 196, keep=keep) == schedule.resolve(12, 196, keep=float(keep))
    per_block = [keep, np.float32(0.9), torch.tensor(1.0)]
    want = schedule.resolve(3, 196, keep=[float(keep), float(np.float32(0.9)), 1.0])
    assert schedule.resolve(3, 196, keep=per_block) == want
    assert schedule.resolve(2, 196, keep=np.array([0.7, 0.9])) == schedule.resolve(2, 196, keep=[0.7, 0.9])


@pytest.mark.parametrize("tile", [np.int64(8), np.int32(8), torch.tensor(8), np.float64(8.0)], ids=repr)
def test_scalar_types_as_tile(tile):
    assert schedule.resolve(12, 196, 13, tile=tile) == schedule.resolve(12, 196, 13, tile=8)


def test_scalar_types_as_layer_indices_and_keep_shape_knobs():
    assert schedule.resolve(4, 196, 13, layers=np.int64(1)) == [0, 13, 0, 0]
    assert schedule.resolve(4, 196, 13, layers=torch.tensor([0, 2])) == [13, 0, 13, 0]
    assert schedule.resolve(4, 196, 13, layers=[np.int64(3)]) == [0, 0, 0, 13]
    assert schedule.keep_shape_ratios("late", 4, np.float32(0.5), late_k=np.int64(1)) == [0.5, 0.5, 0.5, 1.0]
    assert schedule.keep_shape_ratios("late", 4, torch.tensor(0.5), late_k=torch.tensor(1)) == [0.5, 0.5, 0.5, 1.0]


@pytest.mark.parametrize("r", [13.5, np.float32(9.25), (13.5, -0.5), (torch.tensor(7.5), 0.5)], ids=repr)
def test_real_r_follows_tome_parse_r(r):
    # ToMe's parse_r ramps a real r between its neighbours; truncating it first would differ.
    assert schedule.resolve(12, 196, r) == tome_parse_r(12, r if isinstance(r, tuple) else float(r))


@pytest.mark.parametrize("kw, key", [
    (dict(r="13"), "r"), (dict(r=b"13"), "r"), (dict(r=True), "r"), (dict(r=np.bool_(True)), "r"),
    (dict(r=torch.tensor(True)), "r"), (dict(r=torch.tensor([[1, 2]])), "r"), (dict(r=[8.5]), "r"),
    (dict(r=float("nan")), "r"), (dict(r=(8, "x")), "r inflection"), (dict(r={1: 2}), "r"), (dict(r=1 + 2j), "r"),
    (dict(keep="0.7"), "keep"), (dict(keep=[0.7, "a"]), "keep"), (dict(keep=np.ones((2, 2))), "keep"),
    (dict(r=8, tile=8.5), "tile"), (dict(r=8, tile=True), "tile"), (dict(r=8, tile="8"), "tile"),
    (dict(r=8, layers=[1.5]), "layers"),
])
def test_non_numbers_fail_naming_the_key(kw, key):
    with pytest.raises(ValueError, match=f"schedule {key}"):
        schedule.resolve(4, 196, **kw)


def test_patch_takes_numpy_and_tensor_r():
    torch.manual_seed(0)
    m = VisionTransformer(img_size=32, patch_size=4, embed_dim=24, depth=2, num_heads=2, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = tokred.patch(m, "tome", r=8)(x)
        for r in (np.int64(8), torch.tensor(8), (np.int32(8), np.float32(0.0))):
            torch.testing.assert_close(tokred.patch(m, "tome", r=r)(x), want, atol=0, rtol=0)
        want = tokred.patch(m, "ours", keep=0.7, tile=8)(x)
        got = tokred.patch(m, "ours", keep=np.float32(0.7), tile=np.int64(8), q=np.float64(0.3))(x)
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_method_knobs_become_python_numbers():
    m = resolve_method("ours", q=torch.tensor(0.25), topr=np.int64(2), eta=np.float32(0.5),
                       clip_tau=torch.tensor(2.0), temperature=np.int64(1), push=np.array([0.1, 0.5, 0.5]))
    types = (type(m.q), type(m.topr), type(m.eta), type(m.clip_tau), type(m.temperature))
    assert types == (float, int, float, float, float)
    assert m.push == (0.1, 0.5, 0.5) and all(type(v) is float for v in m.push)
    assert m == resolve_method("ours", q=0.25, topr=2, eta=0.5, clip_tau=2.0, temperature=1, push=(0.1, 0.5, 0.5))
    for kw, key in ((dict(q="0.3"), "'q'"), (dict(topr=2.5), "'topr'"), (dict(topr=True), "'topr'"),
                    (dict(eta=torch.tensor([0.1])), "'eta'"), (dict(push="abc"), "'push'")):
        with pytest.raises(ValueError, match=f"method key {key}"):
            resolve_method("ours", **kw)


# --- 2. low precision: merges accumulate in float32; non-finite selection inputs are errors -------

LOW = [torch.float16, torch.bfloat16]
METHODS = ["tome", "hquota_ff", "ours_size_norm"]


def _plan_and_sizes(B=2, N=41, seed=0):
    """A bipartite plan on random tokens and random integer sizes up to 37 (as after a few blocks)."""
    from tokred.select import bipartite_plan
    g = torch.Generator().manual_seed(seed)
    plan = bipartite_plan(torch.randn(B, N, 8, generator=g), 15, 1)
    size = torch.randint(1, 38, (B, N, 1), generator=g).float()
    size[:, 0] = 1
    return plan, size, g


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("meth", METHODS)
def test_merge_in_16_bit_equals_float32_merge_rounded_once(dtype, meth):
    from tokred.merge import merge_tokens
    plan, size, g = _plan_and_sizes()
    x = (torch.randn(2, 41, 16, generator=g) * 50).to(dtype)
    x[..., 0] = 3000  # one large channel, as a residual stream carries: x * size overflows float16
    m = resolve_method(meth)
    got, got_size = merge_tokens(plan, x, size.to(dtype), m, 1)
    want, want_size = merge_tokens(plan, x.float(), size, m, 1)
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got, want.to(dtype), atol=0, rtol=0)
    torch.testing.assert_close(got_size, want_size, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_merging_identical_tokens_is_exact_in_16_bit(dtype):
    from tokred.merge import merge_tokens
    from tokred.patching import _group_mean
    plan, size, _ = _plan_and_sizes()
    x = torch.full((2, 41, 16), 1.0078125).to(dtype)  # 1 + 2^-7: exact in both, not after rounded sums
    out, _ = merge_tokens(plan, x, size, resolve_method("tome"), 1)
    assert (out == x[:, :1]).all()
    kv = x.view(2, 41, 2, 8).transpose(1, 2)  # [B, H, N, d]
    (k_g, v_g), _ = _group_mean(plan, size, kv, kv)
    assert k_g.dtype == dtype and (k_g == kv[:, :, :1]).all() and (v_g == kv[:, :, :1]).all()


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_sizes_stay_exact_counts_above_256(dtype):
    from tokred.merge import MergePlan, merge_tokens
    N = 302  # one protected token + 301 merged into one slot: 301 is no bfloat16 number
    plan = MergePlan(index=torch.tensor([[0] + [1] * (N - 1)]), num_out=2, rep=torch.tensor([[0, 1]]))
    x = torch.ones(1, N, 4, dtype=dtype)
    _, s = merge_tokens(plan, x, None, resolve_method("tome"), 1)
    assert s[0, :, 0].tolist() == [1.0, 301.0]


def _overflow_model(dtype, depth=6):
    """The issue's model: width 48, one residual channel at 3000 (finite unpatched logits in float16)."""
    torch.manual_seed(0)
    m = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=depth, num_heads=4, num_classes=10).eval()
    with torch.no_grad():
        m.pos_embed[..., 0] = 3000
    return m.to(dtype)


@pytest.mark.parametrize("r", [8, 12])
@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("meth", METHODS)
def test_16_bit_model_with_a_large_channel_stays_finite(dtype, meth, r):
    m = _overflow_model(dtype)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.no_grad():
        base = m(x)
        out = tokred.patch(m, meth, r=r)(x)
    assert torch.isfinite(base).all() and torch.isfinite(out).all()
    # the 3000 channel dominates every normalised token, so tokens are near-identical and merging them
    # barely changes the logits
    torch.testing.assert_close(out.float(), base.float(), atol=0.05, rtol=0)


@pytest.mark.parametrize("meth", METHODS)
def test_non_finite_activations_at_selection_are_named_errors(meth):
    m = _overflow_model(torch.float32, depth=2)
    with torch.no_grad():
        m.pos_embed[0, 5, 3] = float("inf")
    tokred.patch(m, meth, r=4)
    with pytest.raises(FloatingPointError, match=r"block 0 .*non-finite"):
        with torch.no_grad():
            m(torch.randn(2, 3, 32, 32))


def test_selectors_refuse_non_finite_inputs():
    from tokred.select import bipartite_plan
    from tokred.select import hquota_ff_keep
    phi = torch.rand(2, 16, 3)
    phi[1, 4, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"phi \[2, 16, 3\].*1 non-finite"):
        hquota_ff_keep(phi, None, 8, 0.3)
    metric = torch.randn(2, 17, 4)
    metric[0, 3, 1] = float("inf")
    with pytest.raises(FloatingPointError, match="metric.*non-finite"):
        bipartite_plan(metric, 4, 1)
    # finite values whose sum overflows (the check's fast path) are not mistaken for non-finite ones
    from tokred.merge import check_finite
    check_finite(torch.full((4, 4), 3e38), "x")
    check_finite(torch.full((4, 4), 6e4, dtype=torch.float16), "x")


# --- 1. pooled read-outs weight merged tokens by size --------------------------------------------

POOLS = ["token", "avg", "avgmax", "max", "map", "prr", ""]
HEADS = [(pool, ct, reg) for pool in POOLS for ct in (True, False) for reg in (0, 2) if ct or pool != "token"]


def _two_colour_model(pool, class_token=True, reg_tokens=0, seed=0):
    """The issue's model: weights ~N(0, 0.2), no position embedding, so equal patches give equal tokens."""
    torch.manual_seed(seed)
    m = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=4, num_heads=4, num_classes=10,
                          class_token=class_token, reg_tokens=reg_tokens, global_pool=pool).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
        m.pos_embed.zero_()
    return m


def _two_colour_images():
    img = torch.full((2, 3, 32, 32), -0.5)
    img[..., :24] = 0.8  # 48 patches of one colour, 16 of the other
    img[1, :, :8] = 0.1  # a third colour in the second image
    return img


@pytest.mark.parametrize("meth", METHODS)
@pytest.mark.parametrize("pool, class_token, reg_tokens", HEADS)
def test_merging_identical_tokens_leaves_every_pooling_exact(pool, class_token, reg_tokens, meth):
    m = _two_colour_model(pool, class_token, reg_tokens)
    img = _two_colour_images()
    with torch.no_grad():
        base = m(img)
        out = tokred.patch(m, meth, r=8)(img)
    assert m._tokred.size is not None and m._tokred.size.max() > 1  # tokens really merged
    assert out.shape == base.shape
    torch.testing.assert_close(out, base, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pool, class_token, reg_tokens", [h for h in HEADS if h[0] in ("avg", "avgmax", "map")])
def test_weighted_pooling_equals_pooling_every_input_token(pool, class_token, reg_tokens):
    # For any tokens, not only identical ones: pooling a merged token with its size is pooling the
    # input tokens it stands for, each carrying the merged value (timm's own pool on the unmerged set).
    torch.manual_seed(1)
    m = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=4, num_heads=4, num_classes=10,
                          class_token=class_token, reg_tokens=reg_tokens, global_pool=pool).eval()
    tokred.patch(m, "tome", r=(10, -0.5))
    m._tokred.track_slots = True  # keep the input -> merged token map for the reference below
    with torch.no_grad():
        feats = m.forward_features(torch.randn(3, 3, 32, 32))
        got = m.pool(feats)
        want = VisionTransformer.pool(m, m._tokred.unmerge(feats))
    assert feats.shape[1] < 64 and m._tokred.unmerge(feats).shape[1] == 64 + m.num_prefix_tokens
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_forward_features_then_head_equals_forward():
    m = _two_colour_model("avg", class_token=False)
    tokred.patch(m, "tome", r=8)
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = m(x2)
        m.forward_features(x1)  # a previous input's state must not leak into the next
        got = m.forward_head(m.forward_features(x2))
        torch.testing.assert_close(got, want, atol=0, rtol=0)
        with pytest.raises(ValueError, match="forward_features"):
            m.pool(torch.randn(2, 64, 48))  # tokens that are not the last forward's merged tokens


def test_pooling_changed_after_patch_is_followed():
    m = _two_colour_model("avg", class_token=True)
    img = _two_colour_images()
    tokred.patch(m, "tome", r=8)
    m.reset_classifier(10, global_pool="")  # per-token outputs from now on
    with torch.no_grad():
        out = m(img)
        tokred.unpatch(m)
        base = m(img)
    assert out.shape == base.shape == (2, 65, 10)
    torch.testing.assert_close(out, base, atol=1e-5, rtol=0)


def test_custom_heads_are_refused_by_name():
    class OwnHead(VisionTransformer):
        def forward_head(self, x, pre_logits=False):
            return self.head(x.mean(1))

    m = OwnHead(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=4, num_classes=10, global_pool="avg")
    with pytest.raises(TypeError, match=r"OwnHead overrides forward_head/pool \(model.global_pool='avg'\)"):
        tokred.patch(m, "tome", r=8)


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("pool", ["avg", "avgmax", "map"])
def test_16_bit_pooling_of_merged_tokens_stays_finite(dtype, pool):
    torch.manual_seed(0)
    m = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=6, num_heads=4, num_classes=10,
                          class_token=False, global_pool=pool).eval()
    with torch.no_grad():
        m.pos_embed[..., 0] = 3000  # pooled un-normalised: sum of x * size overflows float16
    m = m.to(dtype)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.no_grad():
        base = m(x)
        out = tokred.patch(m, "tome", r=12)(x)
    assert torch.isfinite(base).all() and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), base.float(), atol=0.1, rtol=0)
