"""Properties of the reduction methods (docs/method.md §3) on real timm models with fresh random inputs."""
import math

import pytest
import torch
import torch.nn.functional as F
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

import tokred
from tokred.merge import MergePlan, merge_tokens
from tokred import schedule
from tokred.methods import PRESETS, resolve_method
from tokred.select import SELECTORS, Selection, assign_plan, head_inflow, hquota_ff_keep

KW = dict(img_size=112, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=10)
OURS = ["hquota_ff", "ours_size_norm"]
VARIANTS = [("hquota_ff", {}), ("ours_size_norm", {}), ("hquota_ff", {"space": "x"}), ("hquota_ff", {"space": "v"}),
            ("ours_size_norm", {"match": "xnorm", "topr": 2}), ("tome", {"space": "kv"})]


def model(distilled=False, seed=0):
    torch.manual_seed(seed)
    return (VisionTransformerDistilled if distilled else VisionTransformer)(**KW).eval()


def images(n=3, seed=None):
    g = torch.Generator().manual_seed(seed if seed is not None else torch.randint(0, 10**6, ()).item())
    return torch.randn(n, 3, 112, 112, generator=g)


def run_blocks(m, tokens):
    """Run the patched blocks on given tokens (after position embedding), return final tokens."""
    m._tokred.reset()
    with torch.no_grad():
        return m.norm(m.blocks(tokens))


def embed(m, x):
    with torch.no_grad():
        return m._pos_embed(m.patch_embed(x))


@pytest.mark.parametrize("distilled", [False, True])
@pytest.mark.parametrize("meth, kw", VARIANTS)
def test_protected_tokens_sizes_and_kept_counts(distilled, meth, kw):
    m = model(distilled)
    p = m.num_prefix_tokens
    tokred.patch(m, meth, r=[40, 30, 20, 10], trace_source=True, **kw)
    seen = []
    for blk in m.blocks:
        blk.register_forward_hook(lambda mod, a, out: seen.append((out.shape[1], m._tokred.size.clone())))
    with torch.no_grad():
        m(images())
    n = 196
    for (tokens, size), r in zip(seen, [40, 30, 20, 10]):
        n -= r
        assert tokens == p + n  # exactly the schedule's count
        torch.testing.assert_close(size.sum(1)[..., 0], torch.full((3,), float(p + 196)))
        assert size[:, :p].eq(1).all()  # protected tokens absorbed nothing
    src = m._tokred.source
    for i in range(p):  # ... and were absorbed by nothing: each holds only itself
        assert src[:, i, i].eq(1).all() and src[:, i].sum(-1).eq(1).all()
        assert src[:, :, i].sum(-1).eq(1).all()


@pytest.mark.parametrize("meth", ["tome", *OURS])
def test_r0_and_keep1_reproduce_unpatched(meth):
    m = model()
    x = images()
    with torch.no_grad():
        base = m(x)
        for sched in ({"r": 0}, {"keep": 1.0}):
            tokred.patch(m, meth, **sched)
            torch.testing.assert_close(m(x), base, atol=1e-5, rtol=0)


def test_q1_selects_topk_by_inflow_times_size():
    torch.manual_seed(1)
    phi = torch.rand(4, 50, 6)
    size = torch.randint(1, 5, (4, 50, 1)).float()
    keep = hquota_ff_keep(phi, size, 20, q=1.0)
    expected = (phi.sum(-1) * size[..., 0]).topk(20, dim=-1).indices.sort(-1).values
    assert torch.equal(keep, expected)


def test_farthest_first_picks_expected_points():
    # Head signatures (3 heads): a hub, its near-duplicate, two orthogonal directions, a mixture.
    phi = torch.tensor([[[1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.6, 0.5]]])
    size = torch.tensor([[[10.0], [1.0], [1.0], [1.0], [1.0]]])  # token 0 is the hub by inflow x size
    # From the hub, tokens 2 and 3 are both at the maximal distance: the tie goes to 2, then 3 is
    # farthest from {0, 2}; the mixture comes next; the near-duplicate of the hub comes last.
    assert hquota_ff_keep(phi, size, 2, q=0.0)[0].tolist() == [0, 2]
    assert hquota_ff_keep(phi, size, 3, q=0.0)[0].tolist() == [0, 2, 3]
    assert hquota_ff_keep(phi, size, 4, q=0.0)[0].tolist() == [0, 2, 3, 4]
    # With a quota of 2 hubs the second hub is the next-largest inflow x size (the mixture, 1.7);
    # from {0, 4}, token 3 is farther (min distance 1.06) than token 2 (0.88).
    assert hquota_ff_keep(phi, size, 3, q=0.5)[0].tolist() == [0, 3, 4]


