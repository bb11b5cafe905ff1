import math

import pytest
import torch

from tokred.study import metrics


def test_top1_drop_agreement():
    labels = torch.tensor([0, 1, 2, 0])
    base = torch.eye(3)[[0, 1, 2, 1]] * 5  # 3/4 correct
    red = torch.eye(3)[[0, 2, 2, 1]] * 5  # 2/4 correct
    assert metrics.top1(base, labels) == 75.0
    s = metrics.summarize(base, red, labels, n_boot=200)
    assert s["drop_pp"] == 25.0
    assert s["agreement"] == 75.0
    assert s["mcnemar_vs_base"]["n10"] == 1 and s["mcnemar_vs_base"]["n01"] == 0


def test_kl_zero_for_identical_and_positive_otherwise():
    torch.manual_seed(0)
    a = torch.randn(50, 10)
    assert metrics.kl_divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    b = a + torch.randn(50, 10)
    p, q = a.double().softmax(-1), b.double().softmax(-1)
    expected = (p * (p.log() - q.log())).sum(-1).mean().item()
    assert metrics.kl_divergence(a, b) == pytest.approx(expected, rel=1e-9)


def test_margin():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 4.0, 1.0]])
    labels = torch.tensor([0, 2])
    assert metrics.margin(logits, labels).tolist() == [1.0, -3.0]
    shifted = logits.clone()
    shifted[0, 0] = 2.5
    assert metrics.delta_margin(logits, shifted, labels) == pytest.approx(-0.25)


def test_bootstrap_ci_covers_and_narrows():
    c_small = torch.tensor([1] * 80 + [0] * 20).bool()
    c_big = torch.tensor([1] * 8000 + [0] * 2000).bool()
    lo, hi = metrics.bootstrap_ci(c_small)
    lo2, hi2 = metrics.bootstrap_ci(c_big)
    assert lo < 80 < hi and lo2 < 80 < hi2
    assert (hi2 - lo2) < (hi - lo) / 5
    # normal approximation: half-width ~ 1.96 * sqrt(p(1-p)/n)
    assert (hi2 - lo2) / 2 == pytest.approx(196 * math.sqrt(0.16 / 10000), rel=0.15)


def test_mcnemar_exact_and_chi2():
    a = torch.tensor([1, 1, 1, 1, 0, 0]).bool()
    b = torch.tensor([0, 0, 0, 1, 0, 1]).bool()
    r = metrics.mcnemar(a, b)  # n10 = 3, n01 = 1: exact two-sided p = 2 * P(X <= 1 | n=4)
    assert (r["n10"], r["n01"]) == (3, 1)
    assert r["p_value"] == pytest.approx(2 * 5 / 16)
    a = torch.ones(300).bool()
    b = torch.cat([torch.zeros(100), torch.ones(200)]).bool()
    b[:10] = True
    a[-20:] = False
    r = metrics.mcnemar(a, b)
    assert not r["exact"] and r["p_value"] < 1e-10
    assert metrics.mcnemar(a, a)["p_value"] == 1.0


def _ranked_logits(n: int, k: int = 3):
    """All images of class 0, correct, with baseline margin i + 1 for image i (image 0 least sure)."""
    labels = torch.zeros(n, dtype=torch.long)
    base = torch.zeros(n, k)
    base[:, 0] = torch.arange(n, dtype=torch.float32) + 1
    return base, labels


def test_tail_drop_is_the_drop_on_the_lowest_baseline_margin_decile():
    base, labels = _ranked_logits(100)
    red = base.clone()
    red[:5, 1] = 1000.0  # the 5 least sure images become wrong: all inside the tail (10 images)
    t = metrics.tail_drop(base, red, labels, n_boot=500)
    assert t["tail_images"] == 10 and t["tail_drop_pp"] == pytest.approx(50.0)
    lo, hi = t["tail_drop_ci95"]
    assert 0 < lo < 50 < hi <= 100
    assert metrics.summarize(base, red, labels, n_boot=200)["drop_pp"] == pytest.approx(5.0)
    # The same 5 errors on sure images (margins 51-55) are outside the tail: tail Δ 0, overall drop 5 pp.
    red = base.clone()
    red[50:55, 1] = 1000.0
    s = metrics.summarize(base, red, labels, n_boot=200)
    assert s["tail_drop_pp"] == 0.0 and s["tail_drop_ci95"] == [0.0, 0.0] and s["drop_pp"] == pytest.approx(5.0)


def test_tail_drop_uses_the_baseline_margin_and_counts_fixes_negative():
    base, labels = _ranked_logits(40)
    base[:2, 2] = 1000.0  # the baseline is wrong on images 0-1 (lowest margin), the reduced model right
    red, _ = _ranked_logits(40)
    t = metrics.tail_drop(base, red, labels, n_boot=200)  # ⌈0.1 · 40⌉ = 4 images: 2 fixed, 2 unchanged
    assert t["tail_images"] == 4 and t["tail_drop_pp"] == pytest.approx(-50.0)
    # Ranking by the reduced model's margin instead would pick other images: the tail is the baseline's.
    assert metrics.tail_drop(red, base, labels, n_boot=200)["tail_drop_pp"] == pytest.approx(100 * 2 / 4)
    with pytest.raises(ValueError, match="fraction"):
        metrics.tail_drop(base, red, labels, fraction=0.0)
