"""Multiplicity correction of the tables' stars (Holm, against statsmodels) and tail Δ in the tables."""
import json

import numpy as np
import pandas as pd
import pytest

from tokred.report import tables


def test_holm_matches_the_definition_and_statsmodels_and_skips_nan():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.005]
    # By hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06.
    assert tables.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    q = rng.random(30) ** 3
    assert tables.holm(q).to_numpy() == pytest.approx(multipletests(q, method="holm")[1])
    # NaN (a row without a test, e.g. the reference) is not part of the family.
    adj = tables.holm(pd.Series([np.nan, 0.01, 0.04], index=[7, 8, 9]))
    assert np.isnan(adj[7]) and adj[[8, 9]].tolist() == pytest.approx([0.02, 0.04])
    assert tables.holm([]).empty


def test_stars_follow_holm_not_the_raw_p_and_the_note_counts_the_tests():
    # Two comparisons at raw p = 0.03 and 0.04: each below 5%, neither after Holm (0.06, 0.06).
    adj = tables.holm([0.03, 0.04])
    assert [tables._star(p) for p in adj] == ["", ""]
    assert tables._star(tables.holm([0.03])[0]) == r"$^{*}$"
    assert "over the 2 tests of this table" in tables.holm_note([0.03, np.nan, 0.04])
    assert "No paired test" in tables.holm_note([np.nan])


def _metrics(tmp_path, run, group, method, r, top1, p, tail, schedule=None):
    d = tmp_path / run
    d.mkdir()
    m = {"run": run, "group": group, "method": method, "schedule": schedule or ({"r": r} if r is not None else {}),
         "gflops": 4.0 - (r or 0) / 10, "rel_cost": 1.0, "top1": top1, "top1_ci95": [top1 - 1, top1 + 1],
         "drop_pp": 90 - top1, "drop_se_pp": 0.5, "kl": 0.01, "delta_margin": -0.1, "agreement": 99.0,
         "mcnemar_vs_base": {"p_value": p}, "n_images": 1000, "tail_drop_pp": tail[0],
         "tail_drop_ci95": list(tail[1:]), "provenance": {}}
    (d / "metrics.json").write_text(json.dumps(m))
    return d / "metrics.json"


def test_reproduce_table_shows_tail_delta_beside_the_drop_and_holm_stars(tmp_path):
    from tokred.report.load import load_metrics

    paths = [_metrics(tmp_path, "base", "baseline", "none", None, 90.0, 1.0, (0.0, 0.0, 0.0)),
             _metrics(tmp_path, "tome_r4", "reproduce", "tome", 4, 89.0, 0.03, (3.0, -1.0, 7.0)),
             _metrics(tmp_path, "tome_r13", "reproduce", "tome", 13, 87.0, 0.04, (12.5, 6.0, 19.0))]
    df = load_metrics(paths)
    t = tables.reproduce_table(df, str(tmp_path / "t.csv"), str(tmp_path / "t.tex")).set_index("run")
    assert t.loc["tome_r13", "p_holm"] == pytest.approx(0.06) and np.isnan(t.loc["base", "p_holm"])
    tex = (tmp_path / "t.tex").read_text()
    assert r"3.00 $\pm$ 0.50 & 12.5 [6.0, 19.0] &" in tex  # no star: p = 0.04 is 0.06 after Holm
    assert "Tail $\\Delta$" in tex and "over the 2 tests of this table" in tex
    csv = pd.read_csv(tmp_path / "t.csv").set_index("run")
    assert csv.loc["tome_r13", ["tail_drop_pp", "tail_lo", "tail_hi"]].tolist() == [12.5, 6.0, 19.0]
