"""Tables, figures and LaTeX macros from the per-run metrics JSON files.

Every number the paper prints comes from here: tables are generated whole, and the text reads
values through `\\metric{<run>}{<key>}` macros, so no number is typed by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import io

COLUMNS = ["run", "group", "method", "layers", "r", "gflops", "rel_cost", "top1", "top1_lo", "top1_hi", "drop_pp",
           "drop_se_pp", "kl", "delta_margin", "agreement", "mcnemar_p", "n_images"]


def load_metrics(paths) -> pd.DataFrame:
    rows = []
    for p in paths:
        m = json.loads(Path(p).read_text())
        rows.append({
            "run": m["run"], "group": m["group"], "method": m["method"],
            "r": m["schedule"].get("r"), "layers": m["schedule"].get("layers"),
            "profile": m["schedule"].get("profile"), "overrides": m.get("overrides") or {},
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

    from .metrics import correct, mcnemar

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


def _star(p: float) -> str:
    return r"$^{*}$" if p == p and p < 0.05 else ""


def _write_table(tex_path: str, colspec: str, header: str, body: list[str]) -> None:
    io.write_text(tex_path, "\n".join([rf"\begin{{tabular}}{{{colspec}}}", r"\toprule", header + r" \\", r"\midrule",
                                        *body, r"\bottomrule", r"\end{tabular}", ""]))


def _ci(row) -> str:
    return f"{row['top1']:.2f} [{row['top1_lo']:.2f}, {row['top1_hi']:.2f}]"


def early_table(df: pd.DataFrame, csv_path: str, tex_path: str) -> pd.DataFrame:
    """The seed's headline table: per layer set and r, ToMe vs ours (Top-1, KL, Δmargin), McNemar."""
    e = df[df.group == "early"]
    tome = e[e.method == "tome"].set_index(["layers", "r"])
    ours = e[e.method != "tome"]
    rows = []
    for _, o in ours.iterrows():
        t = tome.loc[(o["layers"], o["r"])]
        rows.append({"layers": o["layers"], "r": int(o["r"]), "method": o["method"], "gflops_tome": t["gflops"],
                     "gflops_ours": o["gflops"], "top1_tome": t["top1"], "top1_tome_lo": t["top1_lo"],
                     "top1_tome_hi": t["top1_hi"], "top1_ours": o["top1"], "top1_ours_lo": o["top1_lo"],
                     "top1_ours_hi": o["top1_hi"], "delta": o["delta_vs_tome"], "p_vs_tome": o["p_vs_tome"],
                     "kl_tome": t["kl"], "kl_ours": o["kl"], "dmargin_tome": t["delta_margin"],
                     "dmargin_ours": o["delta_margin"], "drop_tome": t["drop_pp"], "drop_ours": o["drop_pp"]})
    t = pd.DataFrame(rows)
    order = {k: i for i, k in enumerate(dict.fromkeys(e["layers"]))}
    t = t.sort_values(["layers", "r"], key=lambda c: c.map(order) if c.name == "layers" else c)
    with io.atomic_path(csv_path) as tmp:
        t.to_csv(tmp, index=False, float_format="%.6g")
    body = [f"{r.layers} & {r.r} & {r.top1_tome:.2f} [{r.top1_tome_lo:.1f}, {r.top1_tome_hi:.1f}] & "
            f"{r.top1_ours:.2f} [{r.top1_ours_lo:.1f}, {r.top1_ours_hi:.1f}] & {r.delta:+.2f}{_star(r.p_vs_tome)} & "
            f"{r.kl_tome:.4f} & {r.kl_ours:.4f} & {r.dmargin_tome:+.3f} & {r.dmargin_ours:+.3f} \\\\"
            for r in t.itertuples()]
    _write_table(tex_path, "lrccrrrrr", r"Layers & $r$ & ToMe Top-1 & Ours Top-1 & $\Delta$ (pp) & KL ToMe & KL ours & "
                 r"$\Delta$m ToMe & $\Delta$m ours", body)
    return t


