"""Comparisons repeated on several trained models (`experiments.replicate`): does a conclusion of the main
model hold on models trained with other seeds?

The same training on another CPU gives other weights, and the ranking of methods on the embedded task
can flip with them (benchmarks/CALIBRATION.md), so a difference counts as a finding only when it holds
on every model. Per model, each comparison is paired on the same images: Δ top-1 (pp, run − partner)
with McNemar's p, Holm-adjusted over that model's comparisons; across models, the mean Δ with a 95%
t-interval over the models (scipy.stats.t, n − 1 degrees of freedom: three models give a wide one).
A row *holds* when every model's Δ has the same sign and is significant after Holm on that model.
"""
from __future__ import annotations

import math

import pandas as pd

from .. import io
from .tables import ALPHA, holm, tex_escape


def _model_rows(label: str, runs: dict[str, str], pairs: dict[str, str], labels) -> list[dict]:
    """One model's comparisons: `runs` maps "group/run" (the baseline "baseline/base" too) to its metrics
    JSON path; `pairs` maps each compared run to its partner."""
    import json
    from pathlib import Path

    import torch

    from ..study.metrics import correct, mcnemar

    loaded = {}  # each run read once (a partner, e.g. the baseline, serves several comparisons)

    def load(item):
        if item not in loaded:
            path = Path(runs[item])
            logits = torch.load(path.with_name("logits.pt"), weights_only=False)["logits"]
            loaded[item] = json.loads(path.read_text()), correct(logits, labels)
        return loaded[item]

    rows = []
    for item, partner in pairs.items():
        (m, c), (_, c_p) = load(item), load(partner)
        d = 100.0 * (c.double() - c_p.double())
        rows.append({"model": label, "comparison": item, "vs": partner, "delta": d.mean().item(),
                     "p": mcnemar(c_p, c)["p_value"], "kl": m.get("kl", math.nan), "gflops": m["gflops"]})
    p_holm = holm([r["p"] for r in rows])
    for r, ph in zip(rows, p_holm):
        r["p_holm"] = float(ph)
    return rows


