"""The paper's generated findings say what the tables show: who wins, by how much, whether significant,
which early settings cannot separate the methods, and the conclusion's answers."""
import pandas as pd

from tokred.report import findings


def _early(rows):
    cols = ["layers", "r", "method", "delta", "delta_lo", "delta_hi", "p_vs_tome", "kl_tome", "kl_ours"]
    return pd.DataFrame(rows, columns=cols)


def test_early_counts_wins_losses_and_names_the_largest_loss():
    e = _early([("L0", 13, "ours_size_norm", -2.8, -3.6, -2.0, 1e-6, 0.01, 0.03),
                ("L0", 28, "ours_size_norm", -5.2, -6.1, -4.3, 1e-9, 0.02, 0.08),
                ("L0-2", 13, "ours_size_norm", 0.4, -0.2, 1.0, 0.3, 0.02, 0.02)])
    s = findings.early_findings(e)
    assert "significantly better in 0, significantly worse in 2 and not distinguishable in 1 of the 3" in s
    assert "largest loss is at L0, $r=28$ (-5.20" in s and "[-6.10, -4.30]" in s
    assert "largest gain at L0-2, $r=13$ (+0.40" in s
    c = findings.conclusion(e, None)
    assert "ToMe loses less than ours" in c and "2 significant losses" in c


def test_settled_layer_sets_are_named_with_the_block_they_start_at():
    e = _early([("L0", 13, "ours_size_norm", -1.0, -1.5, -0.5, 1e-3, 0.01, 0.02),
                ("L1", 13, "ours_size_norm", 0.0, 0.0, 0.0, 1.0, 1e-9, 2e-9),
                ("L2", 13, "ours_size_norm", 0.0, 0.0, 0.0, 1.0, 1e-7, 5e-5)])
    assert findings.early_settled(e) == ["L1", "L2"]
    s = findings.early_findings(e)
    assert "Reduction confined to L1, L2" in s and "before blocks 1 and 2" in s
    # the conclusion only counts the settings that can separate the methods
    assert "over the 1 informative settings" in findings.conclusion(e, None)


def test_layer_sets_where_toMe_ran_alone_count_as_settled_and_not_as_settings():
    # the default runs ToMe alone in L1 and L2 (tables.early_table: method and ours' columns empty)
    e = _early([("L0-2", 13, "hquota_ff", -2.0, -2.9, -1.1, 1e-6, 0.005, 0.04),
                ("L1", 13, None, None, None, None, None, 4e-10, None),
                ("L2", 13, None, None, None, None, None, 3e-3, None)])
    assert findings.early_settled(e) == ["L1"]
    s = findings.early_findings(e)
    assert "of the 1 settings" in s and "Reduction confined to L1 leaves" in s and "before block 1" in s
    assert "over the 1 informative settings" in findings.conclusion(e, None)


def test_holm_adjusted_p_decides_significance_when_present():
    e = _early([("L0", 13, "ours_size_norm", -1.0, -1.8, -0.2, 0.03, 0.01, 0.02)])
    assert "significantly worse in 1" in findings.early_findings(e)
    assert "$p=0.03$" in findings.early_findings(e)
    e["p_vs_tome_holm"] = 0.09
    assert "significantly worse in 0" in findings.early_findings(e)
    assert r"$p_\mathrm{Holm}=0.09$" in findings.early_findings(e)


def test_full_and_conclusion_name_the_best_schedule_and_its_sign():
    f = pd.DataFrame({"run": ["ours_size_norm_uniform", "ours_size_norm_late"], "method": ["ours_size_norm"] * 2,
                      "keep_shape": ["uniform", "late"], "tome_run": ["tome_r13"] * 2, "gflops": [2.71, 2.70],
                      "top1": [95.0, 96.5], "delta_vs_tome": [-3.0, -1.5], "delta_lo_vs_tome": [-3.8, -2.2],
                      "delta_hi_vs_tome": [-2.2, -0.8], "p_vs_tome": [1e-8, 4e-3]})
    s = findings.full_findings(f)
    assert "0 shape(s) beat ToMe significantly, 2 lose significantly" in s
    assert "the best is ours\\_size\\_norm\\_late (96.50\\%)" in s
    assert "stays below ToMe significantly" in findings.conclusion(None, f)
    # ToMe under ours' keep ratios (the selector split) is never "the best schedule" of ours, even when higher
    t = pd.concat([f, f.iloc[[0]].assign(run="tome_uniform", method="tome", top1=99.0, delta_vs_tome=0.0)])
    assert "the best schedule is ours\\_size\\_norm\\_late" in findings.conclusion(None, t)
    # nor is the method at ToMe's constant r (equal r, not equal GFLOPs: no keep shape)
    c = pd.concat([f, f.iloc[[0]].assign(run="ours_size_norm_r13", keep_shape=None, top1=99.0, gflops=2.9)])
    assert "the best schedule is ours\\_size\\_norm\\_late" in findings.conclusion(None, c)
    assert "r13" not in findings.full_findings(c) and "2 lose significantly" in findings.full_findings(c)


