"""Head-free fidelity in the evaluation job (docs/method.md §4) on a tiny ViT: the recorder, the
metrics against an identical and a perturbed model, and the labels-free, head-free path end to end."""
from __future__ import annotations

import copy
import json

import pytest
import torch

import tokred
from tokred import io
from tokred.models import create_embedded_model
from tokred.study import fidelity
from tokred.study.evaluate import evaluate_run
from tokred.study.metrics import summarize
from tokred.study.runner import compute_logits

ARCH = dict(img_size=32, patch_size=4, embed_dim=24, depth=3, num_heads=2)  # 64 patches + CLS


def _model(num_classes=5, seed=0):
    torch.manual_seed(seed)
    return create_embedded_model(num_classes, **ARCH).eval()


def _eval_set(n=24, labels=True):
    g = torch.Generator().manual_seed(1)
    return {"images": torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
            "labels": torch.randint(0, 5, (n,), generator=g) if labels else None,
            "mean": (0.5,) * 3, "std": (0.5,) * 3, "preprocess": None}


def _record(model, es, subset, batch=5):
    with fidelity.CLSRecorder(model, subset) as rec:
        compute_logits(model, es, batch, progress=False)
    return rec.features()


def test_recorder_keeps_the_subset_rows_across_batches():
    model, es = _model(), _eval_set()
    subset = fidelity.fidelity_subset(24, 7)
    assert len(subset) == 7 and subset[0] == 0 and subset[-1] == 23
    feats = _record(model, es, subset)
    ref = fidelity.collect_features(model, io_normalize(es)[subset])
    assert feats["blocks"].shape == (3, 7, 24) and feats["blocks"].dtype == fidelity.FEATURE_DTYPE
    torch.testing.assert_close(feats["cls"].float(), ref["cls"], atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(feats["blocks"].float(), ref["blocks"], atol=2e-3, rtol=2e-3)
    assert feats["tokens"] == [65, 65, 65]
    assert fidelity.fidelity_subset(5, 2000) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cap=1"):
        fidelity.fidelity_subset(5, 1)


def io_normalize(es):
    from tokred.models import normalize

    return normalize(es["images"], es["mean"], es["std"])


def test_identical_model_scores_exactly_one_and_a_perturbed_one_less():
    model, es = _model(), _eval_set()
    subset = list(range(24))
    base = _record(model, es, subset)
    same = fidelity.run_fidelity(base, _record(copy.deepcopy(model), es, subset, batch=7))
    assert same["cls_cosine"] == 1.0 and same["cls_angle_deg"] == 0.0 and same["cls_cka"] == pytest.approx(1, abs=1e-12)
    assert all(c == pytest.approx(1, abs=1e-12) for c in same["block_cka"]) and set(same["block_angle_deg"]) == {0.0}
    assert set(same["knn_overlap"].values()) == {1.0} and same["retrieval_top1"] == 1.0
    assert list(same["knn_overlap"]) == ["1", "5", "10"]

    merged = tokred.patch(copy.deepcopy(model), "tome", r=16)
    red = fidelity.run_fidelity(base, _record(merged, es, subset))
    assert red["tokens"] == [49, 33, 17] and red["base_tokens"] == [65, 65, 65]
    assert red["cls_cosine"] < 1 and red["cls_angle_deg"] > 0 and red["cls_cka"] < 1
    assert red["block_cka"][0] == pytest.approx(1, abs=1e-12)  # block 0's CLS is computed before its merge
    assert red["block_cka"][-1] < 1 and red["block_angle_deg"][-1] > 0

    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(0.5 * torch.randn_like(p))
    far = fidelity.run_fidelity(base, _record(noisy, es, subset))
    assert far["cls_cosine"] < red["cls_cosine"] and far["knn_overlap"]["5"] < 1
    with pytest.raises(ValueError, match="same images"):
        fidelity.run_fidelity(base, _record(model, es, subset[:10]))


def test_summarize_without_labels_or_head_leaves_accuracy_out():
    b, m = torch.randn(10, 5), torch.randn(10, 5)
    no_labels = summarize(b, m, None)
    assert set(no_labels) == {"n_images", "kl", "agreement"}
    headless = summarize(b, m, torch.zeros(10, dtype=torch.long), head=False)
    assert headless == {"n_images": 10}
    assert "top1" in summarize(b, m, torch.zeros(10, dtype=torch.long))


def test_evaluation_job_of_a_headless_model_on_unlabelled_images(tmp_path):
    """The labels-free path end to end: a model without a classifier (features as its output) on an
    eval set without labels; the metrics JSON has fidelity, per-block tokens and GFLOPs, no accuracy."""
    model = _model(num_classes=0)
    weights, es_path = tmp_path / "model.pt", tmp_path / "eval_set.pt"
    torch.save({"state_dict": model.state_dict(), "model": ARCH, "num_classes": 0, "history": []}, weights)
    io.save_torch(es_path, _eval_set(labels=False))
    cfg = {"seed": 0, "model": {"source": "embedded", **ARCH}, "data": {}, "task": None, "train": None,
           "eval": {"batch_size": 8, "bootstrap": 100, "device": "cpu", "fidelity_images": 10}}
    out = {}
    for run in ({"name": "base", "group": "baseline", "method": None},
                {"name": "tome_r8", "group": "reproduce", "method": "tome", "r": 8}):
        d = tmp_path / run["name"]
        out[run["name"]] = evaluate_run(cfg, run, weights=str(weights), eval_set_path=str(es_path),
                                        base_logits_path=str(tmp_path / "base" / "logits.pt") if run["method"] else None,
                                        out_metrics=str(d / "metrics.json"), out_logits=str(d / "logits.pt"))
    m = json.loads((tmp_path / "tome_r8" / "metrics.json").read_text())
    assert m == json.loads(json.dumps(out["tome_r8"]))
    for key in ("top1", "top1_ci95", "drop_pp", "kl", "agreement", "mcnemar_vs_base", "delta_margin"):
        assert key not in m
    assert m["n_images"] == 24 and m["block_tokens"] == [57, 49, 41]
    assert len(m["block_gflops"]) == 3 and sum(m["block_gflops"]) < m["gflops"]
    f = m["fidelity"]
    assert f["n_images"] == 10 and f["subset_of"] == 24 and 0 < f["cls_cosine"] < 1 and len(f["block_cka"]) == 3
    base = json.loads((tmp_path / "base" / "metrics.json").read_text())["fidelity"]
    assert base["cls_cosine"] == 1.0 and base["knn_overlap"]["1"] == 1.0
    stored = torch.load(tmp_path / "base" / "logits.pt", weights_only=False)
    assert stored["cls_features"]["blocks"].shape == (3, 10, 24)
    assert "cls_features" not in torch.load(tmp_path / "tome_r8" / "logits.pt", weights_only=False)


def _metrics_file(path, run, group, method, cos, r=None, layers=None, keep_shape=None, overrides=None):
    sched = {k: v for k, v in (("r", r), ("layers", layers), ("keep_shape", keep_shape)) if v is not None}
    m = {"run": run, "group": group, "method": method, "schedule": sched, "overrides": overrides or {},
         "gflops": 4.6 * (1 - 0.02 * (r or 0)), "rel_cost": 1 - 0.02 * (r or 0), "n_images": 8,
         "block_tokens": [197 - (r or 0)] * 3, "provenance": {},
         "fidelity": {"cls_cosine": cos, "cls_angle_deg": 10 * (1 - cos), "cls_cka": cos, "block_cka": [1.0, cos, cos],
                      "block_angle_deg": [0.0, 1.0, 2.0], "knn_overlap": {"1": cos, "5": cos, "10": cos},
                      "retrieval_top1": 1.0}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(m))
    return str(path)


def test_fidelity_report_tables_and_macros_come_from_the_metrics(tmp_path):
    """Without top-1 anywhere: the r-sweep and early tables, Δ against the paired ToMe run, the macros."""
    from tokred.report import fidelity as rep

    paths = [_metrics_file(tmp_path / "b.json", "base", "baseline", "none", 1.0),
             _metrics_file(tmp_path / "t.json", "tome_r13", "reproduce", "tome", 0.98, r=13),
             _metrics_file(tmp_path / "et.json", "tome_L0_r13", "early", "tome", 0.99, r=13, layers="L0"),
             _metrics_file(tmp_path / "eo.json", "ours_L0_r13", "early", "ours", 0.97, r=13, layers="L0")]
    df = rep.fidelity_frame(paths, {"ours_L0_r13": "tome_L0_r13"})
    assert df.top1.isna().all()  # absent accuracy reads as NaN
    row = df.set_index("run").loc["ours_L0_r13"]
    assert row.d_cls_cosine == pytest.approx(-0.02) and row.block_cka_min == 0.97 and row.final_tokens == 184
    rep.fidelity_table(df, "reproduce", str(tmp_path / "r.csv"), str(tmp_path / "r.tex"))
    rep.fidelity_table(df, "early", str(tmp_path / "e.csv"), str(tmp_path / "e.tex"))
    tex = (tmp_path / "e.tex").read_text()
    assert r"ours L0 & 13 & 3.40 & 184 & 0.9700" in tex and "-0.0200" in tex
    assert "ToMe & 13" in (tmp_path / "r.tex").read_text() and "baseline" in (tmp_path / "r.tex").read_text()
    rep.write_fidelity_macros(df, str(tmp_path / "m.tex"), {"views": "8"})
    macros = (tmp_path / "m.tex").read_text()
    assert r"tokred@fid@tome_r13@cls_cosine\endcsname{0.9800}" in macros
    assert r"tokred@real@earlycloser\endcsname{0}" in macros and r"tokred@real@earlypairs\endcsname{1}" in macros
    rep.block_figure(df, str(tmp_path / "f.pdf"), str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 0


def test_constant_r_run_is_labelled_by_its_r_not_nan():
    import pandas as pd

    from tokred.report.fidelity import _label

    row = pd.Series({"group": "full", "method": "ours_size_norm", "keep_shape": float("nan"), "r": 13.0,
                     "run": "ours_size_norm_r13"})
    assert "nan" not in _label(row) and "r=13" in _label(row)
