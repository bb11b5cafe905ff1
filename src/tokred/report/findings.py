"""The paper's findings in words, generated from the result tables: which method wins where, by how much,
whether it is significant, what the run cannot show, and the conclusion to the introduction's two
questions (docs/method.md §5). Every sentence is a function of the CSV tables `tokred.report.tables`
writes, so the text stays true for the run it describes.

A difference is called significant when McNemar's paired p (after Holm's correction over the table,
where the table carries a Holm column) is below 0.05; every Δ is quoted with its 95% interval.
"""
from __future__ import annotations

import math

import pandas as pd

from ..schedule import parse_layers
from .replication import outcome
from .tables import _p_tex, method_name, tex_escape

ALPHA = 0.05
# Below this KL(B||M) a run's logits are the unreduced model's for every practical purpose: reduction
# at that place cannot separate two methods (the model settled its answer earlier).
KL_FLOOR = 1e-4


def _m(method: str) -> str:
    """A method's name as the tables print it (ToMe, ours_size_norm, ...)."""
    return tex_escape(method_name(method))


def _p(p: float) -> str:
    return "n/a" if p != p else _p_tex(p)


def _holm_col(row, p_col: str) -> str | None:
    for c in (f"{p_col}_holm", "p_holm"):
        if c in row.index and row[c] == row[c]:
            return c
    return None


def _sig_p(row, p_col: str) -> float:
    """The p-value the table's stars use: Holm-adjusted when the table has it."""
    return float(row[_holm_col(row, p_col) or p_col])


def _delta(row, d_col: str, p_col: str, lo_col: str | None = None, hi_col: str | None = None) -> str:
    """'+0.40 pp [-0.1, +0.9], p=0.03' for one comparison row."""
    ci = ""
    if lo_col in row.index and hi_col in row.index and row[lo_col] == row[lo_col]:
        ci = f" [{row[lo_col]:+.2f}, {row[hi_col]:+.2f}]"
    p = _sig_p(row, p_col)
    name = r"p_\mathrm{Holm}" if _holm_col(row, p_col) else "p"
    return rf"{row[d_col]:+.2f}\,pp{ci}, ${name}={_p(p)}$"


def _verdict_counts(t: pd.DataFrame, d_col: str, p_col: str) -> tuple[int, int, int]:
    """(significant wins, significant losses, not significant) of the rows (Δ = method - partner)."""
    wins = losses = ties = 0
    for _, r in t.iterrows():
        if _sig_p(r, p_col) < ALPHA:
            if r[d_col] > 0:
                wins += 1
            else:
                losses += 1
        else:
            ties += 1
    return wins, losses, ties


def reproduce_findings(rep: pd.DataFrame) -> str:
    """ToMe's drop along r, with 95% intervals, and whether it rises monotonically."""
    t = rep[(rep.group != "baseline") & (rep.r.fillna(0) > 0)].sort_values("r")
    if t.empty:
        return ""
    parts = [rf"$r={int(r.r)}$: {r.drop_pp:.2f}\,pp [{r.drop_pp - 1.96 * r.drop_se_pp:.2f}, "
             rf"{r.drop_pp + 1.96 * r.drop_se_pp:.2f}]" for r in t.itertuples()]
    drops = list(t.drop_pp)
    mono = all(b >= a for a, b in zip(drops, drops[1:]))
    trend = ("is the same at every $r$." if max(drops) - min(drops) < 1e-9 else
             "rises monotonically with $r$." if mono else "does not rise monotonically with $r$.")
    sig = [int(row.r) for _, row in t.iterrows() if _sig_p(row, "mcnemar_p") < ALPHA]
    holm = " after Holm's correction" if any(_holm_col(row, "mcnemar_p") for _, row in t.iterrows()) else ""
    s = (f"ToMe's Top-1 drop against the unreduced model (95\\% intervals) is {'; '.join(parts)}; it "
         + trend
         + (f" McNemar's test{holm} separates ToMe from the unreduced model at $r\\in\\{{{', '.join(map(str, sig))}\\}}$."
            if sig else f" McNemar's test{holm} separates ToMe from the unreduced model at no $r$."))
    gains = [int(row.r) for _, row in t.iterrows() if int(row.r) in sig and row.drop_pp < 0]
    if gains:  # a negative drop: merging made this model *more* accurate on these images
        s += (f" At $r\\in\\{{{', '.join(map(str, gains))}\\}}$ that difference is a gain: the reduced model is "
              "more accurate than the unreduced one on these images.")
    return s


