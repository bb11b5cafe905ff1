"""OOD evaluation helpers: ImageNet-R logit restriction and the severity-averaged OOD table."""
import numpy as np
import pandas as pd
import pytest
import torch

from tokred.study.ood import restrict_to_mask
from tokred.report.ood_tables import ood_table


def test_restrict_to_mask_scores_only_the_subset_classes():
    logits = torch.tensor([[9.0, 1.0, 2.0, 0.0], [0.0, 1.0, 5.0, 9.0]])
    labels = torch.tensor([2, 3])  # indices into the full class space
    sub, pos = restrict_to_mask(logits, labels, [1, 2])
    assert sub.tolist() == [[1.0, 2.0], [1.0, 5.0]]
    # class 3 is outside the mask: its label becomes -1 (never correct), class 2 is position 1
    assert pos.tolist() == [1, -1]
    same = restrict_to_mask(logits, labels, None)
    assert same[0] is logits and same[1] is labels


def _row(family, sev, run, method, correct, floor=False):
    c = np.asarray(correct, dtype=float)
    return {"condition": f"{family}-{sev}", "family": family, "severity": sev, "run": run, "method": method,
            "gflops": 1.0, "top1": c.mean() * 100, "top1_lo": 0, "top1_hi": 100, "drop_pp": 0, "drop_se_pp": 0,
            "kl": 0, "n_images": len(c), "correct": c, "provenance": {}, "chance": 20.0, "chance_lo": 15.0,
            "chance_hi": 25.0, "floor": floor, "tail_drop_pp": 0.0}


def test_ood_table_averages_severities_per_image_and_pairs_the_drop(tmp_path):
    rng = np.random.default_rng(0)
    base = {s: rng.random(400) < 0.8 for s in (1, 2)}
    tome = {s: base[s] & (rng.random(400) < 0.9) for s in (1, 2)}  # only ever loses images
    df = pd.DataFrame([_row("noise", s, "base", "none", base[s]) for s in (1, 2)]
                      + [_row("noise", s, "tome_r13", "tome", tome[s]) for s in (1, 2)])
    t = ood_table(df, str(tmp_path / "ood.csv"), str(tmp_path / "ood.tex"), n_boot=500).set_index("run")
    want_base = np.mean([base[1].mean(), base[2].mean()]) * 100
    want_tome = np.mean([tome[1].mean(), tome[2].mean()]) * 100
    assert t.loc["base", "top1"] == pytest.approx(want_base)
    assert t.loc["tome_r13", "drop_pp"] == pytest.approx(want_base - want_tome)
    assert t.loc["tome_r13", "drop_lo"] > 0  # a paired, one-sided loss is clearly positive
    assert t.loc["base", "top1_lo"] < want_base < t.loc["base", "top1_hi"]
    assert t.loc["base", "drop_pp"] == 0
    assert "noise" in (tmp_path / "ood.tex").read_text()


def test_ood_table_leaves_floor_level_severities_out_of_the_mean(tmp_path):
    rng = np.random.default_rng(1)
    base = {1: rng.random(300) < 0.9, 2: rng.random(300) < 0.2}  # severity 2: the model is guessing
    tome = {1: base[1] & (rng.random(300) < 0.8), 2: rng.random(300) < 0.2}
    df = pd.DataFrame([_row("blur", s, "base", "none", base[s], floor=s == 2) for s in (1, 2)]
                      + [_row("blur", s, "tome_r13", "tome", tome[s], floor=s == 2) for s in (1, 2)])
    t = ood_table(df, str(tmp_path / "ood.csv"), str(tmp_path / "ood.tex"), n_boot=200).set_index("run")
    assert t.loc["base", "top1"] == pytest.approx(base[1].mean() * 100)  # severity 1 only
    assert t.loc["tome_r13", "drop_pp"] == pytest.approx((base[1].mean() - tome[1].mean()) * 100)
    assert t.loc["tome_r13", "floor_severities"] == "2" and t.loc["tome_r13", "severities"] == 1
    tex = (tmp_path / "ood.tex").read_text()
    assert r"$^\dagger$ (sev.\ 1)" in tex and "at chance level under blur 2" in tex
    # Every severity at the floor: no headline number at all.
    df["floor"] = True
    t = ood_table(df, str(tmp_path / "ood.csv"), str(tmp_path / "ood.tex"), n_boot=200)
    assert t.top1.isna().all() and "at chance" in (tmp_path / "ood.tex").read_text()


