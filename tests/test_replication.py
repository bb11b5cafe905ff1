"""experiments.replicate: the run expansion for more trained models, its pre-flight errors, and the table
that says which comparison holds on every model (tokred.report.replication)."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from cfgutil import with_key
from tokred.report.replication import across_models, replication_table
from tokred.study import config as preflight

ROOT = Path(__file__).resolve().parents[1]
MICRO = yaml.safe_load((ROOT / "config" / "micro.yaml").read_text())


def test_micro_replicate_expands_one_group_per_seed_with_its_own_baseline():
    runs = preflight.expand_runs(MICRO)
    pairs = preflight.replicate_pairs(MICRO, runs)
    assert pairs == {"reproduce/tome_r13": "baseline/base", "early/tome_L0-2_r13": "baseline/base",
                     "early/ours_size_norm_L0-2_r13": "early/tome_L0-2_r13",
                     "full/ours_size_norm_uniform": "reproduce/tome_r13"}
    seed_runs = preflight.replicate_runs(MICRO, runs)
    assert set(seed_runs) == {("seed1", n) for n in ("base", "tome_r13", "tome_L0-2_r13", "ours_size_norm_L0-2_r13",
                                                     "ours_size_norm_uniform")}
    assert all(s["train_seed"] == 1 and s["group"] == "seed1" for s in seed_runs.values())
    assert seed_runs[("seed1", "base")]["method"] is None
    # the same run as the main model's, on other weights
    spec = seed_runs[("seed1", "ours_size_norm_uniform")]
    assert spec["match"] == runs[("full", "ours_size_norm_uniform")]["match"] and spec["main_group"] == "full"


@pytest.mark.parametrize("key, value, words", [
    ("experiments.replicate.runs", ["early/nope"], "experiments.replicate.runs.*'early/nope' is not a run"),
    ("experiments.replicate.runs", ["early/ours_size_norm_L0-2_r13"], "compared with 'early/tome_L0-2_r13'.*add it"),
    ("experiments.replicate.train_seeds", [0, 1], "train_seeds.*main model's seed"),
    ("model.source", "hub", "only the embedded profile trains"),
])
def test_replicate_errors_name_the_key(key, value, words):
    cfg = with_key(MICRO, key, value)
    with pytest.raises(ValueError, match=words):
        preflight.replicate_pairs(cfg, preflight.expand_runs(MICRO))


def _model(tmp: Path, label: str, acc: dict[str, torch.Tensor], labels: torch.Tensor) -> tuple[str, dict]:
    """A model's runs as the evaluation jobs write them: metrics.json + logits.pt (logits from correctness)."""
    runs = {}
    for item, correct in acc.items():
        d = tmp / label / item
        d.mkdir(parents=True)
        logits = torch.zeros(len(labels), 2)
        logits[torch.arange(len(labels)), torch.where(correct, labels, 1 - labels)] = 1.0
        torch.save({"logits": logits}, d / "logits.pt")
        (d / "metrics.json").write_text(json.dumps({"kl": 0.01, "gflops": 1.0}))
        runs[item] = str(d / "metrics.json")
    return label, runs


def test_a_row_holds_only_when_every_model_agrees_and_is_significant(tmp_path):
    n = 400
    labels = torch.zeros(n, dtype=torch.long)
    base = torch.ones(n, dtype=torch.bool)

    def wrong(k):  # the first k images wrong
        c = base.clone()
        c[:k] = False
        return c

    pairs = {"reproduce/tome_r13": "baseline/base", "early/ours": "early/tome"}
    models = [
        _model(tmp_path, "seed 0", {"baseline/base": base, "reproduce/tome_r13": wrong(40), "early/tome": wrong(10),
                                    "early/ours": wrong(2)}, labels),
        _model(tmp_path, "seed 1", {"baseline/base": base, "reproduce/tome_r13": wrong(30), "early/tome": wrong(2),
                                    "early/ours": wrong(12)}, labels),
        _model(tmp_path, "seed 2", {"baseline/base": base, "reproduce/tome_r13": wrong(50), "early/tome": wrong(5),
                                    "early/ours": wrong(5)}, labels),
    ]
    out = [str(tmp_path / f) for f in ("r.csv", "r.tex", "m.tex")]
    df = replication_table(models, pairs, labels, *out).set_index("comparison")
    tome = df.loc["reproduce/tome_r13"]
    assert tome["holds"] and tome["same_sign"]
    assert tome["mean_delta"] == pytest.approx(-100 * 40 / n)
    assert [tome[f"delta_seed_{i}"] for i in range(3)] == pytest.approx([-10.0, -7.5, -12.5])
    assert tome["lo"] < tome["mean_delta"] < tome["hi"] < 0
    ours = df.loc["early/ours"]
    assert not ours["holds"] and not ours["same_sign"]  # +2, -2.5, 0 pp: the models disagree
    assert pd.read_csv(out[0]).shape[0] == 2
    tex, macros = Path(out[1]).read_text(), Path(out[2]).read_text()
    assert tex.count(r"\checkmark") == 1 and r"\gdef\replicationnote" in tex
    assert "1 of the 2 repeated comparisons hold" in macros and "sign differs" in macros


def test_across_models_interval_is_students_t():
    mean, lo, hi = across_models([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-6)
    assert math.isnan(across_models([1.0])[1])


def test_the_conclusion_names_what_holds_and_what_does_not():
    from tokred.report.findings import replication_conclusion

    rep = pd.DataFrame({"comparison": ["reproduce/tome_r13", "early/ours_size_norm_L0-2_r13"],
                        "vs": ["baseline/base", "early/tome_L0-2_r13"], "n_models": [3, 3], "holds": [True, False]})
    s = replication_conclusion(rep)
    assert s.startswith("Across the 3 trained models, 1 of the 2 repeated comparisons hold on every model "
                        r"(tome\_r13 vs the baseline)")
    assert r"ours\_size\_norm\_L0-2\_r13 vs tome\_L0-2\_r13 does not" in s
    assert "do not" not in replication_conclusion(rep.assign(holds=[True, True]))
