"""Tables of the early regime and of the selector/schedule split (docs/method.md §5):

- `headline_table`: ToMe against one method at one early layer set (the research notes' headline
  comparison: Top-1, KL(B||M), Δmargin), each with a 95% bootstrap interval over images, and the paired
  differences (McNemar's test for Top-1, paired bootstrap intervals for KL and Δmargin);
- `selector_table`: ToMe's bipartite matching and the full method under the same schedule (ToMe's
  constant r, and each keep shape solved for the full method), so each comparison changes one thing;
- `schedules_table`: the patch tokens left after every block under each schedule of the full group.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from .load import add_comparison
from .tables import _kl, _p_tex, _star, _write_table, tex_escape


def _logits(path: str):
    import torch

    return torch.load(Path(path).with_name("logits.pt"), weights_only=False)["logits"]


def _boot(x: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of per-image values `x` (scipy.stats.bootstrap)."""
    from scipy.stats import bootstrap

    if np.ptp(x) == 0:  # constant (e.g. no image changed): the interval is the value itself
        return float(x[0]), float(x[0])
    ci = bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=0.95, method="percentile",
                   random_state=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def headline_table(df: pd.DataFrame, base_logits, labels, method: str, layers: str, csv_path: str, tex_path: str,
                   *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """ToMe vs `method` reducing only in `layers`, one block of rows per r of the early group: Top-1 (%),
    mean KL(B||M) (nats) and mean Δmargin (logits), each with a 95% bootstrap interval over images; then
    the difference method − ToMe on the same images: Top-1 with McNemar's p, KL and Δmargin with paired
    bootstrap intervals. `df`: the early group's frame (`load.load_metrics`, the runs' logits next to
    their metrics); `base_logits` (images × classes) and `labels` (images,): the unreduced model's.
    Raises KeyError when a ToMe run at the same layers and r is missing."""
    import torch

    from ..study.metrics import bootstrap_ci, correct, kl_per_image, margin, mcnemar

    def interval(key, x):
        # A run's Top-1 interval is the one its metrics JSON (and every other table) carries.
        if key == "top1":
            return bootstrap_ci(torch.from_numpy(x > 0), n_boot=n_boot, seed=seed)
        return _boot(x, n_boot, seed)

    e = df[(df.group == "early") & (df.layers == layers)]
    base_margin = margin(base_logits, labels).numpy()
    rows = []
    for r in sorted(e[e.method == method].r.unique()):
        runs = {m: e[(e.method == m) & (e.r == r)].iloc[0] for m in ("tome", method)}
        per = {}
        for m, row in runs.items():
            lg = _logits(row["path"])
            per[m] = {"top1": 100.0 * correct(lg, labels).double().numpy(),
                      "kl": kl_per_image(base_logits, lg).numpy(),
                      "dmargin": margin(lg, labels).numpy() - base_margin}
            rows.append({"r": int(r), "row": m, "run": row["run"], "gflops": row["gflops"],
                         **{f"{k}{s}": v for k, x in per[m].items()
                            for s, v in zip(("", "_lo", "_hi"), (float(x.mean()), *interval(k, x)))}})
        diff = {k: per[method][k] - per["tome"][k] for k in per[method]}
        p = mcnemar(*(torch.from_numpy(per[m]["top1"] > 0) for m in ("tome", method)))["p_value"]
        rows.append({"r": int(r), "row": "difference", "run": f"{runs[method]['run']} - {runs['tome']['run']}",
                     "gflops": runs[method]["gflops"] - runs["tome"]["gflops"], "p_top1": p,
                     **{f"{k}{s}": v for k, x in diff.items()
                        for s, v in zip(("", "_lo", "_hi"), (float(x.mean()), *_boot(x, n_boot, seed)))}})
    t = pd.DataFrame(rows)
    with io.atomic_path(csv_path) as tmp:
        t.to_csv(tmp, index=False, float_format="%.6g")
    body = []
    for r, g in t.groupby("r", sort=True):
        for i, x in enumerate(g.itertuples()):
            name = {"tome": "ToMe", "difference": rf"$\Delta$ ({tex_escape(method)} $-$ ToMe)"}.get(x.row, tex_escape(x.row))
            diff = x.row == "difference"
            top1 = f"{x.top1:+.2f}{_star(x.p_top1)} [{x.top1_lo:+.2f}, {x.top1_hi:+.2f}]" if diff else \
                f"{x.top1:.2f} [{x.top1_lo:.2f}, {x.top1_hi:.2f}]"
            body.append(f"{r if i == 0 else ''} & {name} & {x.gflops:+.3f} & {top1} & "
                        f"{_kl(x.kl, True)} [{_kl(x.kl_lo, True)}, {_kl(x.kl_hi, True)}] & "
                        f"{x.dmargin:+.3f} [{x.dmargin_lo:+.3f}, {x.dmargin_hi:+.3f}] & "
                        f"{'$' + _p_tex(x.p_top1) + '$' if diff else '--'} \\\\"
                        if diff else
                        f"{r if i == 0 else ''} & {name} & {x.gflops:.3f} & {top1} & "
                        f"{_kl(x.kl)} [{_kl(x.kl_lo)}, {_kl(x.kl_hi)}] & "
                        f"{x.dmargin:+.3f} [{x.dmargin_lo:+.3f}, {x.dmargin_hi:+.3f}] & -- \\\\")
    sentences = [_difference_sentence(f"at $r={int(x.r)}$", tex_escape(method), "ToMe", x.top1, x.p_top1,
                                      (x.top1_lo, x.top1_hi)) + f" KL$(B\\|M)$ differs by {_kl(x.kl, True)} "
                 f"[{_kl(x.kl_lo, True)}, {_kl(x.kl_hi, True)}] and $\\Delta$margin by {x.dmargin:+.3f} [{x.dmargin_lo:+.3f}, "
                 f"{x.dmargin_hi:+.3f}]." for x in t[t.row == "difference"].itertuples()]
    _write_table(tex_path, "rlrcccr", r"$r$ & Run & GFLOPs & Top-1 (\%) [95\% CI] & KL$(B\|M)$ [95\% CI] & "
                 r"$\Delta$margin [95\% CI] & McNemar $p$", body,
                 tail=(r"\gdef\headlinesentences{" + " ".join(sentences) + "}",))
    return t


def _difference_sentence(where: str, a: str, b: str, delta: float, p: float, ci=None) -> str:
    """'<where>, A is 0.53 pp above B (McNemar p = 0.01, significant at 5%).' from the numbers."""
    if delta == 0:
        return f"{where.capitalize()}, {a} and {b} have the same Top-1 (McNemar $p={_p_tex(p)}$)."
    word = "above" if delta > 0 else "below"
    ci = f", 95\\% interval [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""
    sig = "significant" if p < 0.05 else "not significant"
    return (f"{where.capitalize()}, {a} is {abs(delta):.2f}\\,pp {word} {b}{ci} (McNemar $p={_p_tex(p)}$, "
            f"{sig} at 5\\%).")


def selector_table(df: pd.DataFrame, pairs: list[dict], labels, csv_path: str, tex_path: str) -> pd.DataFrame:
    """One row per schedule (`tokred.study.config.selector_pairs`): GFLOPs and Top-1 [95% CI] of ToMe's
    matching and of the full method under it; Δ selector = method − ToMe under the same schedule, and
    Δ schedule = each selector under the keep shape − the same selector at ToMe's constant r, each with
    McNemar's p on the same images (star: p < 0.05). `df`: frame of every run named in `pairs`."""
    sel = {p["ours"]: p["tome"] for p in pairs}
    const = {p[k]: p[f"{k}_const"] for p in pairs for k in ("ours", "tome") if f"{k}_const" in p}
    d = add_comparison(add_comparison(df, sel, labels, "sel"), const, labels, "const").set_index("run")
    rows = []
    for p in pairs:
        o, t = d.loc[p["ours"]], d.loc[p["tome"]]
        rows.append({"schedule": p["schedule"], "tome_run": p["tome"], "ours_run": p["ours"], "method": o["method"],
                     "gflops_tome": t["gflops"], "gflops_ours": o["gflops"],
                     **{f"top1_{k}{s}": x[f"top1{s}"] for k, x in (("tome", t), ("ours", o)) for s in ("", "_lo", "_hi")},
                     "delta_selector": o["delta_vs_sel"], "p_selector": o["p_vs_sel"],
                     "delta_schedule_tome": t["delta_vs_const"], "p_schedule_tome": t["p_vs_const"],
                     "delta_schedule_ours": o["delta_vs_const"], "p_schedule_ours": o["p_vs_const"]})
    out = pd.DataFrame(rows)
    with io.atomic_path(csv_path) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6g")

    def delta(v, p):
        return "--" if pd.isna(v) else f"{v:+.2f}{_star(p)}"

    body = [f"{tex_escape(x.schedule)} & {x.gflops_tome:.3f} & {x.top1_tome:.2f} [{x.top1_tome_lo:.1f}, "
            f"{x.top1_tome_hi:.1f}] & {x.gflops_ours:.3f} & {x.top1_ours:.2f} [{x.top1_ours_lo:.1f}, {x.top1_ours_hi:.1f}] & "
            f"{delta(x.delta_selector, x.p_selector)} & {delta(x.delta_schedule_tome, x.p_schedule_tome)} & "
            f"{delta(x.delta_schedule_ours, x.p_schedule_ours)} \\\\" for x in out.itertuples()]
    method = tex_escape(out["method"].iloc[0]) if len(out) else "ours"
    sentences = [_difference_sentence(f"under {tex_escape(x.schedule)}", method, "ToMe", x.delta_selector,
                                      x.p_selector) for x in out.itertuples()]
    sentences += [_difference_sentence(f"with the {tex_escape(x.schedule)} schedule instead of "
                                       f"{tex_escape(out.schedule.iloc[0])}", f"{who}", f"{who} at constant $r$", v, p)
                  for x in out.iloc[1:].itertuples()
                  for who, v, p in ((method, x.delta_schedule_ours, x.p_schedule_ours),
                                    ("ToMe", x.delta_schedule_tome, x.p_schedule_tome))]
    _write_table(tex_path, "lrcrcrrr", rf"Schedule & GFLOPs & ToMe Top-1 & GFLOPs & {method} Top-1 & "
                 r"$\Delta$ selector & $\Delta$ sched.\ ToMe & $\Delta$ sched.\ ours", body,
                 tail=(r"\gdef\selectorsentences{" + " ".join(sentences) + "}",))
    return out


def schedules_table(df: pd.DataFrame, schedules: list[dict], csv_path: str, tex_path: str) -> pd.DataFrame:
    """Patch tokens left after every block under each schedule of the full group: ToMe's constant r (from
    its run's `resolved_r`) and every solved keep shape (`kept` of the schedule JSONs that
    `tokred.study.matching.solve_schedule` writes), with the GFLOPs of each run under it."""
    from ..schedule import token_counts

    n = schedules[0]["num_patches"]
    rows = []
    for _, r in df[(df.method == "tome") & df.keep_shape.isna()].iterrows():
        runs = df[df.keep_shape.isna() & (df.r == r["r"])]
        rows.append({"schedule": f"constant r={int(r['r'])}", "kept": token_counts(n, r["resolved_r"])[1:],
                     "runs": dict(zip(runs.run, runs.gflops))})
    for s in schedules:
        runs = df[df.keep_shape == s["keep_shape"]]
        rows.append({"schedule": s["keep_shape"], "kept": s["kept"], "runs": dict(zip(runs.run, runs.gflops))})
    out = pd.DataFrame([{"schedule": x["schedule"], **{f"after_block_{i}": k for i, k in enumerate(x["kept"])},
                         "gflops": "; ".join(f"{k}={v:.4f}" for k, v in x["runs"].items())} for x in rows])
    with io.atomic_path(csv_path) as tmp:
        out.to_csv(tmp, index=False)
    depth = len(rows[0]["kept"])
    body = [f"{tex_escape(x['schedule'])} & " + " & ".join(str(k) for k in x["kept"]) + r" \\" for x in rows]
    _write_table(tex_path, "l" + "r" * depth, "Schedule & " + " & ".join(str(i) for i in range(depth)), body)
    return out
