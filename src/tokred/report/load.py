"""Per-run metrics JSON files -> pandas frames, and paired comparisons of runs on the same images.

Frames have one row per run with the `COLUMNS` below plus `DETAIL` columns (provenance, method
configuration, schedule, path) that stay out of the CSV tables.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


COLUMNS = ["run", "group", "method", "layers", "r", "gflops", "rel_cost", "top1", "top1_lo", "top1_hi", "drop_pp",
           "drop_se_pp", "kl", "delta_margin", "agreement", "mcnemar_p", "n_images"]


def load_metrics(paths) -> pd.DataFrame:
    rows = []
    for p in paths:
        m = json.loads(Path(p).read_text())
        rows.append({
            "run": m["run"], "group": m["group"], "method": m["method"],
            "r": m["schedule"].get("r"), "layers": m["schedule"].get("layers"),
            "keep_shape": m["schedule"].get("keep_shape"), "overrides": m.get("overrides") or {},
            "gflops": m["gflops"], "rel_cost": m["rel_cost"],
            "top1": m["top1"], "top1_lo": m["top1_ci95"][0], "top1_hi": m["top1_ci95"][1],
            "drop_pp": m["drop_pp"], "drop_se_pp": m["drop_se_pp"], "kl": m["kl"],
            "delta_margin": m["delta_margin"], "agreement": m["agreement"],
            "mcnemar_p": m["mcnemar_vs_base"]["p_value"], "n_images": m["n_images"],
            "provenance": m["provenance"], "method_config": m.get("method_config"),
            "schedule": m["schedule"], "path": str(p),
        })
    return pd.DataFrame(rows)


DETAIL = ["provenance", "method_config", "schedule", "path", "overrides"]  # kept out of CSVs


def add_tome_comparison(df: pd.DataFrame, pairs: dict, labels) -> pd.DataFrame:
    """For each run paired with a ToMe run: Δ top-1 (pp, ours - ToMe) and McNemar's p on the same images."""
    import torch

    from ..study.metrics import correct, mcnemar

    def corr(path):
        logits = torch.load(Path(path).with_name("logits.pt"), weights_only=False)["logits"]
        return correct(logits, labels)

    by_run = df.set_index("run")
    out = df.copy()
    out["tome_run"], out["delta_vs_tome"], out["p_vs_tome"] = None, float("nan"), float("nan")
    for i, row in out.iterrows():
        tome = pairs.get(row["run"])
        if tome is None or tome not in by_run.index:
            continue
        test = mcnemar(corr(by_run.loc[tome, "path"]), corr(row["path"]))
        out.at[i, "tome_run"] = tome
        out.at[i, "delta_vs_tome"] = row["top1"] - by_run.loc[tome, "top1"]
        out.at[i, "p_vs_tome"] = test["p_value"]
    return out


def load_ood(paths) -> pd.DataFrame:
    """One row per (condition, run) with per-image correctness (from the run's logits and labels)."""
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
                     "correct": correct(lg["logits"], lg["labels"]).double().numpy(), "provenance": m["provenance"]})
    return pd.DataFrame(rows)