def across_models(deltas: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-model values with its t-interval across models; (mean, nan, nan) for one model."""
    from scipy import stats

    n = len(deltas)
    mean = sum(deltas) / n
    if n < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * stats.tstd(deltas) / math.sqrt(n)
    return mean, mean - half, mean + half


def replication_table(models: list[tuple[str, dict[str, str]]], pairs: dict[str, str], labels, csv_path: str,
                      tex_path: str, macros_path: str) -> pd.DataFrame:
    """`models`: [(label, {"group/run": metrics path})], the main model first; `pairs`: compared run ->
    partner ("group/run"). Writes the CSV (per-model Δ, Holm p, KL; mean Δ with its interval across
    models, same_sign, holds), the LaTeX table (defines \\replicationnote for its caption) and
    \\ReplicationFindings (one generated sentence per comparison). Returns the CSV's frame."""
    per = [r for label, runs in models for r in _model_rows(label, runs, pairs, labels)]
    long = pd.DataFrame(per)
    out = []
    for item, partner in pairs.items():
        sub = long[long["comparison"] == item]
        deltas = sub["delta"].tolist()
        mean, lo, hi = across_models(deltas)
        signs = {math.copysign(1.0, d) for d in deltas if d != 0}
        same = len(signs) == 1 and all(d != 0 for d in deltas)
        row = {"comparison": item, "vs": partner, "n_models": len(sub), "mean_delta": mean, "lo": lo, "hi": hi,
               "same_sign": same, "holds": bool(same and (sub["p_holm"] < ALPHA).all()),
               "kl_min": sub["kl"].min(), "kl_max": sub["kl"].max(), "gflops": sub["gflops"].iloc[0]}
        for _, r in sub.iterrows():
            key = r["model"].replace(" ", "_")
            row[f"delta_{key}"], row[f"p_holm_{key}"], row[f"kl_{key}"] = r["delta"], r["p_holm"], r["kl"]
        out.append(row)
    df = pd.DataFrame(out)
    with io.atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    _write_tex(df, [label for label, _ in models], tex_path)
    io.write_text(macros_path, r"\newcommand{\ReplicationFindings}{" + " ".join(sentences(df, models)) + "}\n")
    return df


def _name(item: str) -> str:
    return tex_escape(item.split("/", 1)[1])


def _write_tex(df: pd.DataFrame, labels: list[str], tex_path: str) -> None:
    keys = [lab.replace(" ", "_") for lab in labels]
    body = []
    for _, r in df.iterrows():
        cells = [f"{r[f'delta_{k}']:+.2f}" + (r"$^{*}$" if r[f"p_holm_{k}"] < ALPHA else "") for k in keys]
        interval = f"{r['mean_delta']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]"
        body.append(" & ".join([_name(r["comparison"]), _name(r["vs"]) if r["vs"] != "baseline/base" else "baseline",
                                *cells, interval, f"{r['kl_min']:.1e}", r"\checkmark" if r["holds"] else "--"]) + r" \\")
    header = " & ".join(["Run", "vs", *[tex_escape(lab) for lab in labels], r"mean $\Delta$ [95\%]",
                         r"KL$_{\min}$", "holds"])
    note = (r"\gdef\replicationnote{$\Delta$: Top-1 of the run minus its partner's (pp), paired on the same "
            rf"images of each model; a star marks $p<{ALPHA:g}$ (McNemar) after Holm's correction over that model's "
            rf"{len(df)} comparisons. Mean over the {len(labels)} models with a 95\% $t$-interval across models; "
            r"KL$_{\min}$: the smallest KL(baseline$\|$run) over the models. A row holds when every model's "
            r"$\Delta$ has the same sign and a star.}")
    io.write_text(tex_path, "\n".join([rf"\begin{{tabular}}{{ll{'r' * len(labels)}rrc}}", r"\toprule",
                                        header + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
                                        note, ""]))


def outcome(row: pd.Series, deltas: list[float]) -> str:
    """What one repeated comparison (a row of the CSV, with its per-model Δ) shows across the models: "holds"
    (same sign and significant on each), "same_sign" (not significant on every model), "equal" (Δ = 0 on every
    model), "sign_differs", or "zero_somewhere" (Δ = 0 on some model, one sign on the others)."""
    if row["holds"]:
        return "holds"
    if row["same_sign"]:
        return "same_sign"
    if all(d == 0 for d in deltas):
        return "equal"
    return "sign_differs" if min(deltas) < 0 < max(deltas) else "zero_somewhere"


def sentences(df: pd.DataFrame, models: list) -> list[str]:
    """The findings across models, in words generated from the table (one sentence per comparison)."""
    labels = [label for label, _ in models]
    keys = [lab.replace(" ", "_") for lab in labels]
    n = len(labels)
    held = int(df["holds"].sum())
    out = [f"Across the {n} trained models ({', '.join(labels)}), {held} of the {len(df)} repeated "
           f"comparisons hold on every model (same sign, significant after Holm on each)."]
    for _, r in df.iterrows():
        per = " / ".join(f"{r[f'delta_{k}']:+.2f}" for k in keys)
        vs = "the baseline" if r["vs"] == "baseline/base" else _name(r["vs"])
        verdict = {"holds": "it holds on every model",
                   "same_sign": "the sign agrees but not every model's difference is significant",
                   "equal": "Top-1 is the same on every model",
                   "sign_differs": "the sign differs between models, so the main model's result alone is not a finding",
                   "zero_somewhere": "it is 0 on some model, so it does not hold on every model",
                   }[outcome(r, [r[f"delta_{k}"] for k in keys])]
        out.append(f"{_name(r['comparison'])} vs {vs}: $\\Delta$ = {per} pp (mean {r['mean_delta']:+.2f}, "
                   f"95\\% interval across models [{r['lo']:+.2f}, {r['hi']:+.2f}], "
                   f"KL {r['kl_min']:.1e}--{r['kl_max']:.1e}); {verdict}.")
    return out