def test_farthest_first_ties_go_to_lower_index():
    phi = torch.ones(1, 5, 3)  # all identical: every distance ties
    phi[0, 2] = 5.0  # token 2 is the hub (largest inflow) but points the same way
    keep = hquota_ff_keep(phi, None, 3, q=0.0)
    assert keep[0].tolist() == [0, 1, 2]


def _pair_plan(B, N):
    """Slots: protected token 0, then pairs (2i-1, 2i) with the odd token kept."""
    index = torch.tensor([0] + [1 + (j - 1) // 2 for j in range(1, N)]).expand(B, N)
    rep = torch.tensor([0] + list(range(1, N, 2))).expand(B, -1)
    return MergePlan(index=index.contiguous(), num_out=rep.shape[1], rep=rep.contiguous())


@pytest.mark.parametrize("kw", [dict(push=(0.15, 0.5, 0.5)), dict(push=(1.0, 0.9, 1.0), eta=0.2), dict(eta=0.1),
                                dict(push=(0.5, 2.0, -1.0), size_mode="norm")])
def test_push_lite_and_eta_are_convex(kw):
    torch.manual_seed(2)
    B, N, C = 3, 9, 16
    x = torch.randn(B, N, C)
    size = torch.randint(1, 4, (B, N, 1)).float()
    plan = _pair_plan(B, N)
    out, new_size = merge_tokens(plan, x, size, resolve_method("tome", **kw), num_prefix_tokens=1)
    torch.testing.assert_close(new_size.sum(1), size.sum(1))
    for slot in range(1, plan.num_out):
        a, b = x[:, 2 * slot - 1], x[:, 2 * slot]  # kept, absorbed
        t = ((out[:, slot] - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1)
        torch.testing.assert_close(out[:, slot], a + t[:, None] * (b - a), atol=1e-5, rtol=0)  # on the line
        assert (t >= -1e-6).all() and (t <= 1 + 1e-6).all()  # ... between the two


def test_recenter_keeps_weighted_mean_and_clip_bounds_norm():
    torch.manual_seed(3)
    B, N, C = 2, 9, 8
    x = torch.randn(B, N, C) * torch.linspace(0.5, 3, N)[None, :, None]
    size = torch.ones(B, N, 1)
    plan = _pair_plan(B, N)
    out, s2 = merge_tokens(plan, x, size, resolve_method("tome", recenter=True), num_prefix_tokens=1)
    before = (x[:, 1:] * size[:, 1:]).sum(1) / size[:, 1:].sum(1)
    after = (out[:, 1:] * s2[:, 1:]).sum(1) / s2[:, 1:].sum(1)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    out, _ = merge_tokens(plan, x * 10, size, resolve_method("tome", size_mode="off", clip_tau=0.5), 1)
    limit = 0.5 * (x * 10)[:, 1:].norm(dim=-1).mean(1)
    assert (out[:, 1:].norm(dim=-1) <= limit[:, None] + 1e-4).all()


@pytest.mark.parametrize("meth, kw", [v for v in VARIANTS if v[0] != "tome"])
def test_invariant_to_patch_token_permutation(meth, kw):
    # float64: random-init attention is near uniform, so late farthest-first picks are near ties
    # that float32 rounding (which depends on token order) can flip; exact invariance is the claim.
    m = tokred.patch(model().double(), meth, r=[30, 20, 20, 10], **kw)
    tokens = embed(m, images(2, seed=5).double())
    perm = torch.randperm(196, generator=torch.Generator().manual_seed(0)) + 1
    shuffled = torch.cat([tokens[:, :1], tokens[:, perm]], 1)
    a, b = run_blocks(m, tokens), run_blocks(m, shuffled)
    torch.testing.assert_close(b[:, 0], a[:, 0], atol=1e-9, rtol=0)  # CLS output unchanged


@pytest.mark.parametrize("meth, kw", VARIANTS)
def test_batch_equals_per_image(meth, kw):
    m = tokred.patch(model(), meth, r=13, **kw)
    x = images(3, seed=7)
    with torch.no_grad():
        batch = m(x)
        single = torch.cat([m(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=0)


def test_kv_attention_equals_direct_computation_on_merged_keys_values():
    m = tokred.patch(model(), "hquota_ff", r=[50, 0, 0, 0])
    blk = m.blocks[0]
    tokens = embed(m, images(2, seed=9))
    with torch.no_grad():
        m._tokred.reset()
        y = blk(tokens)
    # Rebuild by hand: plan from the explicit full attention, then merged K/V per group.
    with torch.no_grad():
        xn = blk.norm1(tokens)
        qh, kh, vh = blk.attn.heads(xn)
        phi = blk.attn.inflow(qh, kh, vh, None)[0]  # the selector must see the same phi as the block
        sel = Selection(x=tokens, k=kh, size=None, r=50, num_prefix_tokens=1, method=m._tokred.method,
                        inflow=lambda need_out: (phi, None))
        plan, _ = SELECTORS["hquota_ff"](sel)
        H, d = qh.shape[1], qh.shape[-1]
        out = torch.empty_like(qh)
        for b in range(2):
            groups = [torch.nonzero(plan.index[b] == g)[:, 0] for g in range(plan.num_out)]
            kg = torch.stack([kh[b][:, g].mean(1) for g in groups], 1)  # sizes are 1: plain means
            vg = torch.stack([vh[b][:, g].mean(1) for g in groups], 1)
            sg = torch.tensor([float(len(g)) for g in groups])
            att = (qh[b] @ kg.transpose(-1, -2)) * blk.attn.scale + sg.log()  # proportional attention
            out[b] = att.softmax(-1) @ vg
        x1 = tokens + blk.attn.project(out, xn)
        x2, size = merge_tokens(plan, x1, None, m._tokred.method, 1)
        ref = x2 + blk.mlp(blk.norm2(x2))
    assert plan.num_out == 197 - 50
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


def _analytic_tome_gflops(C, depth, heads, n_patches, rs, patch_in, n_classes):
    """Per-image fvcore count of a ToMe ViT from its token counts alone."""
    d = C // heads
    f = patch_in * C * n_patches + n_classes * C + 5 * C  # patch embed, head, final norm (CLS only is pooled after)
    f = patch_in * C * n_patches + n_classes * C
    N = n_patches + 1
    for r in rs:
        f += 5 * N * C  # norm1
        f += N * C * 3 * C + 2 * N * N * C + N * C * C  # qkv, attention (QK^T and AV), proj
        if r:
            f += heads * N * d  # keys averaged over heads: counted? (mean is not) -> removed below
            f -= heads * N * d
            na, nb = (N + 1) // 2, N // 2
            f += na * nb * d  # bipartite scores a @ b^T
            f += N * C + N  # scatter-add of x*size and of sizes
            N -= r
        f += 5 * N * C + 2 * N * C * 4 * C  # norm2, MLP
    f += 5 * N * C  # final norm
    return f / 1e9


@pytest.mark.parametrize("rs", [[0, 0, 0, 0], [13, 13, 13, 13], [40, 0, 30, 5]])
def test_flops_follow_token_counts(rs):
    m = tokred.patch(model(), "tome", r=rs)
    got = tokred.count_flops(m, (3, 112, 112))
    want = _analytic_tome_gflops(48, 4, 3, 196, rs, 3 * 8 * 8, 10)
    assert got == pytest.approx(want, rel=1e-9)


def test_selection_work_is_counted():
    g_tome = tokred.count_flops(tokred.patch(model(), "tome", r=13), (3, 112, 112))
    g_ours = tokred.count_flops(tokred.patch(model(), "hquota_ff", r=13, space="x"), (3, 112, 112))
    assert g_ours > g_tome  # head inflow and farthest-first distances are matmuls fvcore counts


def test_presets_and_bad_knobs():
    assert PRESETS["tome"].selector == "bipartite" and PRESETS["ours_size_norm"].selector == "hquota_ff"
    with pytest.raises(ValueError, match="space"):
        tokred.patch(model(), "hquota_ff", r=1, space="qk")
    with pytest.raises(ValueError, match="unknown method key"):
        tokred.patch(model(), "hquota_ff", r=1, quota=0.3)
    with pytest.raises(ValueError, match="topr"):
        assign_plan(torch.randn(1, 11, 4), torch.tensor([[0, 1]]), 1, topr=1)


@pytest.mark.parametrize("with_size", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_inflow_equals_whole_batch_attention(with_size, dtype, monkeypatch):
    """The CPU path (softmax a few images at a time) equals the whole-batch explicit attention."""
    from tokred import patching

    attn = tokred.patch(model().to(dtype), "hquota_ff", r=0).blocks[0].attn
    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(5, 6, 57, 16, generator=g, dtype=dtype) for _ in range(3))
    size = torch.randint(1, 5, (5, 57, 1), generator=g).to(dtype) if with_size else None
    bias = attn.bias(size, None)
    monkeypatch.setattr(patching, "_CPU_CHUNK_BYTES", 2 * 6 * 57 * 57 * q.element_size())  # 2 images per chunk
    with torch.no_grad():
        phi, out = attn.inflow(q, k, v, bias)
        probs = attn.probs(q, k, bias)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(phi, head_inflow(probs), atol=tol, rtol=tol)
    torch.testing.assert_close(out, probs @ v, atol=tol, rtol=tol)
    torch.testing.assert_close(phi.sum(1), torch.full_like(phi.sum(1), 57.0), atol=1e-3, rtol=0)  # rows sum to 1


@pytest.mark.parametrize("meth", ["tome", "ours_size_norm"])
def test_tile_rounding_through_patch(meth):
    """patch(tile=8): every reducing block leaves a multiple of 8 tokens (CLS included)."""
    m = tokred.patch(model(), meth, r=13, tile=8)
    counts = []
    hooks = [b.register_forward_hook(lambda mod, inp, out: counts.append(out.shape[1])) for b in m.blocks]
    with torch.no_grad():
        m(images(2, seed=3))
    for h in hooks:
        h.remove()
    rs = m._tokred.rs
    assert rs == schedule.resolve(len(m.blocks), 196, 13, tile=8)
    assert all(c % 8 == 0 for c, r in zip(counts, rs) if r) and any(rs)
    assert counts == [197 - sum(rs[:i + 1]) for i in range(len(rs))]


def test_farthest_first_cpu_rounds_equal_torch_rounds(monkeypatch):
    """The numpy rounds (CPU fast path) and the torch rounds (other devices, tracing) pick the same."""
    from tokred.select import _farthest_first

    g = torch.Generator().manual_seed(4)
    B, n = 5, 40
    cos = torch.rand(B, n, n, generator=g).round(decimals=1)  # coarse values: many ties, lowest index wins
    cos.diagonal(dim1=1, dim2=2).fill_(3.0)
    rows, offset = cos.view(B * n, n), torch.arange(B) * n
    d_np, d_t = cos[:, 0].clone(), cos[:, 0].clone()
    _farthest_first(rows, d_np, offset, 25)
    d_single = [cos[b:b + 1, 0].clone() for b in range(B)]  # batch 1 takes its own numpy branch
    for b in range(B):
        _farthest_first(cos[b].contiguous(), d_single[b], torch.zeros(1, dtype=torch.long), 25)
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    _farthest_first(rows, d_t, offset, 25)
    assert torch.equal(d_np, d_t) and torch.equal(torch.cat(d_single), d_t)
    assert ((d_np > 2.5).sum(1) == 26).all()  # the seed token and 25 picks


def test_patched_model_runs_with_autograd():
    m = tokred.patch(model(), "ours_size_norm", r=13)
    y = m(images(2, seed=1))
    y.sum().backward()  # selection is discrete; gradients flow through the merges
    assert m.head.weight.grad is not None


def test_every_method_selector_has_a_function():
    from tokred import methods

    assert set(SELECTORS) == set(methods.SELECTORS)


def test_topr_is_refused_for_bipartite_when_the_method_is_built():
    with pytest.raises(ValueError, match="topr.*hquota_ff"):
        tokred.methods.resolve_method("tome", topr=2)
    assert tokred.methods.resolve_method("hquota_ff", topr=2).topr == 2