def full_table(df: pd.DataFrame, csv_path: str, tex_path: str) -> pd.DataFrame:
    """Full-layer schedules at ToMe's GFLOPs: ToMe r = target vs ours profiles."""
    f = df[df.group == "full"]
    tome_runs = set(f["tome_run"].dropna())
    t = pd.concat([df[df.run.isin(tome_runs)], f])
    with io.atomic_path(csv_path) as tmp:
        t.drop(columns=DETAIL).to_csv(tmp, index=False, float_format="%.6g")
    body = []
    for _, r in t.iterrows():
        label = f"ToMe $r={int(r['r'])}$" if r["method"] == "tome" else f"{_tex_escape(r['method'])} ({r['profile']})"
        delta = "--" if r["method"] == "tome" else f"{r['delta_vs_tome']:+.2f}{_star(r['p_vs_tome'])}"
        body.append(f"{label} & {r['gflops']:.3f} & {r['rel_cost']:.3f} & {_ci(r)} & {r['drop_pp']:.2f} & {delta} & "
                    f"{r['kl']:.4f} & {r['delta_margin']:+.3f} \\\\")
    _write_table(tex_path, "lrrcrrrr", r"Schedule & GFLOPs & RelCost & Top-1 [95\% CI] & Drop & $\Delta$ vs ToMe & KL & "
                 r"$\Delta$margin", body)
    return t


def ablation_table(df: pd.DataFrame, csv_path: str, tex_path: str) -> pd.DataFrame:
    """Ablations of ours: each variant's knob change, Top-1 with interval, Δ vs ToMe at equal r."""
    a = df[df.group == "ablations"]
    with io.atomic_path(csv_path) as tmp:
        a.drop(columns=DETAIL).to_csv(tmp, index=False, float_format="%.6g")
    body = []
    for _, r in a.iterrows():
        change = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "reference"
        body.append(f"{_tex_escape(r['run'])} & {_tex_escape(change)} & {r['gflops']:.3f} & {_ci(r)} & "
                    f"{r['delta_vs_tome']:+.2f}{_star(r['p_vs_tome'])} & {r['kl']:.4f} & {r['delta_margin']:+.3f} \\\\")
    _write_table(tex_path, "llrcrrr", r"Variant & Change & GFLOPs & Top-1 [95\% CI] & $\Delta$ vs ToMe & KL & "
                 r"$\Delta$margin", body)
    return a


def _tex_escape(s: str) -> str:
    return str(s).replace("_", r"\_")


def reproduce_table(df: pd.DataFrame, csv_path: str, tex_path: str) -> pd.DataFrame:
    """Baseline + ToMe r-sweep: GFLOPs, Top-1 with 95% interval, paired drop, KL, Δmargin."""
    t = df.sort_values(["group", "gflops"], ascending=[True, False]).copy()
    t = pd.concat([t[t.group == "baseline"], t[t.group != "baseline"]])
    with io.atomic_path(csv_path) as tmp:
        t[COLUMNS].to_csv(tmp, index=False, float_format="%.6g")
    lines = [
        r"\begin{tabular}{lrrrcrrrr}",
        r"\toprule",
        r"Method & $r$ & GFLOPs & RelCost & Top-1 (\%) [95\% CI] & Drop (pp) & KL & $\Delta$margin & Agree (\%) \\",
        r"\midrule",
    ]
    for _, row in t.iterrows():
        r = "--" if pd.isna(row["r"]) else f"{int(row['r'])}"
        sig = r"$^{*}$" if row["group"] != "baseline" and row["mcnemar_p"] < 0.05 else ""
        drop = "--" if row["group"] == "baseline" else f"{row['drop_pp']:.2f} $\\pm$ {row['drop_se_pp']:.2f}{sig}"
        lines.append(
            f"{_method_name(row['method'])} & {r} & {row['gflops']:.3f} & {row['rel_cost']:.3f} & "
            f"{row['top1']:.2f} [{row['top1_lo']:.2f}, {row['top1_hi']:.2f}] & {drop} & "
            f"{row['kl']:.4f} & {row['delta_margin']:+.3f} & {row['agreement']:.2f} \\\\")
        if row["group"] == "baseline":
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    io.write_text(tex_path, "\n".join(lines))
    return t


