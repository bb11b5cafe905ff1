"""The OOD tables (docs/method.md §6): per family the mean over severities above chance level, and per
condition the paired tests of ours against ToMe and of each variant against ours (McNemar, Holm over the
table, `tokred.report.tables.holm`), with the chance level and the floor-level conditions marked. Input: the
frame of `tokred.report.load.load_ood`.
"""
from __future__ import annotations

import pandas as pd

from .. import io
from .tables import _star, _write_table, holm, holm_note, tex_escape


def _mean_ci(x, n_boot: int, seed: int) -> tuple[float, float]:
    # Per-image values are averages over severities, not 0/1: metrics.bootstrap_ci's binomial
    # shortcut does not apply, so images are resampled directly.
    import numpy as np

    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def ood_table(df: pd.DataFrame, csv_path: str, tex_path: str, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per family (corruption, dataset, clean) and run: Top-1 averaged over severities with a 95%
    bootstrap interval over images, and the paired drop vs the unreduced model (95% normal interval).
    Per-image correctness is averaged over severities first (same images in every severity). Floor-level
    severities (`df.floor`, see `load.load_ood`: the unreduced model at chance level) are left out of the
    means (docs/method.md §6) and listed in `floor_severities`; a family with nothing else has NaN means.
    The .tex file defines \\oodfloornote (`ood_floor_note`) for the caption."""
    import numpy as np

    rows = []
    for (family, run), g in df.groupby(["family", "run"], sort=False):
        g = g.sort_values("severity")
        keep = ~g["floor"].to_numpy(bool)
        base = df[(df.family == family) & (df.method == "none") & ~df.floor].sort_values("severity")
        row = {"family": family, "run": run, "method": g.method.iloc[0], "severities": int(keep.sum()),
               "averaged": " ".join(str(int(s)) for s in g.severity[keep]),
               "floor_severities": " ".join(str(int(s)) for s in g.severity[~keep]), "gflops": g.gflops.iloc[0],
               "n_images": len(g["correct"].iloc[0])}
        if keep.any():
            acc = np.stack(list(g["correct"][keep])).mean(0) * 100
            diff = np.stack(list(base["correct"])).mean(0) * 100 - acc
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
            lo, hi = _mean_ci(acc, n_boot, seed)
            row.update({"top1": float(acc.mean()), "top1_lo": lo, "top1_hi": hi, "drop_pp": float(diff.mean()),
                        "drop_lo": float(diff.mean()) - 1.96 * se, "drop_hi": float(diff.mean()) + 1.96 * se})
        rows.append(row)
    t = pd.DataFrame(rows, columns=["family", "run", "method", "severities", "averaged", "floor_severities", "gflops",
                                    "top1", "top1_lo", "top1_hi", "drop_pp", "drop_lo", "drop_hi", "n_images"])
    with io.atomic_path(csv_path) as tmp:
        t.to_csv(tmp, index=False, float_format="%.6g")
    body = []
    for fam, g in t.groupby("family", sort=False):
        for i, r in enumerate(g.itertuples()):
            name = ""
            if i == 0:
                name = tex_escape(fam.replace("_", " "))
                if r.floor_severities:  # which severities the means cover, where some were left out
                    name += r"$^\dagger$" + (rf" (sev.\ {r.averaged.replace(' ', ', ')})" if r.averaged else "")
            if pd.isna(r.top1):
                body.append(f"{name} & {tex_escape(_run_label(r))} & {r.gflops:.3f} & at chance & -- \\\\")
                continue
            drop = "--" if r.method == "none" else f"{r.drop_pp:+.2f} [{r.drop_lo:+.2f}, {r.drop_hi:+.2f}]"
            body.append(f"{name} & {tex_escape(_run_label(r))} & "
                        f"{r.gflops:.3f} & {r.top1:.2f} [{r.top1_lo:.1f}, {r.top1_hi:.1f}] & {drop} \\\\")
    _write_table(tex_path, "llrcc", r"Condition & Run & GFLOPs & Top-1 [95\% CI] & Drop vs base (pp) [95\% CI]", body,
                 tail=(ood_floor_note(df),))
    return t


def _run_label(r) -> str:
    """A run's name in the OOD tables and figures: `baseline` for the unreduced model, else the run name."""
    return "baseline" if r.method == "none" else r.run


def _condition_label(c: str) -> str:
    return tex_escape(c.replace("_", " ").replace("-", " "))


def ood_floor_note(df: pd.DataFrame) -> str:
    """\\gdef\\oodfloornote{...}: the chance level of the clean condition (its 95% binomial interval) and the
    floor-level conditions marked with a dagger, from `load.load_ood`'s columns."""
    base = df[df.method == "none"]
    ref = base[base.family == "clean"].iloc[0] if (base.family == "clean").any() else base.iloc[0]
    chance = (rf"Chance level (always answering the most frequent label) is {ref.chance:.1f}\% on these "
              rf"{len(ref.correct)} images, 95\% binomial interval [{ref.chance_lo:.1f}, {ref.chance_hi:.1f}]\%.")
    floor = sorted(base.condition[base.floor], key=list(base.condition).index)
    tail = (r" $^\dagger$: the unreduced model is at chance level under " + ", ".join(map(_condition_label, floor))
            + "; these are not averaged, not starred and not counted in the correction." if floor
            else " The unreduced model is above chance level under every condition.")
    return r"\gdef\oodfloornote{" + chance + tail + "}"


def ood_paired_table(df: pd.DataFrame, pairs: dict[str, str], csv_path: str, tex_path: str) -> pd.DataFrame:
    """Under every OOD condition, each run of `pairs` (run -> partner, one partner for the whole table:
    ours -> ToMe, or every ablation variant -> ours) against its partner on the same images: Δ top-1 (pp,
    run - partner), McNemar's test (`tokred.study.metrics.mcnemar`) and the Holm-adjusted p over all cells
    of the table that are not floor-level (`df.floor`: the unreduced model at chance level; never starred).
    `df`: `load.load_ood`. The .tex rows are conditions (clean first, then by family and severity), the
    columns the unreduced model's and the partner's Top-1 and, per run, "Top-1 (Δ)"; the CSV adds both runs'
    tail Δ against the unreduced model (`tokred.study.metrics.tail_drop`). The .tex file defines
    \\holmnote and \\oodfloornote. Raises ValueError when the runs have different partners."""
    import torch

    from ..study.metrics import mcnemar

    partners = set(pairs.values())
    if len(partners) > 1:
        raise ValueError(f"ood_paired_table: one partner per table, got {sorted(partners)}")
    rows = []
    for cond, g in df.groupby("condition", sort=False):
        by = g.set_index("run")
        base = g[g.method == "none"]
        for run, partner in pairs.items():
            if run not in by.index or partner not in by.index:
                continue
            a, b = by.loc[partner, "correct"], by.loc[run, "correct"]
            test = mcnemar(torch.from_numpy(a > 0.5), torch.from_numpy(b > 0.5))
            rows.append({"condition": cond, "family": by.loc[run, "family"], "severity": by.loc[run, "severity"],
                         "run": run, "partner": partner, "base_top1": base.top1.iloc[0] if len(base) else float("nan"),
                         "top1_partner": by.loc[partner, "top1"], "top1": by.loc[run, "top1"],
                         "delta": by.loc[run, "top1"] - by.loc[partner, "top1"], "n01": test["n01"],
                         "n10": test["n10"], "p": test["p_value"], "floor": bool(by.loc[run, "floor"]),
                         "chance": by.loc[run, "chance"], "n_images": len(a),
                         "tail_drop": by.loc[run, "tail_drop_pp"], "tail_drop_partner": by.loc[partner, "tail_drop_pp"]})
    t = pd.DataFrame(rows, columns=["condition", "family", "severity", "run", "partner", "base_top1", "top1_partner",
                                    "top1", "delta", "n01", "n10", "p", "floor", "chance", "n_images", "tail_drop",
                                    "tail_drop_partner"])
    t["p_holm"] = holm(t["p"].where(~t["floor"].astype(bool)))
    fam_order = {f: i for i, f in enumerate(dict.fromkeys(["clean", *t.family]))}
    t = t.sort_values(["family", "severity"], key=lambda c: c.map(fam_order) if c.name == "family" else c,
                      kind="stable")
    with io.atomic_path(csv_path) as tmp:
        t.to_csv(tmp, index=False, float_format="%.6g")
    runs = list(dict.fromkeys(t.run))
    partner = next(iter(partners), "")
    body = []
    for cond, g in t.groupby("condition", sort=False):
        by = g.set_index("run")
        first = g.iloc[0]
        cells = [f"{by.loc[r, 'top1']:.1f} ({by.loc[r, 'delta']:+.1f}{_star(by.loc[r, 'p_holm'])})" if r in by.index
                 else "--" for r in runs]
        dagger = r"$^\dagger$" if first.floor else ""
        body.append(" & ".join([_condition_label(cond) + dagger, f"{first.base_top1:.1f}", f"{first.top1_partner:.1f}",
                                *cells]) + r" \\")
    header = " & ".join(["Condition", "Base", tex_escape(partner), *(tex_escape(r) + r" ($\Delta$)" for r in runs)])
    _write_table(tex_path, "l" + "r" * (2 + len(runs)), header, body,
                 tail=(holm_note(t["p"].where(~t["floor"].astype(bool))), ood_floor_note(df)))
    return t
