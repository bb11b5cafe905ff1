"""Tables (CSV + LaTeX) from the metrics frames: ToMe reproduction, early layers, full-layer schedules,
ablations and the reproducibility appendix (OOD: `ood_tables`). A star marks a comparison (McNemar)
significant at 5% after Holm's correction over all starred cells of its table (`holm`, docs/method.md
§4); each .tex file defines \\holmnote, the sentence saying so with the number of tests, for its caption.
"""
from __future__ import annotations

import pandas as pd

from .. import io
from .load import COLUMNS, DETAIL


def method_name(m: str) -> str:
    return {"tome": "ToMe", "none": "baseline"}.get(m, m)


ALPHA = 0.05  # family-wise error rate of the stars of one table


def holm(p_values) -> "pd.Series":
    """Holm-adjusted p-values (statsmodels.stats.multitest.multipletests, method "holm") over the finite
    entries of `p_values` (one table's starred cells: the family); NaN entries (no test) stay NaN and do
    not count. Returns a float Series aligned with the input's index (a RangeIndex for a list)."""
    import numpy as np
    from statsmodels.stats.multitest import multipletests

    p = pd.Series(p_values, dtype=float)
    out = pd.Series(np.nan, index=p.index)
    ok = p.notna()
    if ok.any():
        out[ok] = multipletests(p[ok].to_numpy(), alpha=ALPHA, method="holm")[1]
    return out


def holm_note(p_values) -> str:
    """\\gdef\\holmnote{...}: the caption sentence for a table whose stars come from `holm(p_values)`."""
    m = int(pd.Series(p_values, dtype=float).notna().sum())
    text = (rf"A star marks $p<{ALPHA:g}$ (McNemar) after Holm's correction over the {m} tests of this table."
            if m else "No paired test in this table.")
    return r"\gdef\holmnote{" + text + "}"


def _kl(v: float, sign: bool = False) -> str:
    """KL in nats: 4 decimals, or 2 significant digits below 1e-3 (early reductions give ~1e-5)."""
    return f"{v:{'+' if sign else ''}.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:{'+' if sign else ''}.1e}"


def _star(p_holm: float) -> str:
    """The star of a cell, from its Holm-adjusted p-value (`holm`)."""
    return r"$^{*}$" if p_holm == p_holm and p_holm < ALPHA else ""


def _tail(row) -> str:
    """Tail Δ (pp) with its 95% interval, from `load.load_metrics` columns."""
    return f"{row['tail_drop_pp']:.1f} [{row['tail_lo']:.1f}, {row['tail_hi']:.1f}]"


def _write_table(tex_path: str, colspec: str, header: str, body: list[str], tail: tuple[str, ...] = ()) -> None:
    io.write_text(tex_path, "\n".join([rf"\begin{{tabular}}{{{colspec}}}", r"\toprule", header + r" \\", r"\midrule",
                                        *body, r"\bottomrule", r"\end{tabular}", *tail, ""]))


def _ci(row) -> str:
    return f"{row['top1']:.2f} [{row['top1_lo']:.2f}, {row['top1_hi']:.2f}]"


