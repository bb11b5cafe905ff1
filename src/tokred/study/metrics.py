"""Per-run metrics against the unreduced model on the same images (docs/method.md §4).

All functions take logits as float tensors [N, K] and labels as int64 [N]; B is the baseline
(unreduced) model, M the reduced one.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1) == labels


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * correct(logits, labels).double().mean().item()


def kl_per_image(base_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(B || M) between the softmax outputs of each image (nats), shape (images,), float64."""
    lp_b = base_logits.double().log_softmax(-1)
    lp_m = logits.double().log_softmax(-1)
    return (lp_b.exp() * (lp_b - lp_m)).sum(-1)


def kl_divergence(base_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over images of KL(B || M) between the softmax outputs (nats)."""
    return kl_per_image(base_logits, logits).mean().item()


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logit of the true class minus the largest other logit, per image."""
    lg = logits.double()
    true = lg.gather(1, labels[:, None])[:, 0]
    other = lg.scatter(1, labels[:, None], -math.inf).max(-1).values
    return true - other


def delta_margin(base_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of margin_M - margin_B (negative: the reduced model is less sure of the truth)."""
    return (margin(logits, labels) - margin(base_logits, labels)).mean().item()


def agreement(base_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Percent of images on which both models predict the same class."""
    return 100.0 * (base_logits.argmax(-1) == logits.argmax(-1)).double().mean().item()


TAIL_FRACTION = 0.10  # the share of images with the lowest baseline margin that tail Δ is measured on


def tail_drop(base_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, *, fraction: float = TAIL_FRACTION,
              n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Tail Δ (docs/method.md §4): the top-1 drop (pp, base - reduced) on the ⌈fraction·N⌉ images with the
    lowest baseline margin (`margin`: logit_true - max_other of the unreduced model; ties keep image order),
    with a percentile bootstrap interval (`level`) of the paired per-image difference over those images
    (scipy.stats.bootstrap, `n_boot` resamples seeded by `seed`).

    base_logits, logits: [N, K]; labels: int64 [N]. Returns {"tail_drop_pp", "tail_drop_ci95": [lo, hi],
    "tail_images"}. Raises ValueError for an empty set or a fraction outside (0, 1].
    """
    from scipy.stats import bootstrap

    n = labels.numel()
    if n == 0 or not 0 < fraction <= 1:
        raise ValueError(f"tail_drop: need images and 0 < fraction <= 1 (got {n} images, fraction {fraction})")
    k = max(1, math.ceil(fraction * n))
    idx = torch.argsort(margin(base_logits, labels), stable=True)[:k]
    d = 100.0 * (correct(base_logits[idx], labels[idx]).double() - correct(logits[idx], labels[idx]).double()).numpy()
    if k > 1 and np.ptp(d) > 0:
        ci = bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                       rng=np.random.default_rng(seed)).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
    else:  # every resample has the same mean
        lo = hi = float(d.mean())
    return {"tail_drop_pp": float(d.mean()), "tail_drop_ci95": [lo, hi], "tail_images": k}


def paired_drop(base_correct: torch.Tensor, correct_m: torch.Tensor) -> tuple[float, float]:
    """Drop in percentage points (base - reduced) and its paired standard error."""
    d = base_correct.double() - correct_m.double()
    n = d.numel()
    se = d.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return 100.0 * d.mean().item(), 100.0 * se


def bootstrap_ci(correct_m: torch.Tensor, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of top-1 (percent), resampling images with replacement."""
    c = correct_m.numpy().astype(np.float64)
    rng = np.random.default_rng(seed)
    # Resampling counts via multinomial keeps memory O(n_boot) instead of O(n_boot * n).
    n = c.size
    k = int(c.sum())
    means = rng.binomial(n, k / n, size=n_boot) / n if n else np.zeros(n_boot)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return 100.0 * float(lo), 100.0 * float(hi)


def mcnemar(correct_a: torch.Tensor, correct_b: torch.Tensor) -> dict:
    """McNemar's paired test between two runs on the same images.

    b01: a wrong, b right; b10: a right, b wrong. Exact binomial p-value (two-sided) when the
    discordant count is small, else the chi-square statistic with continuity correction.
    """
    a, b = correct_a.bool(), correct_b.bool()
    n01 = int((~a & b).sum())
    n10 = int((a & ~b).sum())
    n = n01 + n10
    if n == 0:
        return {"n01": 0, "n10": 0, "statistic": 0.0, "p_value": 1.0, "exact": True}
    if n <= 50:
        k = min(n01, n10)
        p = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
        return {"n01": n01, "n10": n10, "statistic": float(k), "p_value": min(1.0, 2 * p), "exact": True}
    stat = (abs(n01 - n10) - 1) ** 2 / n
    p = math.erfc(math.sqrt(stat / 2))  # survival function of chi-square with 1 dof
    return {"n01": n01, "n10": n10, "statistic": stat, "p_value": p, "exact": False}


def summarize(base_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor | None, *, n_boot: int = 2000,
              seed: int = 0, head: bool = True) -> dict:
    """All per-run metrics of docs/method.md §4 that need only logits (tail Δ: `tail_drop`).

    Without labels (`labels` None: an eval set of unlabelled images) the accuracy metrics (top1, its
    interval, drop, margin, McNemar) are absent, not zero; without a classifier (`head` False: the
    "logits" are features) KL and agreement are absent too, leaving `n_images`; the head-free
    fidelity metrics (`tokred.study.fidelity`) then carry the comparison (labels are unused then)."""
    if labels is None or not head:
        out = {"n_images": int(logits.shape[0])}
        if head:
            out.update(kl=kl_divergence(base_logits, logits), agreement=agreement(base_logits, logits))
        return out
    cb, cm = correct(base_logits, labels), correct(logits, labels)
    drop, drop_se = paired_drop(cb, cm)
    lo, hi = bootstrap_ci(cm, n_boot=n_boot, seed=seed)
    return {
        "n_images": int(labels.numel()),
        "top1": top1(logits, labels),
        "top1_ci95": [lo, hi],
        "base_top1": top1(base_logits, labels),
        "drop_pp": drop,
        "drop_se_pp": drop_se,
        "kl": kl_divergence(base_logits, logits),
        "delta_margin": delta_margin(base_logits, logits, labels),
        "agreement": agreement(base_logits, logits),
        "mcnemar_vs_base": mcnemar(cb, cm),
        **tail_drop(base_logits, logits, labels, n_boot=n_boot, seed=seed),
    }
