"""Per-run metrics JSON files -> pandas frames, and paired comparisons of runs on the same images.

Frames have one row per run with the `COLUMNS` below plus `DETAIL` columns (provenance, method
configuration, schedule, path) that stay out of the CSV tables.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


COLUMNS = ["run", "group", "method", "layers", "r", "gflops", "rel_cost", "top1", "top1_lo", "top1_hi", "drop_pp",
           "drop_se_pp", "tail_drop_pp", "tail_lo", "tail_hi", "kl", "delta_margin", "agreement", "mcnemar_p",
           "n_images"]


def load_metrics(paths) -> pd.DataFrame:
    rows = []
    for p in paths:
        m = json.loads(Path(p).read_text())
        rows.append({
            "run": m["run"], "group": m["group"], "method": m["method"],
            "r": m["schedule"].get("r"), "layers": m["schedule"].get("layers"),
            "keep_shape": m["schedule"].get("keep_shape"), "overrides": m.get("overrides") or {},
            "gflops": m["gflops"], "rel_cost": m["rel_cost"],
            # absent without labels / without a classifier (tokred.study.metrics.summarize): NaN here
            "top1": m.get("top1", NAN), "top1_lo": m.get("top1_ci95", [NAN, NAN])[0],
            "top1_hi": m.get("top1_ci95", [NAN, NAN])[1], "drop_pp": m.get("drop_pp", NAN),
            "drop_se_pp": m.get("drop_se_pp", NAN), "kl": m.get("kl", NAN),
            "delta_margin": m.get("delta_margin", NAN), "agreement": m.get("agreement", NAN),
            "mcnemar_p": (m.get("mcnemar_vs_base") or {}).get("p_value", NAN), "n_images": m["n_images"],
            "tail_drop_pp": m.get("tail_drop_pp", NAN), "tail_lo": m.get("tail_drop_ci95", [NAN, NAN])[0],
            "tail_hi": m.get("tail_drop_ci95", [NAN, NAN])[1],
            **fidelity_columns(m.get("fidelity")),
            "clip_fired": _clip_rate(m.get("clip_counts")),
            "clip_fired_max": max((f for f in m.get("clip_fired") or [] if f is not None), default=float("nan")),
            "provenance": m["provenance"], "method_config": m.get("method_config"),
            "schedule": m["schedule"], "resolved_r": m.get("resolved_r"), "path": str(p),
        })
    return pd.DataFrame(rows)


NAN = float("nan")
FIDELITY_COLUMNS = ["cls_cosine", "cls_angle_deg", "cls_cka", "block_cka_mean", "block_cka_min", "knn1", "knn10",
                    "retrieval_top1"]


def fidelity_columns(f: dict | None) -> dict:
    """The head-free fidelity of a metrics JSON (`fidelity`, docs/method.md §4) as flat columns; NaN
    when the run has none (written before it was recorded) or a k was above the subset's size."""
    f = f or {}
    blocks = f.get("block_cka") or []
    knn = f.get("knn_overlap") or {}
    return {"cls_cosine": f.get("cls_cosine", NAN), "cls_angle_deg": f.get("cls_angle_deg", NAN),
            "cls_cka": f.get("cls_cka", NAN), "block_cka_mean": sum(blocks) / len(blocks) if blocks else NAN,
            "block_cka_min": min(blocks, default=NAN), "knn1": knn.get("1", NAN), "knn10": knn.get("10", NAN),
            "retrieval_top1": f.get("retrieval_top1", NAN)}


def _clip_rate(counts: dict | None) -> float:
    """Fraction of merged tokens the L2 clip shortened over all blocks (NaN: no clip or nothing merged)."""
    merged = sum((counts or {}).get("merged") or [])
    return sum(counts["clipped"]) / merged if merged else float("nan")


DETAIL = ["provenance", "method_config", "schedule", "resolved_r", "path", "overrides"]  # kept out of CSVs