def early_table(df: pd.DataFrame, csv_path: str, tex_path: str) -> pd.DataFrame:
    """The early-layer table: per layer set and r, ToMe vs ours (Top-1, KL, Δmargin), McNemar. A layer set and r
    where only ToMe ran (the default measures ToMe alone in L1, L2) is a row with an empty method and ours'
    columns NaN ("--" in the LaTeX table): ToMe's effect there still counts for `findings.early_settled`."""
    e = df[df.group == "early"]
    tome = e[e.method == "tome"].set_index(["layers", "r"])
    ours = e[e.method != "tome"]
    rows = []

    def tome_cols(t) -> dict:
        return {"gflops_tome": t["gflops"], "top1_tome": t["top1"], "top1_tome_lo": t["top1_lo"],
                "top1_tome_hi": t["top1_hi"], "kl_tome": t["kl"], "dmargin_tome": t["delta_margin"],
                "drop_tome": t["drop_pp"], "tail_tome": t["tail_drop_pp"]}

    for _, o in ours.iterrows():
        rows.append({"layers": o["layers"], "r": int(o["r"]), "method": o["method"], **tome_cols(tome.loc[(o["layers"], o["r"])]),
                     "gflops_ours": o["gflops"], "top1_ours": o["top1"], "top1_ours_lo": o["top1_lo"],
                     "top1_ours_hi": o["top1_hi"], "delta": o["delta_vs_tome"], "delta_lo": o["delta_lo_vs_tome"],
                     "delta_hi": o["delta_hi_vs_tome"], "p_vs_tome": o["p_vs_tome"], "kl_ours": o["kl"],
                     "dmargin_ours": o["delta_margin"], "drop_ours": o["drop_pp"], "tail_ours": o["tail_drop_pp"]})
    paired = set(zip(ours["layers"], ours["r"]))
    rows += [{"layers": layers, "r": int(r), "method": None, **tome_cols(t)}
             for (layers, r), t in tome.iterrows() if (layers, r) not in paired]
    t = pd.DataFrame(rows)
    order = {k: i for i, k in enumerate(dict.fromkeys(e["layers"]))}
    t = t.sort_values(["layers", "r"], key=lambda c: c.map(order) if c.name == "layers" else c)
    t["p_holm"] = holm(t["p_vs_tome"]) if "p_vs_tome" in t else []
    with io.atomic_path(csv_path) as tmp:
        t.to_csv(tmp, index=False, float_format="%.6g")
    body = [f"{r.layers} & {r.r} & {tex_escape(r.method)} & {r.top1_tome:.2f} [{r.top1_tome_lo:.1f}, {r.top1_tome_hi:.1f}] & "
            f"{r.top1_ours:.2f} [{r.top1_ours_lo:.1f}, {r.top1_ours_hi:.1f}] & {r.delta:+.2f}{_star(r.p_holm)} & "
            f"{_kl(r.kl_tome)} & {_kl(r.kl_ours)} & {r.dmargin_tome:+z.3f} & {r.dmargin_ours:+z.3f} \\\\"
            if isinstance(r.method, str) else
            f"{r.layers} & {r.r} & ToMe only & {r.top1_tome:.2f} [{r.top1_tome_lo:.1f}, {r.top1_tome_hi:.1f}] & -- & -- & "
            f"{_kl(r.kl_tome)} & -- & {r.dmargin_tome:+z.3f} & -- \\\\"
            for r in t.itertuples()]
    _write_table(tex_path, "lrlccrrrrr", r"Layers & $r$ & Method & ToMe Top-1 & Top-1 & $\Delta$ (pp) & KL ToMe & KL & "
                 r"$\Delta$m ToMe & $\Delta$m", body, tail=(holm_note(t.get("p_vs_tome", [])),))
    return t


def full_table(df: pd.DataFrame, csv_path: str, tex_path: str) -> pd.DataFrame:
    """Full-layer schedules at ToMe's GFLOPs: ToMe r = target vs ours under each keep shape."""
    f = df[df.group == "full"]
    tome_runs = set(f["tome_run"].dropna())
    t = pd.concat([df[df.run.isin(tome_runs)], f])
    t["p_holm"] = holm(t["p_vs_tome"].where(t["delta_vs_tome"].notna()))
    with io.atomic_path(csv_path) as tmp:
        t.drop(columns=DETAIL).to_csv(tmp, index=False, float_format="%.6g")
    body = []
    for _, r in t.iterrows():
        label = schedule_label(r)
        delta = "--" if pd.isna(r["delta_vs_tome"]) else f"{r['delta_vs_tome']:+.2f}{_star(r['p_holm'])}"
        body.append(f"{label} & {r['gflops']:.3f} & {r['rel_cost']:.3f} & {_ci(r)} & {r['drop_pp']:.2f} & {_tail(r)} & "
                    f"{delta} & {r['kl']:.4f} & {r['delta_margin']:+.3f} \\\\")
    _write_table(tex_path, "lrrcrcrrr", r"Schedule & GFLOPs & RelCost & Top-1 [95\% CI] & Drop & Tail $\Delta$ [95\% CI] & "
                 r"$\Delta$ vs ToMe & KL & $\Delta$margin", body, tail=(holm_note(t["p_holm"]),))
    return t


def schedule_label(r) -> str:
    """Row label of a full-layer run: its method and schedule (a keep shape, or constant r)."""
    sched = tex_escape(r["keep_shape"]) if isinstance(r["keep_shape"], str) else f"$r={int(r['r'])}$"
    return f"ToMe {sched}" if r["method"] == "tome" else f"{tex_escape(r['method'])} ({sched})"


def _pct(fraction: float) -> str:
    """A fraction as percent, one decimal; rare events (< 0.1%) with two significant digits, not as 0.0."""
    v = 100 * fraction
    return f"{v:.2g}" if 0 < v < 0.1 else f"{v:.1f}"