def _figure_setup():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _save(fig, pdf_path: str, png_path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    for path in (pdf_path, png_path):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=200)
    plt.close(fig)


def _method_name(m: str) -> str:
    return {"tome": "ToMe", "none": "baseline"}.get(m, m)


def top1_vs_gflops_figure(df: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """The ToMe r-sweep: Top-1 (95% interval) against GFLOPs, baseline marked."""
    plt, _ = _figure_setup()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    runs = df[df.group != "baseline"].sort_values("gflops")
    base = df[df.group == "baseline"].iloc[0]
    for method, g in runs.groupby("method"):
        ax.errorbar(g.gflops, g.top1, yerr=[g.top1 - g.top1_lo, g.top1_hi - g.top1], marker="o", ms=4,
                    capsize=2, lw=1.2, label=_method_name(method))
        for _, row in g.iterrows():
            ax.annotate(f"r={int(row['r'])}", (row.gflops, row.top1), textcoords="offset points", xytext=(3, 4),
                        fontsize=6)
    ax.errorbar([base.gflops], [base.top1], yerr=[[base.top1 - base.top1_lo], [base.top1_hi - base.top1]],
                marker="*", ms=9, color="black", capsize=2, ls="none", label="baseline (unpatched)")
    ax.set_xlabel("GFLOPs per image (fvcore)")
    ax.set_ylabel("Top-1 (%)")
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, pdf_path, png_path)