def early_settled(early: pd.DataFrame) -> list[str]:
    """Layer sets where no method run there (ToMe alone, or ToMe and ours) moves KL(B||M) above KL_FLOOR at any r."""
    out = []
    for layers, g in early.groupby("layers", sort=False):
        if pd.concat([g.kl_tome, g.kl_ours]).max() < KL_FLOOR:  # ours is NaN where ToMe ran alone
            out.append(layers)
    return out


def early_findings(early: pd.DataFrame) -> str:
    """Per method: significant wins/losses against ToMe at equal r, the largest of each, the L0-2 rows."""
    if early.empty:
        return ""
    out = []
    for method, g in early.groupby("method", sort=False):
        w, l_, n = _verdict_counts(g, "delta", "p_vs_tome")
        s = (f"Against ToMe at equal $r$, {_m(method)} is significantly better in {w}, significantly worse in "
             f"{l_} and not distinguishable in {n} of the {len(g)} settings (layer set $\\times$ $r$).")
        best, worst = g.loc[g.delta.idxmax()], g.loc[g.delta.idxmin()]
        if worst.delta < 0:
            s += f" Its largest loss is at {worst.layers}, $r={int(worst.r)}$ ({_delta(worst, 'delta', 'p_vs_tome', 'delta_lo', 'delta_hi')})"
            s += (f"; its largest gain at {best.layers}, $r={int(best.r)}$ ({_delta(best, 'delta', 'p_vs_tome', 'delta_lo', 'delta_hi')})."
                  if best.delta > 0 else "; it gains nowhere.")
        elif best.delta > 0:
            s += f" Its largest gain is at {best.layers}, $r={int(best.r)}$ ({_delta(best, 'delta', 'p_vs_tome', 'delta_lo', 'delta_hi')})."
        else:
            s += " Its Top-1 equals ToMe's in every setting."
        out.append(s)
    settled = early_settled(early)
    if settled:
        out.append(f"Reduction confined to {', '.join(settled)} leaves KL$(B\\,\\|\\,M)$ below "
                   f"$10^{{{int(math.log10(KL_FLOOR))}}}$ for every method run there at every $r$: {_settled_reason(settled)}, "
                   "so these rows cannot separate the methods.")
    return " ".join(out)


def _first_block(layers: str) -> int:
    """First block of a layer set name (L0, L1, L0-2, ...; tokred.schedule.parse_layers)."""
    # the table's names were checked against the model's depth in the pre-flight; any bound will do here
    return parse_layers(layers, 10**6)[0]


def _settled_reason(settled: list[str]) -> str:
    late = [s for s in settled if _first_block(s) > 0]
    if not late:
        return "reduction there does not change this model's predictions"
    blocks = [str(_first_block(s)) for s in late]
    where = f"block {blocks[0]}" if len(blocks) == 1 else f"blocks {', '.join(blocks[:-1])} and {blocks[-1]}"
    return (f"the model settles its answer before {where}"
            + (" (and reduction from block 0 changes nothing either)" if len(late) < len(settled) else ""))


def _matched_schedules(full: pd.DataFrame) -> pd.DataFrame:
    """Ours' keep shapes solved to ToMe's GFLOPs: not ToMe under ours' keep ratios (the selector split), not
    the method at ToMe's constant r (equal r, not equal cost: ours also pays for its attention matrix)."""
    ours = full[full.method != "tome"] if "method" in full else full
    ours = ours[ours.tome_run.notna()] if "tome_run" in ours else ours
    return ours[ours.keep_shape.notna()] if "keep_shape" in ours else ours


