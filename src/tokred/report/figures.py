"""Figures (PDF for the paper, PNG for `snakemake --report`) from the metrics frames."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import io
from .tables import method_name


def figure_setup():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def save_figure(fig, pdf_path: str, png_path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    for path in (pdf_path, png_path):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=200)
    plt.close(fig)

def top1_vs_gflops_figure(df: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """The ToMe r-sweep: Top-1 (95% interval) against GFLOPs, baseline marked."""
    plt, _ = figure_setup()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    runs = df[df.group != "baseline"].sort_values("gflops")
    base = df[df.group == "baseline"].iloc[0]
    for method, g in runs.groupby("method"):
        ax.errorbar(g.gflops, g.top1, yerr=[g.top1 - g.top1_lo, g.top1_hi - g.top1], marker="o", ms=4,
                    capsize=2, lw=1.2, label=method_name(method))
        for _, row in g.iterrows():
            ax.annotate(f"r={int(row['r'])}", (row.gflops, row.top1), textcoords="offset points", xytext=(3, 4),
                        fontsize=6)
    ax.errorbar([base.gflops], [base.top1], yerr=[[base.top1 - base.top1_lo], [base.top1_hi - base.top1]],
                marker="*", ms=9, color="black", capsize=2, ls="none", label="baseline (unpatched)")
    ax.set_xlabel("GFLOPs per image (fvcore)")
    ax.set_ylabel("Top-1 (%)")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, pdf_path, png_path)


def pareto_figure(df: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """Top-1 vs GFLOPs of every run, coloured by method, marked by experiment group."""
    plt, sns = figure_setup()
    d = df.assign(Method=df.method.map(method_name), Group=df.group)
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
    save_figure(fig, pdf_path, png_path)


def early_drop_figure(t: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """Per layer set and r: drop of ToMe and of ours (bars), from the early table."""
    plt, sns = figure_setup()
    ours = t[t.method.notna()]  # rows where ToMe ran alone have no bar of ours
    long = pd.concat([t.assign(Method="ToMe", drop=t.drop_tome), ours.assign(Method=ours.method, drop=ours.drop_ours)])
    g = sns.catplot(data=long, x="layers", y="drop", hue="Method", col="r", kind="bar", height=2.2, aspect=0.8,
                    legend_out=False)
    g.set_axis_labels("layer set", "drop (pp)")
    g.figure.set_size_inches(7.0, 2.4)
    save_figure(g.figure, pdf_path, png_path)


def rsweep_figure(df: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """Drop vs r: early layer sets (ToMe and ours) and ToMe in all layers."""
    plt, sns = figure_setup()
    e = df[df.group == "early"].assign(Method=lambda d: d.method.map(method_name), Layers=lambda d: d.layers)
    rep = df[(df.group == "reproduce")].assign(Method="ToMe", Layers="all")
    d = pd.concat([e, rep])
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    sns.lineplot(data=d, x="r", y="drop_pp", hue="Layers", style="Method", markers=True, ax=ax)
    ax.set_xlabel("$r$ (tokens removed per reducing block)")
    ax.set_ylabel("drop vs baseline (pp)")
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, pdf_path, png_path)


def ablation_figure(a: pd.DataFrame, tome_top1: float, pdf_path: str, png_path: str) -> None:
    """Top-1 (95% interval) of every row of the ablation table `a` (its CSV); dashed: ToMe at the same r;
    dotted: the reference run (the row without `ref_run`), against which the table's Δ and p are taken."""
    plt, sns = figure_setup()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    a = a.reset_index(drop=True)
    ax.bar(range(len(a)), a.top1, yerr=[a.top1 - a.top1_lo, a.top1_hi - a.top1], capsize=2, color="tab:blue")
    ax.axhline(tome_top1, color="tab:red", ls="--", lw=1, label="ToMe, same $r$")
    if "ref_run" in a and a.ref_run.isna().any():
        ax.axhline(a[a.ref_run.isna()].top1.iloc[0], color="black", ls=":", lw=1, label="reference")
    ax.set_xticks(range(len(a)), a.run, rotation=60, ha="right", fontsize=6)
    lo = min(a.top1_lo.min(), tome_top1) - 1
    ax.set_ylim(lo, max(a.top1_hi.max(), tome_top1) + 0.5)
    ax.set_ylabel("Top-1 (%)")
    ax.legend(fontsize=7)
    save_figure(fig, pdf_path, png_path)


