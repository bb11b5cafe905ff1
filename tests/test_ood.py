"""OOD evaluation helpers: ImageNet-R logit restriction and the severity-averaged OOD table."""
import numpy as np
import pandas as pd
import pytest
import torch

from tokred.study.ood import restrict_to_mask
from tokred.report.tables import ood_table


def test_restrict_to_mask_scores_only_the_subset_classes():
    logits = torch.tensor([[9.0, 1.0, 2.0, 0.0], [0.0, 1.0, 5.0, 9.0]])
    labels = torch.tensor([2, 3])  # indices into the full class space
    sub, pos = restrict_to_mask(logits, labels, [1, 2])
    assert sub.tolist() == [[1.0, 2.0], [1.0, 5.0]]
    # class 3 is outside the mask: its label becomes -1 (never correct), class 2 is position 1
    assert pos.tolist() == [1, -1]
    same = restrict_to_mask(logits, labels, None)
    assert same[0] is logits and same[1] is labels


def _row(family, sev, run, method, correct):
    c = np.asarray(correct, dtype=float)
    return {"condition": f"{family}-{sev}", "family": family, "severity": sev, "run": run, "method": method,
            "gflops": 1.0, "top1": c.mean() * 100, "top1_lo": 0, "top1_hi": 100, "drop_pp": 0, "drop_se_pp": 0,
            "kl": 0, "n_images": len(c), "correct": c, "provenance": {}}


def test_ood_table_averages_severities_per_image_and_pairs_the_drop(tmp_path):
    rng = np.random.default_rng(0)
    base = {s: rng.random(400) < 0.8 for s in (1, 2)}
    tome = {s: base[s] & (rng.random(400) < 0.9) for s in (1, 2)}  # only ever loses images
    df = pd.DataFrame([_row("noise", s, "base", "none", base[s]) for s in (1, 2)]
                      + [_row("noise", s, "tome_r13", "tome", tome[s]) for s in (1, 2)])
    t = ood_table(df, str(tmp_path / "ood.csv"), str(tmp_path / "ood.tex"), n_boot=500).set_index("run")
    want_base = np.mean([base[1].mean(), base[2].mean()]) * 100
    want_tome = np.mean([tome[1].mean(), tome[2].mean()]) * 100
    assert t.loc["base", "top1"] == pytest.approx(want_base)
    assert t.loc["tome_r13", "drop_pp"] == pytest.approx(want_base - want_tome)
    assert t.loc["tome_r13", "drop_lo"] > 0  # a paired, one-sided loss is clearly positive
    assert t.loc["base", "top1_lo"] < want_base < t.loc["base", "top1_hi"]
    assert t.loc["base", "drop_pp"] == 0
    assert "noise" in (tmp_path / "ood.tex").read_text()