def full_findings(full: pd.DataFrame) -> str:
    """Each keep shape against ToMe at matched GFLOPs, and the best shape."""
    ours = _matched_schedules(full)
    if ours.empty:
        return ""
    parts = [f"{r.keep_shape if 'keep_shape' in ours else r.run.replace('_', ' ')}"
             f" {_delta(pd.Series(r._asdict()), 'delta_vs_tome', 'p_vs_tome', 'delta_lo_vs_tome', 'delta_hi_vs_tome')}"
             f" at {r.gflops:.3f} GFLOPs" for r in ours.itertuples(index=False)]
    w, l_, n = _verdict_counts(ours, "delta_vs_tome", "p_vs_tome")
    best = ours.loc[ours.top1.idxmax()]
    s = (f"At ToMe's cost, ours minus ToMe is: {'; '.join(p.replace('_', chr(92) + '_') for p in parts)}. "
         f"{w} shape(s) beat ToMe significantly, {l_} lose significantly, {n} are not distinguishable; the best "
         f"is {str(best.run).replace('_', chr(92) + '_')} ({best.top1:.2f}\\%).")
    return s


def _replicated(rep: pd.DataFrame | None, group: str) -> pd.DataFrame:
    """Rows of the replication CSV that compare a run of `group` with a ToMe run (not with the baseline),
    when more than one model was trained; empty otherwise."""
    if rep is None or rep.empty or int(rep.n_models.iloc[0]) < 2:
        return rep.iloc[0:0] if rep is not None else pd.DataFrame()
    return rep[rep.comparison.str.startswith(f"{group}/") & (rep.vs != "baseline/base")]


def replicated_answer(row: pd.Series) -> str:
    """One repeated comparison (a row of `tokred.report.replication`'s CSV) as an answer: the mean Δ over the
    models with its 95% interval across models and the per-model Δ; a winner only when the comparison holds
    on every model (same sign, significant after Holm on each), so that weights trained on another CPU
    change the answer only if their models agree with each other."""
    run, vs = (tex_escape(str(row[c]).split("/", 1)[1]) for c in ("comparison", "vs"))
    deltas = [float(row[c]) for c in row.index if c.startswith("delta_")]  # delta_<model>, models in order
    s = (f"{run} minus {vs} is {row.mean_delta:+.2f}\\,pp on average over the {len(deltas)} models (95\\% interval "
         f"across models [{row.lo:+.2f}, {row.hi:+.2f}]; per model {' / '.join(f'{d:+.2f}' for d in deltas)}\\,pp): ")
    winner, loser = (vs, run) if row.mean_delta < 0 else (run, vs)
    return s + {"holds": f"{winner} loses less than {loser} on every model",
                "same_sign": "the sign agrees, but not every model's difference is significant, so neither loses "
                             "reliably less",
                "equal": "Top-1 is the same on every model",
                "sign_differs": "the models disagree, so this benchmark does not say which loses less",
                "zero_somewhere": "it is 0 on some model, so neither loses less on every model",
                }[outcome(row, deltas)]


def conclusion(early: pd.DataFrame | None, full: pd.DataFrame | None, replication: pd.DataFrame | None = None
               ) -> str:
    """Answers to the introduction's two questions. With several trained models (`replication`, the CSV of
    `tokred.report.replication`) each question whose comparison was repeated on every model is answered from
    that comparison across the models (`replicated_answer`); otherwise from the main model's early and full
    tables."""
    rep_early, rep_full = _replicated(replication, "early"), _replicated(replication, "full")
    if not rep_early.empty:
        first = ["(i) At equal $r$ in early blocks, "
                 + "; ".join(replicated_answer(r) for _, r in rep_early.iterrows()) + "."]
    else:
        first = _early_answer(early)
    if not rep_full.empty:
        second = ["(ii) At equal GFLOPs over the whole network, "
                  + "; ".join(replicated_answer(r) for _, r in rep_full.iterrows()) + "."]
    else:
        second = _full_answer(full)
    return " ".join(first + second)