def test_chance_level_is_the_majority_share_with_its_binomial_interval():
    from scipy.stats import binom

    from tokred.report.load import chance_level

    labels = np.repeat(np.arange(5), 40)  # balanced: 1/K
    chance, lo, hi = chance_level(labels)
    assert chance == pytest.approx(20.0)
    assert (lo, hi) == pytest.approx(tuple(100 * x / 200 for x in binom.interval(0.95, 200, 0.2)))
    assert lo < 20 < hi and hi - lo > 5  # 200 images: a guesser lands anywhere in ~±5.5 pp
    skewed = np.array([0] * 60 + [1] * 20 + [2] * 20)
    assert chance_level(skewed)[0] == pytest.approx(60.0)  # always answering class 0


def test_ood_paired_table_tests_every_condition_and_corrects_with_holm(tmp_path):
    from statsmodels.stats.multitest import multipletests

    from tokred.report.ood_tables import ood_paired_table
    from tokred.study.metrics import mcnemar

    n = 200
    ones = np.ones(n)
    ours = {  # ToMe is right everywhere; ours loses k images per condition
        "clean": 0, "noise-1": 30, "noise-2": 8, "noise-3": 100}
    rows = []
    for cond, k in ours.items():
        fam, sev = cond.split("-") if "-" in cond else (cond, 0)
        floor = cond == "noise-3"
        o = ones.copy()
        o[:k] = 0
        for run, method, c in (("base", "none", ones), ("tome_r13", "tome", ones), ("ours_matched", "ours", o)):
            r = _row(fam, int(sev), run, method, c, floor=floor)
            r["condition"] = cond
            rows.append(r)
    df = pd.DataFrame(rows)
    t = ood_paired_table(df, {"ours_matched": "tome_r13"}, str(tmp_path / "p.csv"), str(tmp_path / "p.tex"))
    t = t.set_index("condition")
    assert list(t.index) == ["clean", "noise-1", "noise-2", "noise-3"]
    for cond, k in ours.items():
        assert t.loc[cond, "delta"] == pytest.approx(-100 * k / n) and t.loc[cond, "n10"] == k
        want = mcnemar(torch.ones(n, dtype=torch.bool), torch.from_numpy(np.arange(n) >= k))["p_value"]
        assert t.loc[cond, "p"] == pytest.approx(want)
    # Holm over the three conditions above chance; the floor-level one is neither counted nor starred.
    adj = multipletests(t.p.iloc[:3].to_numpy(), method="holm")[1]
    assert t.p_holm.iloc[:3].to_numpy() == pytest.approx(adj) and np.isnan(t.loc["noise-3", "p_holm"])
    # 8 discordant images: raw p = 2/2^8 < 0.05; times 2 (Holm, second smallest of 3) still < 0.05, while
    # clean (no discordant image) gets p = 1.
    tex = (tmp_path / "p.tex").read_text()
    assert r"noise 1 & 100.0 & 100.0 & 85.0 (-15.0$^{*}$)" in tex
    assert r"noise 2 & 100.0 & 100.0 & 96.0 (-4.0$^{*}$)" in tex and r"clean & 100.0 & 100.0 & 100.0 (+0.0) \\" in tex
    assert r"noise 3$^\dagger$ & 100.0 & 100.0 & 50.0 (-50.0)" in tex  # big loss, but not starred at the floor
    assert "over the 3 tests of this table" in tex
    with pytest.raises(ValueError, match="one partner"):
        ood_paired_table(df, {"ours_matched": "tome_r13", "tome_r13": "base"}, str(tmp_path / "x.csv"),
                         str(tmp_path / "x.tex"))


def test_ood_summary_says_when_the_corruption_leaves_the_model_at_chance():
    """The OOD section's first sentence comes from the table: a mean and ToMe's change in words, or, when
    every severity is at chance level, that the profile cannot show an effect there (no '--%')."""
    import numpy as np
    import pandas as pd

    from tokred.report.macros import ood_summary

    cols = dict(family="gaussian_noise", severities=2)
    t = pd.DataFrame([{**cols, "run": "base", "method": "none", "top1": 81.5, "drop_pp": 0.0},
                      {**cols, "run": "tome_r13", "method": "tome", "top1": 82.0, "drop_pp": -0.5}])
    assert ood_summary(t) == ("Under Gaussian noise the unreduced model reaches 81.50\\% on average and ToMe has "
                              "a gain of 0.50\\,pp of Top-1 relative to it.")
    t[["top1", "drop_pp"]] = np.nan
    s = ood_summary(t)
    assert "chance level at every severity" in s and "cannot show an effect" in s and "--" not in s
