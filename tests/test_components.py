"""The components of ours act, and their ablations switch off what their names say (docs/method.md §3.2-3.3,
§5): temperature n, the L2 clip and its counter, sizes off, the kv_only merge space and its FLOPs, and the
ablation comparisons against the method's own reference run. Real timm models, fresh random inputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from timm.models.vision_transformer import VisionTransformer

import tokred
from tokred.merge import MergePlan, merge_tokens
from tokred.methods import resolve_method
from tokred.patching import clip_stats, track_clips

ROOT = Path(__file__).resolve().parents[1]
KW = dict(img_size=112, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=10)


def model(seed=0, **kw):
    torch.manual_seed(seed)
    return VisionTransformer(**{**KW, **kw}).eval()


def images(n=2):
    seed = int(torch.randint(0, 10**6, ()).item())  # fresh inputs on every run; printed on failure
    print("images seed", seed)
    return torch.randn(n, 3, 112, 112, generator=torch.Generator().manual_seed(seed))


def logits(m, x, method, **kw):
    tokred.patch(m, method, **{"r": 13, **kw})
    with torch.no_grad():
        return m(x)


# ----------------------------------------------------------------------------------------- temperature
@pytest.mark.parametrize("method", ["tome", "ours_size_norm"])
def test_temperature_one_is_tomes_log_s_and_other_n_change_the_logits(method):
    m = model().double()
    x = images().double()
    tome_log_s = logits(m, x, method, temperature=None)
    # n = 1: log(s / mean s) differs from log s by a per-row constant, which the softmax removes
    torch.testing.assert_close(logits(m, x, method, temperature=1.0), tome_log_s, atol=1e-9, rtol=0)
    for n in (0.5, 1.5, 2.0):
        assert (logits(m, x, method, temperature=n) - tome_log_s).abs().max() > 1e-4, n


# ----------------------------------------------------------------------------------------- L2 clip
def _pair_plan(B, N):
    """Token 0 protected; patch tokens (1, 2), (3, 4), ... merge pairwise into the odd one."""
    index = torch.tensor([0] + [1 + (j - 1) // 2 for j in range(1, N)]).expand(B, N)
    rep = torch.tensor([0] + list(range(1, N, 2))).expand(B, -1)
    return MergePlan(index=index.contiguous(), num_out=rep.shape[1], rep=rep.contiguous())


def test_clip_counter_moves_when_a_group_holds_a_large_norm_token():
    B, N, C = 3, 11, 16
    x = torch.randn(B, N, C, generator=torch.Generator().manual_seed(int(torch.randint(0, 10**6, ()))))
    plan, meth = _pair_plan(B, N), resolve_method("ours_size_norm")  # clip at 2x the mean norm
    counts = torch.zeros(2, dtype=torch.int64)
    merge_tokens(plan, x, None, meth, 1, counts)
    # averages of two random tokens are shorter than the mean token: nothing to clip
    assert counts.tolist() == [0, B * (N - 1) // 2]
    big = x.clone()
    big[0, 3] *= 100  # image 0: the group of tokens (3, 4) now keeps a token far above the mean norm
    out, _ = merge_tokens(plan, big, None, meth, 1, counts)
    assert counts.tolist() == [1, 2 * B * (N - 1) // 2]
    limit = 2.0 * big[0, 1:].norm(dim=-1).mean()
    torch.testing.assert_close(out[0, 2].norm(), limit)  # clipped to exactly tau x the mean norm
    merge_tokens(plan, big, None, meth.replace(clip_tau=None), 1, counts)  # no clip: nothing counted
    assert counts.tolist() == [1, 2 * B * (N - 1) // 2]


def test_clip_stats_per_block_over_forwards_not_flop_counts():
    m = tokred.patch(model(), "ours_size_norm", r=[20, 10, 0, 5], clip_tau=1.0)
    tokens = m._pos_embed(m.patch_embed(images(3))).detach()
    with pytest.raises(ValueError, match="track_clips"):
        clip_stats(m)  # counting is off unless asked for (timing runs measure the method alone)
    track_clips(m)
    with torch.no_grad():
        m.blocks(tokens)
    s = clip_stats(m)
    assert s["merged"][2] == 0 and s["fraction"][2] is None  # block 2 merges nothing
    assert all(0 < mg <= 3 * r for mg, r in zip(s["merged"], [20, 10, 0, 5]) if r)
    assert sum(s["clipped"]) > 0 and all(0 <= f <= 1 for f in s["fraction"] if f is not None)
    tokred.count_flops(m, (3, 112, 112))  # tracing runs the model: not counted
    assert clip_stats(m) == s
    with torch.no_grad():
        m.blocks(tokens)
    assert clip_stats(m)["merged"] == [2 * v for v in s["merged"]]  # sums over forwards
    track_clips(m)
    assert clip_stats(m)["merged"] == [0] * 4
    # large-norm tokens entering block 0: the preset's tau = 2 fires where it did not before
    tokred.patch(m, "ours_size_norm", r=[20, 0, 0, 0])
    track_clips(m)
    with torch.no_grad():
        m.blocks(tokens)
    plain = clip_stats(m)["clipped"][0]
    track_clips(m)
    loud = tokens.clone()
    loud[:, 1:60:2] *= 30
    with torch.no_grad():
        m.blocks(loud)
    assert clip_stats(m)["clipped"][0] > plain
    assert clip_stats(tokred.patch(m, "ours_size_norm", r=13, clip_tau=None)) is None
    assert clip_stats(tokred.patch(m, "ours_size_norm", r=13, space="kv_only")) is None  # merges no hidden state


# ----------------------------------------------------------------------------------------- sizes off
def test_sizes_off_counts_every_token_once_everywhere():
    m = model()
    x = images()
    ref = logits(m, x, "ours_size_norm")
    off = logits(m, x, "ours_size_norm", sizes=False)
    assert (off - ref).abs().max() > 1e-4
    uniform = logits(m, x, "ours_size_norm", size_mode="off")  # the narrower row: merge weights only
    assert (off - uniform).abs().max() > 1e-4
    # sizes = False equals the method without proportional attention (over tokens or kv groups) run with
    # every block seeing sizes of one (st.size forgotten before each block): kv group means, hub score,
    # push-lite and re-centring without sizes
    tokred.patch(m, "ours_size_norm", r=13, prop_attn=False)
    hooks = [b.register_forward_pre_hook(lambda mod, a: setattr(m._tokred, "size", None)) for b in m.blocks[1:]]
    with torch.no_grad():
        forgotten = m(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(off, forgotten, atol=0, rtol=0)
    # ... while the token map and counts are kept: sizes still sum to the patches
    tokred.patch(m, "ours_size_norm", r=13, sizes=False)
    with torch.no_grad():
        m(x)
    assert m._tokred.size.sum(1).flatten().tolist() == [197.0, 197.0]


def test_sizes_off_pools_without_sizes():
    m = model(global_pool="avg", class_token=False)
    x = images()
    tokred.patch(m, "tome", r=13, sizes=False)
    with torch.no_grad():
        feats = m.forward_features(x)
        torch.testing.assert_close(m.forward_head(feats, pre_logits=True), m.fc_norm(feats.mean(1)))
        tokred.patch(m, "tome", r=13)  # with sizes: the size-weighted mean, not the plain one
        feats = m.forward_features(x)
        assert not torch.allclose(m.forward_head(feats, pre_logits=True), m.fc_norm(feats.mean(1)), atol=1e-4)


# ----------------------------------------------------------------------------------------- kv_only
def test_kv_only_keeps_every_token_and_shares_kvs_attention():
    m = model()
    tokens = m._pos_embed(m.patch_embed(images(2))).detach()
    blk = m.blocks[0]
    seen = []
    hooks = [b.register_forward_hook(lambda mod, a, out: seen.append(out.shape[1])) for b in m.blocks]
    tokred.patch(m, "ours_size_norm", r=[50, 30, 20, 10], space="kv_only", trace_source=True)
    with torch.no_grad():
        m._tokred.reset()
        m.blocks(tokens)
        assert seen == [197] * 4 and m._tokred.size is None and m._tokred.source is None
        m._tokred.reset()
        only = blk(tokens)
        tokred.patch(m, "ours_size_norm", r=[50, 0, 0, 0], space="kv", trace_source=True)
        m._tokred.reset()
        kv = blk(tokens)
    for h in hooks:
        h.remove()
    src = m._tokred.source  # [B, 147 slots, 197 inputs]
    single = src.sum(-1) == 1  # slots of one token: no hidden-state merge, so the same row in both
    idx = src.argmax(-1)
    assert single.sum() > 100
    for b in range(2):
        torch.testing.assert_close(kv[b][single[b]], only[b, idx[b][single[b]]], atol=1e-5, rtol=0)
    assert not torch.allclose(kv[~single], only.gather(1, idx[..., None].expand(-1, -1, 48))[~single], atol=1e-3)


def test_kv_only_flops_between_kv_and_the_unreduced_model():
    m = model(depth=2)  # two blocks: the per-block costs are what is compared
    base = tokred.count_flops(m, (3, 112, 112))
    g = {(meth, sp): tokred.count_flops(tokred.patch(m, meth, r=13, space=sp), (3, 112, 112))
         for meth in ("tome", "ours_size_norm") for sp in ("kv", "kv_only")}
    assert g["tome", "kv"] < g["tome", "kv_only"] < base
    assert g["ours_size_norm", "kv"] < g["ours_size_norm", "kv_only"]
    # ours' explicit attention for the selector costs more than the merged keys save: above the base
    assert g["ours_size_norm", "kv_only"] > base


def test_kv_only_r0_is_the_unpatched_model():
    m = model()
    x = images()
    with torch.no_grad():
        base = m(x)
    torch.testing.assert_close(logits(m, x, "ours_size_norm", r=0, space="kv_only"), base, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------- comparisons
def test_ablations_compare_with_the_groups_reference_run():
    from tokred.study.config import comparisons, expand_runs

    cfg = yaml.safe_load((ROOT / "config" / "embedded_full.yaml").read_text())
    pairs = comparisons(expand_runs(cfg))
    variants = cfg["experiments"]["ablations"]["variants"]
    assert {"size_off", "merge_uniform", "kv_only", "temp_2", "clip_1.0"} <= set(variants)
    assert all(pairs[v] == "ours_size_norm_ref" for v in variants)
    assert "ours_size_norm_ref" not in pairs and pairs["ours_size_norm_uniform"] == "tome_r13"
    cfg["experiments"]["ablations"]["variants"]["ours_size_norm_ref"] = {"q": 0.2}
    with pytest.raises(ValueError, match=r"experiments\.ablations\.variants\.ours_size_norm_ref'.*reference"):
        expand_runs(cfg)


def _metrics(path: Path, run, overrides, top1, logits, gflops, clip=None):
    path.mkdir(parents=True)
    torch.save({"logits": logits}, path / "logits.pt")
    m = {"run": run, "group": "ablations", "method": "ours_size_norm", "schedule": {"r": 13}, "overrides": overrides,
         "gflops": gflops, "rel_cost": gflops / 4.6, "top1": top1, "top1_ci95": [top1 - 1, top1 + 1], "drop_pp": 0.0,
         "drop_se_pp": 0.1, "kl": 0.01, "delta_margin": 0.0, "agreement": 99.0, "mcnemar_vs_base": {"p_value": 1.0},
         "n_images": len(logits), "provenance": {}, "method_config": {"clip_tau": 2.0},
         "tail_drop_pp": 0.0, "tail_drop_ci95": [0.0, 0.0],
         "clip_fired": None if clip is None else [c[0] / c[1] for c in clip],
         "clip_counts": None if clip is None else {"clipped": [c[0] for c in clip], "merged": [c[1] for c in clip]}}
    (path / "metrics.json").write_text(json.dumps(m))
    return path / "metrics.json"


def test_ablation_table_reports_delta_vs_reference_gflops_clip_and_whether_components_act(tmp_path):
    from tokred.report import load, tables
    from tokred.study.config import comparisons

    labels = torch.arange(100) % 10
    good = torch.nn.functional.one_hot(labels, 10).float() * 5
    worse = good.clone()
    worse[:20] = torch.nn.functional.one_hot((labels[:20] + 1) % 10, 10).float() * 5  # 20 images wrong
    tweaked = good + 1e-3 * torch.randn(100, 10)  # logits moved, no prediction
    paths = [_metrics(tmp_path / "ref", "ours_size_norm_ref", {}, 100.0, good, 2.7, clip=[(0, 40), (0, 40)]),
             _metrics(tmp_path / "so", "size_off", {"sizes": False}, 100.0, good, 2.7, clip=[(0, 40), (0, 40)]),
             _metrics(tmp_path / "t2", "temp_2", {"temperature": 2.0}, 100.0, tweaked, 2.7, clip=[(0, 40), (0, 40)]),
             _metrics(tmp_path / "c1", "clip_1.0", {"clip_tau": 1.0}, 80.0, worse, 2.7, clip=[(30, 40), (10, 40)]),
             _metrics(tmp_path / "kvo", "kv_only", {"space": "kv_only"}, 80.0, worse, 4.9)]
    runs = {("ablations", json.loads(p.read_text())["run"]): {"method": "ours_size_norm"} for p in paths}
    df = load.add_comparison(load.load_metrics(paths), comparisons(runs), labels, "ref")
    t = tables.ablation_table(df, str(tmp_path / "a.csv"), str(tmp_path / "a.tex"))
    csv = pd.read_csv(tmp_path / "a.csv").set_index("run")
    assert csv.loc["clip_1.0", "delta_vs_ref"] == -20.0 and csv.loc["clip_1.0", "p_vs_ref"] < 1e-4
    assert csv.loc["clip_1.0", "clip_fired"] == 0.5 and csv.loc["clip_1.0", "clip_fired_max"] == 0.75
    assert csv.loc["kv_only", "gflops"] == 4.9 and csv.loc["kv_only", "change"] == "space=kv_only"
    assert pd.isna(csv.loc["ours_size_norm_ref", "delta_vs_ref"]) and len(t) == 5
    tex = (tmp_path / "a.tex").read_text()
    assert "4.900" in tex and r"$\Delta$ vs ref" in tex and "50.0" in tex  # GFLOPs, Δ column, clip %
    sentences = tex[tex.index(r"\gdef\ablationcomponents"):]
    assert "Sizes (sizes=False): every logit equals the reference's: it does not act here." in sentences
    assert "Temperature $n$ (temperature=2.0): logits change, no prediction does." in sentences
    assert (r"L2 clip $\tau$ (clip\_tau=1.0): up to 20.0\% of the predictions change, top-1 by at most 20.00\,pp "
            r"(smallest McNemar $p=1.9\times10^{-6}$, significant at 5\% after Holm's correction)") in sentences
    # Stars are Holm's over the 4 variants: p = 1.9e-6 stays significant (x4), the reference has no test.
    assert csv.loc["clip_1.0", "p_holm_vs_ref"] == pytest.approx(4 * csv.loc["clip_1.0", "p_vs_ref"], rel=1e-4)
    assert "over the 4 tests of this table" in tex
    assert r"clip shortened 0.0\% of the merged tokens at the reference's $\tau=2$, 50.0\% at $\tau=1$" in sentences
    assert "GFLOPs 4.900 (kv\\_only) against 2.700 for the reference" in sentences


# ----------------------------------------------------------------------------------------- the DAG
def test_dry_run_lists_the_new_ablation_runs(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "embedded_full.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(tmp_path / "c.yaml")],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for run in ("kv_only", "size_off", "merge_uniform", "temp_2", "clip_1.0", "ours_size_norm_ref"):
        assert f"runs/ablations/{run}/metrics.json" in p.stdout, run