def ood_severity_figure(df: pd.DataFrame, family: str, pdf_path: str, png_path: str, *,
                        runs: list[str] | None = None) -> None:
    """Top-1 against severity (0 = clean) for one corruption, one line per run (`runs`, default all; names as
    in the OOD tables), 95% intervals; the chance level of the family's images (`load.load_ood`'s
    `chance`) as a dotted line with its 95% binomial interval shaded: points inside it are guessing."""
    plt, _ = figure_setup()
    d = pd.concat([df[df.family == "clean"], df[df.family == family]])
    if runs is not None:
        d = d[d.run.isin(runs)]
    fig, ax = plt.subplots(figsize=(3.6, 2.7))
    ref = d.iloc[-1]
    ax.axhspan(ref.chance_lo, ref.chance_hi, color="0.85", lw=0, zorder=0)
    ax.axhline(ref.chance, color="0.4", ls=":", lw=1, label="chance")
    for run, g in d.groupby("run", sort=False):
        g = g.sort_values("severity")
        ax.errorbar(g.severity, g.top1, yerr=[g.top1 - g.top1_lo, g.top1_hi - g.top1], marker="o", ms=3, capsize=2,
                    lw=1.1, label="baseline" if g.method.iloc[0] == "none" else run)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("Top-1 (%)")
    ax.set_title(family.replace("_", " "), fontsize=8)
    ax.legend(fontsize=6)
    save_figure(fig, pdf_path, png_path)


def hw_caption(hw: dict) -> str:
    dev = hw.get("cuda_name") or hw.get("cpu_model", "?")
    return f"{dev}, torch {hw.get('torch', '?')}, {hw.get('torch_threads', '?')} threads"


def latency_figure(df: pd.DataFrame, hw: dict, pdf_path: str, png_path: str) -> None:
    """Images/s against batch size per variant (and precision), median with p10-p90 band."""
    plt, _ = figure_setup()
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    for (variant, amp), g in df[df.status == "ok"].groupby(["variant", "amp"], sort=False):
        g = g.sort_values("batch_size")
        line, = ax.plot(g.batch_size, g.img_per_s, marker="o", ms=3, lw=1.1,
                        label=f"{variant}{' AMP' if amp else ''}")
        ax.fill_between(g.batch_size, g.img_per_s_lo, g.img_per_s_hi, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_title(hw_caption(hw), fontsize=7)
    ax.legend(fontsize=5.5)
    save_figure(fig, pdf_path, png_path)


def gflops_latency_figure(df: pd.DataFrame, summary: dict, pdf_path: str, png_path: str) -> None:
    plt, sns = figure_setup()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    sns.scatterplot(data=df.assign(Method=df.method.map(method_name)), x="gflops", y="latency_ms", hue="Method",
                    style="group", s=22, ax=ax)
    c = summary["latency"]
    ax.set_title(f"Pearson {c['pearson']:.2f}, Spearman {c['spearman']:.2f} (n={c['n']}); "
                 + hw_caption(summary["hardware"]), fontsize=6)
    ax.set_xlabel("GFLOPs per image")
    ax.set_ylabel(f"latency per batch of {summary['batch_size']} (ms)")
    ax.legend(fontsize=5, ncol=2)
    save_figure(fig, pdf_path, png_path)


def token_sweep_figure(df: pd.DataFrame, hw: dict, pdf_path: str, png_path: str) -> None:
    """Latency against token count for one block and the whole model; tile boundaries 64/128 marked."""
    plt, _ = figure_setup()
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
    fig.suptitle(hw_caption(hw), fontsize=7)
    save_figure(fig, pdf_path, png_path)