def _change(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "reference"


def ablation_table(df: pd.DataFrame, csv_path: str, tex_path: str, group: str = "ablations") -> pd.DataFrame:
    """Ablations of a method: each variant's knob change, GFLOPs, Top-1 with interval, Δ top-1 against the
    group's reference run (`<method>_ref`; columns of `load.add_comparison(..., "ref")`) with McNemar's
    p (star: Holm-adjusted p < 0.05 over the table's variants, column p_holm_vs_ref), the % of images
    whose prediction changed, and how often the L2 clip fired (% of merged tokens); KL, Δmargin and tail Δ
    are in the CSV. The .tex file ends with \\gdef\\ablationcomponents{...}: one sentence per ablated
    component saying whether it acts (`component_sentences`), for the caption or the text after it
    (\\ablationearlycomponents for `group` ablations_early, the same ablations at a layer set)."""
    a = df[df.group == group].copy()
    a.insert(a.columns.get_loc("method") + 1, "change", a["overrides"].map(_change))
    a["p_holm_vs_ref"] = holm(a["p_vs_ref"])
    with io.atomic_path(csv_path) as tmp:
        a.drop(columns=DETAIL).to_csv(tmp, index=False, float_format="%.6g")
    body = []
    for _, r in a.iterrows():
        ref = pd.isna(r["ref_run"])
        delta = "--" if ref else f"{r['delta_vs_ref']:+.2f}{_star(r['p_holm_vs_ref'])}"
        p = "--" if ref else f"${_p_tex(r['p_vs_ref'])}$"
        changed = "--" if ref else f"{r['changed_vs_ref']:.1f}"
        clip = "--" if pd.isna(r["clip_fired"]) else _pct(r["clip_fired"])
        ci = f"{r['top1']:.2f} [{r['top1_lo']:.1f}, {r['top1_hi']:.1f}]"
        body.append(f"{tex_escape(r['run'])} & {tex_escape(r['change'])} & {r['gflops']:.3f} & {ci} & {delta} & "
                    f"{p} & {changed} & {clip} \\\\")
    _write_table(tex_path, "llrcrrrr", r"Variant & Change & GFLOPs & Top-1 [95\% CI] & $\Delta$ vs ref & $p$ & "
                 r"Changed (\%) & Clip (\%)", body,
                 tail=(rf"\gdef\{_components_macro(group)}{{" + " ".join(component_sentences(a)) + "}",
                       holm_note(a["p_vs_ref"])))
    return a


def _components_macro(group: str) -> str:
    return "ablation" + group.removeprefix("ablations").replace("_", "") + "components"


# Readable names of the knobs an ablation variant changes (docs/method.md §3).
COMPONENTS = {("temperature",): "Temperature $n$", ("clip_tau",): r"L2 clip $\tau$", ("sizes",): "Sizes",
              ("size_mode",): "Merge weights", ("space",): "Merge space", ("push",): "Push-lite",
              ("eta",): r"Damping $\eta$", ("q",): "Hub quota $q$", ("match",): "Match feature",
              ("topr",): "Top-$r$", ("recenter",): "Re-centring", ("clip_tau", "recenter"): "Re-centring and clip"}


def _p_tex(p: float) -> str:
    """A p-value for LaTeX math mode: 0.012, or 5.4\\times10^{-124} below 0.001."""
    if p >= 1e-3 or p == 0:
        return f"{p:.2g}"
    mant, exp = f"{p:.1e}".split("e")
    return rf"{mant}\times10^{{{int(exp)}}}"


def _verdict(rows: list) -> str:
    """Whether a component acts, from its variants' comparisons with the reference."""
    if max(r["logit_diff_vs_ref"] for r in rows) == 0:
        return "every logit equals the reference's: it does not act here"
    changed = max(r["changed_vs_ref"] for r in rows)
    if changed == 0:
        return "logits change, no prediction does"
    p = min(r["p_vs_ref"] for r in rows)
    p_holm = min(r.get("p_holm_vs_ref", p) for r in rows)
    sig = r", significant at 5\% after Holm's correction" if p_holm < ALPHA else ""
    return (f"up to {changed:.1f}\\% of the predictions change, top-1 by at most "
            f"{max(abs(r['delta_vs_ref']) for r in rows):.2f}\\,pp (smallest McNemar $p={_p_tex(p)}${sig})")


def component_sentences(a: pd.DataFrame) -> list[str]:
    """One LaTeX sentence per ablated component (variants grouped by the knobs they change) saying whether
    it acts, from the frame `ablation_table` builds: identical logits to the reference (does not act), or
    the largest share of changed predictions, the largest |Δ top-1| and the smallest McNemar p; for the L2
    clip also how often it fired, for the merge space the GFLOPs. [] without a reference run."""
    refs = a[a["ref_run"].isna()]
    if refs.empty:
        return []
    ref = refs.iloc[0]
    groups: dict[tuple, list] = {}
    for _, r in a[a["ref_run"].notna()].iterrows():
        groups.setdefault(tuple(sorted(r["overrides"])), []).append(r)
    out = []
    for keys, rows in groups.items():
        name = COMPONENTS.get(keys, ", ".join(tex_escape(k) for k in keys))
        values = "; ".join(tex_escape(_change(r["overrides"])) for r in rows)
        extra = ""
        tau = (ref["method_config"] or {}).get("clip_tau")
        if keys == ("clip_tau",) and tau is not None and not pd.isna(ref["clip_fired"]):
            fired = ", ".join(f"{_pct(r['clip_fired'])}\\% at $\\tau={r['overrides']['clip_tau']:g}$" for r in rows
                              if not pd.isna(r["clip_fired"]))
            extra = (f"; the clip shortened {_pct(ref['clip_fired'])}\\% of the merged tokens at the reference's "
                     f"$\\tau={tau:g}$" + (f", {fired}" if fired else ""))
        elif keys == ("space",):
            extra = ("; GFLOPs " + ", ".join(f"{r['gflops']:.3f} ({tex_escape(r['overrides']['space'])})" for r in rows)
                     + f" against {ref['gflops']:.3f} for the reference")
        out.append(f"{name} ({values}): {_verdict(rows)}{extra}.")
    return out


def tex_escape(s: str) -> str:
    return str(s).replace("_", r"\_")


def reproduce_table(df: pd.DataFrame, csv_path: str, tex_path: str) -> pd.DataFrame:
    """Baseline + ToMe r-sweep: GFLOPs, Top-1 with 95% interval, paired drop, KL, Δmargin."""
    t = df.sort_values(["group", "gflops"], ascending=[True, False]).copy()
    t = pd.concat([t[t.group == "baseline"], t[t.group != "baseline"]])
    t["p_holm"] = holm(t["mcnemar_p"].where(t["group"] != "baseline"))
    with io.atomic_path(csv_path) as tmp:
        t[COLUMNS + ["p_holm"]].to_csv(tmp, index=False, float_format="%.6g")
    lines = [
        r"\begin{tabular}{lrrrcrcrrr}",
        r"\toprule",
        r"Method & $r$ & GFLOPs & RelCost & Top-1 (\%) [95\% CI] & Drop (pp) & Tail $\Delta$ (pp) [95\% CI] & KL & "
        r"$\Delta$margin & Agree (\%) \\",
        r"\midrule",
    ]
    for _, row in t.iterrows():
        r = "--" if pd.isna(row["r"]) else f"{int(row['r'])}"
        drop = "--" if row["group"] == "baseline" else f"{row['drop_pp']:.2f} $\\pm$ {row['drop_se_pp']:.2f}{_star(row['p_holm'])}"
        tail = "--" if row["group"] == "baseline" else _tail(row)
        lines.append(
            f"{method_name(row['method'])} & {r} & {row['gflops']:.3f} & {row['rel_cost']:.3f} & "
            f"{row['top1']:.2f} [{row['top1_lo']:.2f}, {row['top1_hi']:.2f}] & {drop} & {tail} & "
            f"{row['kl']:.4f} & {row['delta_margin']:+.3f} & {row['agreement']:.2f} \\\\")
        if row["group"] == "baseline":
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", holm_note(t["p_holm"]), ""]
    io.write_text(tex_path, "\n".join(lines))
    return t


def runs_table(df: pd.DataFrame, tex_path: str) -> None:
    """Reproducibility appendix: every run with its config hash, versions and hardware (longtable)."""
    lines = [r"\begin{longtable}{llrlll}", r"\toprule",
             r"Run & Group & GFLOPs & Config hash & torch / timm & Device (threads) \\", r"\midrule", r"\endhead"]
    for _, r in df.sort_values(["group", "run"]).iterrows():
        p = r["provenance"]
        lines.append(f"{tex_escape(r['run'])} & {tex_escape(r['group'])} & {r['gflops']:.3f} & \\texttt{{{p['config_hash']}}} & "
                     f"{p['torch']} / {p['timm']} & {tex_escape(p['device_name'])} ({p['num_threads']}) \\\\")
    lines += [r"\bottomrule", r"\end{longtable}", ""]
    io.write_text(tex_path, "\n".join(lines))