def add_comparison(df: pd.DataFrame, pairs: dict, labels, name: str) -> pd.DataFrame:
    """For each run paired with another (`pairs`: run -> partner run, both rows of `df`): columns
    `<name>_run`, `delta_vs_<name>` (Δ top-1 in pp, run - partner) with its 95% interval
    `delta_lo_vs_<name>`/`delta_hi_vs_<name>` (normal, paired per-image differences), `p_vs_<name>` (McNemar's p on the
    same images, `tokred.study.metrics.mcnemar`) and `changed_vs_<name>` (% of images whose predicted class
    differs) and `logit_diff_vs_<name>` (largest |logit difference|: 0 when the two runs are identical);
    NaN for runs without a partner in `df`."""
    import torch

    from ..study.metrics import correct, mcnemar

    def logits(path):
        return torch.load(Path(path).with_name("logits.pt"), weights_only=False)["logits"]

    by_run = df.set_index("run")
    out = df.copy()
    out[f"{name}_run"], out[f"delta_vs_{name}"], out[f"p_vs_{name}"] = None, float("nan"), float("nan")
    out[f"changed_vs_{name}"], out[f"logit_diff_vs_{name}"] = float("nan"), float("nan")
    out[f"delta_lo_vs_{name}"], out[f"delta_hi_vs_{name}"] = float("nan"), float("nan")
    for i, row in out.iterrows():
        other = pairs.get(row["run"])
        if other is None or other not in by_run.index:
            continue
        a, b = logits(by_run.loc[other, "path"]), logits(row["path"])
        out.at[i, f"{name}_run"] = other
        out.at[i, f"delta_vs_{name}"] = row["top1"] - by_run.loc[other, "top1"]
        ca, cb = correct(a, labels), correct(b, labels)
        out.at[i, f"p_vs_{name}"] = mcnemar(ca, cb)["p_value"]
        # 95% normal interval of the paired per-image difference (pp), as the drop's interval
        d = 100.0 * (cb.double() - ca.double())
        half = 1.96 * d.std().item() / len(d) ** 0.5 if len(d) > 1 else 0.0
        out.at[i, f"delta_lo_vs_{name}"] = out.at[i, f"delta_vs_{name}"] - half
        out.at[i, f"delta_hi_vs_{name}"] = out.at[i, f"delta_vs_{name}"] + half
        out.at[i, f"changed_vs_{name}"] = 100.0 * (a.argmax(-1) != b.argmax(-1)).double().mean().item()
        out.at[i, f"logit_diff_vs_{name}"] = (a.double() - b.double()).abs().max().item()
    return out


def add_tome_comparison(df: pd.DataFrame, pairs: dict, labels) -> pd.DataFrame:
    """For each run paired with a ToMe run: Δ top-1 (pp, ours - ToMe) and McNemar's p on the same images
    (columns tome_run, delta_vs_tome, p_vs_tome)."""
    return add_comparison(df, pairs, labels, "tome")


def chance_level(labels, level: float = 0.95) -> tuple[float, float, float]:
    """Chance level of a labelled set (docs/method.md §6): the accuracy (%) of always answering its most
    frequent label (1/K on a balanced set; labels < 0, never correct, count as images), and the `level`
    binomial interval (%) of a guesser's accuracy on these n images (scipy.stats.binom.interval).
    labels: int array [n]. Returns (chance, lo, hi)."""
    import numpy as np
    from scipy.stats import binom

    lab = np.asarray(labels)
    n = lab.size
    p0 = np.bincount(lab[lab >= 0]).max() / n if (lab >= 0).any() else 0.0
    lo, hi = binom.interval(level, n, p0)
    return 100.0 * p0, 100.0 * lo / n, 100.0 * hi / n


def load_ood(paths) -> pd.DataFrame:
    """One row per (condition, run) with per-image correctness (from the run's logits and labels), the
    corruption parameter applied, the condition's chance level with its 95% interval (`chance_level`) and
    `floor`: whether the unreduced model's Top-1 on that condition is at or below the interval's upper end."""
    import torch

    from ..study.metrics import correct

    rows = []
    for p in paths:
        m = json.loads(Path(p).read_text())
        lg = torch.load(Path(p).with_name("logits.pt"), weights_only=False)
        family = m.get("corruption") or m.get("dataset") or "clean"
        if m.get("dataset") == "imagenet_c":
            family = f"imagenet_c-{m['corruption']}"
        rows.append({"condition": m["condition"], "family": family, "severity": m.get("severity") or 0,
                     "run": m["run"], "method": m["method"], "gflops": m["gflops"], "top1": m["top1"],
                     "top1_lo": m["top1_ci95"][0], "top1_hi": m["top1_ci95"][1], "drop_pp": m["drop_pp"],
                     "drop_se_pp": m["drop_se_pp"], "kl": m["kl"], "n_images": m["n_images"],
                     "tail_drop_pp": m["tail_drop_pp"], "corruption_param": m.get("corruption_param"),
                     **dict(zip(("chance", "chance_lo", "chance_hi"), chance_level(lg["labels"].numpy()))),
                     "side": int(m.get("image_side") or 0),
                     "correct": correct(lg["logits"], lg["labels"]).double().numpy(), "provenance": m["provenance"]})
    df = pd.DataFrame(rows)
    base = df[df.method == "none"].set_index("condition")
    df["floor"] = [bool(base.loc[c, "top1"] <= base.loc[c, "chance_hi"]) if c in base.index else False
                   for c in df.condition]
    return df