def test_reproduce_says_whether_the_drop_rises_with_r():
    rep = pd.DataFrame({"group": ["baseline", "reproduce", "reproduce"], "r": [None, 4, 13],
                        "drop_pp": [0.0, 0.5, 0.3], "drop_se_pp": [0.0, 0.1, 0.1], "mcnemar_p": [1.0, 0.001, 0.02]})
    s = findings.reproduce_findings(rep)
    assert "does not rise monotonically" in s and "$r\\in\\{4, 13\\}$" in s
    # the same set the table stars: Holm-adjusted where the table carries it
    rep["p_holm"] = [None, 0.002, 0.06]
    s = findings.reproduce_findings(rep)
    assert "after Holm's correction separates ToMe from the unreduced model at $r\\in\\{4\\}$" in s
    assert "is a gain" not in s
    # a significant negative drop is named as a gain (merging made the model more accurate)
    rep["drop_pp"] = [0.0, -0.5, 0.3]
    s = findings.reproduce_findings(rep)
    assert "At $r\\in\\{4\\}$ that difference is a gain" in s


def test_top1_effect_words_follow_the_sign_of_the_drop():
    # drop_pp = baseline minus run: positive is a loss, negative a gain (the abstract read "-0.60 pp of Top-1")
    from tokred.report.macros import top1_effect

    assert top1_effect(0.6) == r"a loss of 0.60\,pp of Top-1"
    assert top1_effect(-0.6) == r"a gain of 0.60\,pp of Top-1"
    assert top1_effect(0.001) == "no change of Top-1" and top1_effect(float("nan")).startswith("an unmeasured")


def test_early_with_no_difference_names_no_gain():
    e = _early([("L1", 13, "ours_size_norm", 0.0, 0.0, 0.0, 1.0, 1e-9, 1e-9)])
    s = findings.early_findings(e)
    assert "gain is" not in s and "equals ToMe's in every setting" in s


def _replication(deltas, p_holm, vs="early/tome_L0-2_r13", comparison="early/hquota_ff_L0-2_r13"):
    from tokred.report.replication import across_models

    mean, lo, hi = across_models(deltas)
    same = len({d > 0 for d in deltas}) == 1 and all(d != 0 for d in deltas)
    row = {"comparison": comparison, "vs": vs, "n_models": len(deltas), "mean_delta": mean, "lo": lo, "hi": hi,
           "same_sign": same, "holds": same and all(p < 0.05 for p in p_holm)}
    for k, (d, p) in enumerate(zip(deltas, p_holm)):
        row[f"delta_seed_{k}"], row[f"p_holm_seed_{k}"] = d, p
    base = {"comparison": "reproduce/tome_r13", "vs": "baseline/base", "n_models": len(deltas), "mean_delta": 0.1,
            "lo": -1.0, "hi": 1.0, "same_sign": False, "holds": False,
            **{f"delta_seed_{k}": 0.1 for k in range(len(deltas))}}
    return pd.DataFrame([base, row])


def test_with_several_models_the_conclusion_answers_from_what_holds_on_every_model():
    # the main model alone says ToMe loses less (a significant loss of ours), the other models disagree:
    # the conclusion must not turn the main model's result into an answer
    e = _early([("L0-2", 13, "hquota_ff", -2.13, -3.0, -1.2, 1e-4, 0.004, 0.04)])
    assert "ToMe loses less than hquota" in findings.conclusion(e, None)
    rep = _replication([-2.13, 0.40, -0.07], [1e-4, 0.3, 1.0])
    c = findings.conclusion(e, None, rep)
    assert "loses less" not in c.replace("does not say which loses less", "")
    assert "the models disagree" in c and "per model -2.13 / +0.40 / -0.07" in c
    assert r"hquota\_ff\_L0-2\_r13 minus tome\_L0-2\_r13 is -0.60\,pp on average over the 3 models" in c
    # when every model agrees and each difference is significant, the answer names the winner
    rep = _replication([-2.0, -1.5, -1.0], [1e-4, 1e-3, 1e-2])
    assert r"tome\_L0-2\_r13 loses less than hquota\_ff\_L0-2\_r13 on every model" in findings.conclusion(e, None, rep)
    rep = _replication([-2.0, -1.5, -1.0], [1e-4, 1e-3, 0.2])
    assert "the sign agrees, but not every model" in findings.conclusion(e, None, rep)
    # a tie on one model and one sign on the others is not a disagreement
    rep = _replication([-2.0, 0.0, -1.0], [1e-4, 1.0, 1e-2])
    assert "it is 0 on some model" in findings.conclusion(e, None, rep)
    # (ii) from the full-network comparison; the comparison with the baseline answers neither question
    rep = _replication([0.5, 0.6, 0.7], [1e-3] * 3, vs="reproduce/tome_r13", comparison="full/ours_size_norm_uniform")
    c = findings.conclusion(e, None, rep)
    assert c.startswith("(i) At equal $r$ in early blocks, on this run")  # no repeated early comparison
    assert r"(ii) At equal GFLOPs over the whole network, ours\_size\_norm\_uniform minus tome\_r13" in c
    assert r"ours\_size\_norm\_uniform loses less than tome\_r13 on every model" in c
    # one model: nothing to repeat, the main model's tables answer
    assert findings.conclusion(e, None, _replication([-2.13], [1e-4])) == findings.conclusion(e, None)