def pareto_figure(df: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """Top-1 vs GFLOPs of every run, coloured by method, marked by experiment group."""
    plt, sns = _figure_setup()
    d = df.assign(Method=df.method.map(_method_name), Group=df.group)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    sns.scatterplot(data=d, x="gflops", y="top1", hue="Method", style="Group", s=28, ax=ax)
    # Pareto front over all runs
    front, best = [], -1.0
    for _, r in d.sort_values("gflops").iterrows():
        if r.top1 > best:
            front.append((r.gflops, r.top1))
            best = r.top1
    ax.plot(*zip(*front), color="grey", lw=0.8, ls="--", label="Pareto front")
    ax.set_xlabel("GFLOPs per image")
    ax.set_ylabel("Top-1 (%)")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    _save(fig, pdf_path, png_path)


def early_drop_figure(t: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """Per layer set and r: drop of ToMe and of ours (bars), from the early table."""
    plt, sns = _figure_setup()
    long = pd.concat([t.assign(Method="ToMe", drop=t.drop_tome), t.assign(Method=t.method, drop=t.drop_ours)])
    g = sns.catplot(data=long, x="layers", y="drop", hue="Method", col="r", kind="bar", height=2.2, aspect=0.8,
                    legend_out=False)
    g.set_axis_labels("layer set", "drop (pp)")
    g.figure.set_size_inches(7.0, 2.4)
    _save(g.figure, pdf_path, png_path)


def rsweep_figure(df: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """Drop vs r: early layer sets (ToMe and ours) and ToMe in all layers."""
    plt, sns = _figure_setup()
    e = df[df.group == "early"].assign(Method=lambda d: d.method.map(_method_name), Layers=lambda d: d.layers)
    rep = df[(df.group == "reproduce")].assign(Method="ToMe", Layers="all")
    d = pd.concat([e, rep])
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    sns.lineplot(data=d, x="r", y="drop_pp", hue="Layers", style="Method", markers=True, ax=ax)
    ax.set_xlabel("$r$ (tokens removed per reducing block)")
    ax.set_ylabel("drop vs baseline (pp)")
    ax.legend(fontsize=6, ncol=2)
    _save(fig, pdf_path, png_path)


def ablation_figure(a: pd.DataFrame, tome_top1: float, pdf_path: str, png_path: str) -> None:
    plt, sns = _figure_setup()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    a = a.reset_index(drop=True)
    ax.bar(range(len(a)), a.top1, yerr=[a.top1 - a.top1_lo, a.top1_hi - a.top1], capsize=2, color="tab:blue")
    ax.axhline(tome_top1, color="tab:red", ls="--", lw=1, label="ToMe, same $r$")
    ax.set_xticks(range(len(a)), a.run, rotation=60, ha="right", fontsize=6)
    lo = min(a.top1_lo.min(), tome_top1) - 1
    ax.set_ylim(lo, max(a.top1_hi.max(), tome_top1) + 0.5)
    ax.set_ylabel("Top-1 (%)")
    ax.legend(fontsize=7)
    _save(fig, pdf_path, png_path)


# --- OOD robustness ----------------------------------------------------------------------------

def load_ood(paths) -> pd.DataFrame:
    """One row per (condition, run) with per-image correctness (from the run's logits and labels)."""
    import torch

    from .metrics import correct

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
    Per-image correctness is averaged over severities first (same images in every severity)."""
    import numpy as np

    rows = []
    for (family, run), g in df.groupby(["family", "run"], sort=False):
        acc = np.stack(list(g.sort_values("severity")["correct"])).mean(0) * 100
        base = df[(df.family == family) & (df.method == "none")].sort_values("severity")
        diff = np.stack(list(base["correct"])).mean(0) * 100 - acc
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        lo, hi = _mean_ci(acc, n_boot, seed)
        rows.append({"family": family, "run": run, "method": g.method.iloc[0], "severities": len(g),
                     "gflops": g.gflops.iloc[0], "top1": float(acc.mean()), "top1_lo": lo, "top1_hi": hi,
                     "drop_pp": float(diff.mean()), "drop_lo": float(diff.mean()) - 1.96 * se,
                     "drop_hi": float(diff.mean()) + 1.96 * se, "n_images": len(acc)})
    t = pd.DataFrame(rows)
    with io.atomic_path(csv_path) as tmp:
        t.to_csv(tmp, index=False, float_format="%.6g")
    body = []
    for fam, g in t.groupby("family", sort=False):
        for i, r in enumerate(g.itertuples()):
            name = _tex_escape(fam.replace("_", " ")) if i == 0 else ""
            drop = "--" if r.method == "none" else f"{r.drop_pp:+.2f} [{r.drop_lo:+.2f}, {r.drop_hi:+.2f}]"
            body.append(f"{name} & {_tex_escape(_method_name(r.method) if r.method != 'tome' else r.run)} & "
                        f"{r.gflops:.3f} & {r.top1:.2f} [{r.top1_lo:.1f}, {r.top1_hi:.1f}] & {drop} \\\\")
    _write_table(tex_path, "llrcc", r"Condition & Run & GFLOPs & Top-1 [95\% CI] & Drop vs base (pp) [95\% CI]", body)
    return t


def ood_severity_figure(df: pd.DataFrame, family: str, pdf_path: str, png_path: str) -> None:
    """Top-1 against severity (0 = clean) for one corruption, one line per run, 95% intervals."""
    plt, _ = _figure_setup()
    d = pd.concat([df[df.family == "clean"], df[df.family == family]])
    fig, ax = plt.subplots(figsize=(3.6, 2.7))
    for run, g in d.groupby("run", sort=False):
        g = g.sort_values("severity")
        ax.errorbar(g.severity, g.top1, yerr=[g.top1 - g.top1_lo, g.top1_hi - g.top1], marker="o", ms=3, capsize=2,
                    lw=1.1, label="baseline" if g.method.iloc[0] == "none" else run)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("Top-1 (%)")
    ax.set_title(family.replace("_", " "), fontsize=8)
    ax.legend(fontsize=6)
    _save(fig, pdf_path, png_path)


# --- system studies ------------------------------------------------------------------------------

def _hw_caption(hw: dict) -> str:
    dev = hw.get("cuda_name") or hw.get("cpu_model", "?")
    return f"{dev}, torch {hw.get('torch', '?')}, {hw.get('torch_threads', '?')} threads"


def latency_figure(df: pd.DataFrame, hw: dict, pdf_path: str, png_path: str) -> None:
    """Images/s against batch size per variant (and precision), median with p10-p90 band."""
    plt, _ = _figure_setup()
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    for (variant, amp), g in df[df.status == "ok"].groupby(["variant", "amp"], sort=False):
        g = g.sort_values("batch_size")
        line, = ax.plot(g.batch_size, g.img_per_s, marker="o", ms=3, lw=1.1,
                        label=f"{variant}{' AMP' if amp else ''}")
        ax.fill_between(g.batch_size, g.img_per_s_lo, g.img_per_s_hi, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_title(_hw_caption(hw), fontsize=7)
    ax.legend(fontsize=5.5)
    _save(fig, pdf_path, png_path)


def gflops_latency_figure(df: pd.DataFrame, summary: dict, pdf_path: str, png_path: str) -> None:
    plt, sns = _figure_setup()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    sns.scatterplot(data=df.assign(Method=df.method.map(_method_name)), x="gflops", y="latency_ms", hue="Method",
                    style="group", s=22, ax=ax)
    c = summary["latency"]
    ax.set_title(f"Pearson {c['pearson']:.2f}, Spearman {c['spearman']:.2f} (n={c['n']}); "
                 + _hw_caption(summary["hardware"]), fontsize=6)
    ax.set_xlabel("GFLOPs per image")
    ax.set_ylabel(f"latency per batch of {summary['batch_size']} (ms)")
    ax.legend(fontsize=5, ncol=2)
    _save(fig, pdf_path, png_path)


def token_sweep_figure(df: pd.DataFrame, hw: dict, pdf_path: str, png_path: str) -> None:
    """Latency against token count for one block and the whole model; tile boundaries 64/128 marked."""
    plt, _ = _figure_setup()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.6))
    for ax, (scope, g) in zip(axes, df.groupby("scope", sort=False)):
        g = g.sort_values("n_tokens")
        ax.plot(g.n_tokens, g.latency_ms, lw=1.0, marker=".", ms=2)
        ax.fill_between(g.n_tokens, g.latency_ms_p10, g.latency_ms_p90, alpha=0.2, lw=0)
        for b in (64, 128, 192):
            ax.axvline(b, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("tokens")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{scope} (batch {int(g.batch_size.iloc[0])})", fontsize=8)
    fig.suptitle(_hw_caption(hw), fontsize=7)
    _save(fig, pdf_path, png_path)


def write_system_macros(path: str, *, ood: pd.DataFrame | None = None, latency: pd.DataFrame | None = None,
                        correlation: dict | None = None) -> None:
    """\\sysmetric{family@run@top1} (OOD), correlations and throughputs for the paper's text."""
    out = [r"% generated by tokred.report.write_system_macros: do not edit",
           r"\providecommand{\sysmetric}[1]{\ifcsname tokred@sys@#1\endcsname\csname tokred@sys@#1\endcsname\else\textbf{??}\fi}"]

    def define(name: str, value: str) -> None:
        out.append(rf"\expandafter\def\csname tokred@sys@{name}\endcsname{{{value}}}")

    if ood is not None:
        for r in ood.itertuples():
            for key in ("top1", "drop_pp"):
                define(f"{r.family}@{r.run}@{key}", f"{getattr(r, key):.2f}")
    if correlation is not None:
        for kind in ("latency", "throughput"):
            for k in ("pearson", "spearman"):
                define(f"corr@{kind}@{k}", f"{correlation[kind][k]:.2f}")
        define("corr@n", str(correlation["latency"]["n"]))
        define("hardware", _tex_escape(_hw_caption(correlation["hardware"])))
    if latency is not None:
        ok = latency[(latency.status == "ok") & (~latency.amp)]
        b = int(ok.batch_size.max())
        at_b = ok[ok.batch_size == b].set_index("run")
        define("latbatch", str(b))
        for run, r in at_b.iterrows():
            define(f"ips@{run}", f"{r.img_per_s:.1f}")
    io.write_text(path, "\n".join(out) + "\n")


def runs_table(df: pd.DataFrame, tex_path: str) -> None:
    """Reproducibility appendix: every run with its config hash, versions and hardware (longtable)."""
    lines = [r"\begin{longtable}{llrlll}", r"\toprule",
             r"Run & Group & GFLOPs & Config hash & torch / timm & Device (threads) \\", r"\midrule", r"\endhead"]
    for _, r in df.sort_values(["group", "run"]).iterrows():
        p = r["provenance"]
        lines.append(f"{_tex_escape(r['run'])} & {r['group']} & {r['gflops']:.3f} & \\texttt{{{p['config_hash']}}} & "
                     f"{p['torch']} / {p['timm']} & {_tex_escape(p['device_name'])} ({p['num_threads']}) \\\\")
    lines += [r"\bottomrule", r"\end{longtable}", ""]
    io.write_text(tex_path, "\n".join(lines))


METRIC_FORMATS = {"top1": ".2f", "top1_lo": ".2f", "top1_hi": ".2f", "drop_pp": ".2f", "drop_se_pp": ".2f",
                  "kl": ".4f", "delta_margin": ".3f", "agreement": ".2f", "gflops": ".3f", "rel_cost": ".3f",
                  "mcnemar_p": ".3g"}


def write_macros(df: pd.DataFrame, path: str, *, profile: str, model: dict, data: dict, train: dict | None,
                 task: dict | None, weights: str) -> None:
    """\\metric{run}{key} values for every run, plus setup facts (profile, sizes, versions)."""
    out = [r"% generated by tokred.report.write_macros: do not edit",
           r"\providecommand{\metric}[2]{\ifcsname tokred@#1@#2\endcsname\csname tokred@#1@#2\endcsname\else\textbf{??}\fi}",
           r"\providecommand{\setup}[1]{\csname tokred@setup@#1\endcsname}"]

    def define(name: str, value: str) -> None:
        out.append(rf"\expandafter\def\csname tokred@{name}\endcsname{{{value}}}")

    for _, row in df.iterrows():
        for key, fmt in METRIC_FORMATS.items():
            define(f"{row['run']}@{key}", format(row[key], fmt))
        if not pd.isna(row["r"]):
            define(f"{row['run']}@r", str(int(row["r"])))
    prov = df.iloc[0]["provenance"]
    setup = {
        "profile": profile,
        "images": str(int(df.iloc[0]["n_images"])),
        "torch": prov["torch"], "timm": prov["timm"], "device": _tex_escape(prov["device_name"] or prov["device"]),
        "confighash": prov["config_hash"],
        "runs": str(len(df)),
    }
    if model["source"] == "embedded":
        setup.update({"model": "embedded ViT", "width": str(model["embed_dim"]), "depth": str(model["depth"]),
                      "heads": str(model["num_heads"]), "patch": str(model["patch_size"]),
                      "imgsize": str(task.get("img_size", 112)), "steps": str(train["steps"]),
                      "batch": str(train["batch_size"])})
        setup.update(_training_facts(weights))
        setup["data"] = (f"synthetic task {setup['taskname']} with {setup['classes']} classes, "
                         f"{setup['imgsize']} px, model trained {setup['steps']} steps at batch {setup['batch']}")
    else:
        setup.update({"model": _tex_escape(model["name"]), "croppct": str(data.get("crop_pct"))})
        setup["data"] = (f"ImageNet-1k validation, resized and centre-cropped to {data.get('img_size', 224)} px "
                         f"at crop fraction {data.get('crop_pct')}, {data.get('interpolation', 'bicubic')} interpolation")
    for k, v in setup.items():
        define(f"setup@{k}", v)
    io.write_text(path, "\n".join(out) + "\n")


def _training_facts(weights: str) -> dict:
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    hist = ckpt.get("history", {})
    facts = {"classes": str(ckpt["num_classes"]), "taskname": _tex_escape(ckpt.get("task", {}).get("name", ""))}
    if "seconds" in hist:
        facts["trainminutes"] = f"{hist['seconds'] / 60:.1f}"
    return facts