def _early_answer(early: pd.DataFrame | None) -> list[str]:
    """(i) from the main model's early table."""
    s = []
    if early is not None and not early.empty:
        live = early[~early.layers.isin(early_settled(early))]
        if live.empty:
            s.append("(i) No early-layer setting of this run changes the predictions measurably, so it cannot say "
                     "which method loses less at equal $r$ in early blocks.")
        answers = []
        for method, g in live.groupby("method", sort=False):
            w, l_, n = _verdict_counts(g, "delta", "p_vs_tome")
            mean = g.delta.mean()
            if l_ > w:
                ans = f"ToMe loses less than {_m(method)}"
            elif w > l_:
                ans = f"{_m(method)} loses less than ToMe"
            else:
                ans = f"neither ToMe nor {_m(method)} loses reliably less"
            answers.append(f"{ans} ({w} significant gains, {l_} significant losses, {n} tie{'' if n == 1 else 's'}; mean "
                           f"$\\Delta={mean:+.2f}$\\,pp over the {len(g)} informative settings)")
        if answers:
            s.append(f"(i) At equal $r$ in early blocks, on this run {'; '.join(answers)}.")
    return s


def _full_answer(full: pd.DataFrame | None) -> list[str]:
    """(ii) from the main model's full table."""
    s = []
    if full is not None and not full.empty:
        ours = _matched_schedules(full)
        if not ours.empty:
            best = ours.loc[ours.top1.idxmax()]
            p = _sig_p(best, "p_vs_tome")
            d = best.delta_vs_tome
            rel = ("equals ToMe's Top-1" if d == 0 else ("beats ToMe" if d > 0 else "stays below ToMe")
                   + (" significantly" if p < ALPHA else ", not significantly"))
            s.append(f"(ii) At equal GFLOPs over the whole network, the best schedule is "
                     f"{str(best.run).replace('_', chr(92) + '_')}, which {rel} "
                     f"({_delta(best, 'delta_vs_tome', 'p_vs_tome', 'delta_lo_vs_tome', 'delta_hi_vs_tome')}).")
    return s


def replication_conclusion(rep: pd.DataFrame) -> str:
    """Which repeated comparisons hold on every trained model (`tokred.report.replication`'s CSV)."""
    def names(t):
        return ", ".join(f"{tex_escape(c.split('/', 1)[1])} vs "
                         f"{'the baseline' if v == 'baseline/base' else tex_escape(v.split('/', 1)[1])}"
                         for c, v in zip(t.comparison, t.vs))

    held, other = rep[rep.holds.astype(bool)], rep[~rep.holds.astype(bool)]
    s = (f"Across the {int(rep.n_models.iloc[0])} trained models, {len(held)} of the {len(rep)} repeated "
         f"comparisons hold on every model" + (f" ({names(held)})" if len(held) else ""))
    if len(other):
        s += (f"; {names(other)} do{'es' if len(other) == 1 else ''} not, so the main model's result there is not a "
              "finding of this benchmark")
    return s + "."


def write_findings(path: str, *, reproduce: pd.DataFrame, early: pd.DataFrame | None = None,
                   full: pd.DataFrame | None = None, replication: pd.DataFrame | None = None) -> None:
    """generated/findings.tex: \\FindingsReproduce, \\FindingsEarly, \\FindingsFull,
    \\Conclusion and \\LimitationsData (empty where a group did not run). With `replication` (more
    trained models) the conclusion answers from the comparisons repeated on every model and ends with what
    holds on every model."""
    from .. import io

    macros = {
        "FindingsReproduce": reproduce_findings(reproduce),
        "FindingsEarly": early_findings(early) if early is not None else "",
        "FindingsFull": full_findings(full) if full is not None else "",
        "Conclusion": " ".join(x for x in (conclusion(early, full, replication), replication_conclusion(replication)
                                           if replication is not None and not replication.empty else "") if x),
        "LimitationsData": (f"On this run, reduction confined to {', '.join(early_settled(early))} does not change "
                            "the predictions measurably (KL below the floor above): the study's early-layer "
                            "claims about those blocks are untested here."
                            if early is not None and early_settled(early) else ""),
    }
    lines = ["% generated by tokred.report.findings.write_findings: do not edit"]
    lines += [rf"\newcommand{{\{k}}}{{{v}}}" for k, v in macros.items()]
    io.write_text(path, "\n".join(lines) + "\n")
