"""Bad configs that used to pass the dry run and fail only after training now fail while the DAG is
built, naming the config key (tokred.study.config.check_cross_keys)."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cfgutil import with_key

from tokred.study import config as preflight

ROOT = Path(__file__).resolve().parents[1]
MICRO = yaml.safe_load((ROOT / "config" / "micro.yaml").read_text())


def _with(path: str, value):
    return with_key(MICRO, path, value)


@pytest.mark.parametrize("key, value, words", [
    ("timing.methods", ["tome", "no_such_method"], "timing.methods"),
    ("paper.visualize.methods", ["tom"], "paper.visualize.methods"),
    ("experiments.early.layers", ["L0", "L12"], "experiments.early.layers"),
    ("experiments.early.layers", ["L0-x"], "experiments.early.layers"),
    ("experiments.ablations.r", 7, "experiments.ablations.r"),
    ("experiments.full.target_r", 5, "experiments.full.target_r"),
    ("experiments.ood.variants", ["space_x", "no_such_variant"], "experiments.ood.variants': 'no_such_variant' is not a variant"),
    ("experiments.ood.methods", ["hquota_ff"], "which is not in experiments.ood.methods"),
    # the method name is checked before the ToMe runs that the other groups read at r
    ("experiments.reproduce.method", "tomme", "experiments.reproduce.method': method 'tomme'"),
    ("train.low_res", {"img_size": 20, "steps": 2}, "train.low_res.img_size': 20 must be a multiple of model.patch_size"),
    ("train.low_res", {"img_size": 112, "steps": 2}, "train.low_res.img_size': 112 must be a multiple"),
])
def test_cross_key_mistakes_name_the_key(key, value, words):
    cfg = _with(key, value)
    assert cfg != MICRO
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        preflight.check_config(cfg)


@pytest.mark.parametrize("changes, words", [
    ({"experiments.full.target_r": 2, "experiments.full.keep_shapes": ["uniform", "early"],
      "experiments.reproduce.r": [0, 2, 13]}, "'early'.*raise target_r"),
    ({"experiments.full.target_r": 60, "experiments.full.keep_shapes": ["late"], "experiments.full.late_k": 11,
      "experiments.reproduce.r": [0, 13, 60]}, "'late'.*lower target_r"),
])
def test_unreachable_full_target_r_names_the_key(changes, words):
    cfg = copy.deepcopy(MICRO)
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    with pytest.raises(ValueError, match="experiments.full.target_r.*" + words):
        preflight.check_config(cfg)


def test_ood_variants_run_on_the_methods_schedule_against_it():
    runs = preflight.ood_runs(MICRO)
    by = {r["name"]: r for r in runs}
    ref = by["ours_size_norm_matched"]
    for v in MICRO["experiments"]["ood"]["variants"]:
        run = by[f"{v}_matched"]
        assert run["overrides"] == MICRO["experiments"]["ablations"]["variants"][v]
        assert run["match"] == ref["match"] and run["method"] == ref["method"] and run["ref"] == ref["name"]
    assert preflight.ood_comparisons(runs) == {"ours_size_norm_matched": "tome_r13", "space_x_matched": ref["name"],
                                               "q_0.4_matched": ref["name"]}
    # One solved schedule serves the method and its variants.
    assert len(preflight.matched_schedules({("ood", r["name"]): r for r in runs})) == 1


def test_shipped_configs_pass():
    for f in ("config.yaml", "micro.yaml", "embedded_full.yaml"):
        preflight.check_config(yaml.safe_load((ROOT / "config" / f).read_text()))


def test_dry_run_fails_before_any_job_naming_the_key(tmp_path):
    cfg = _with("experiments.early.layers", ["L0", "L12"])
    cfg["results_dir"] = str(tmp_path / "results")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(path)],
                       cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "experiments.early.layers" in out and "11" in out
    assert not (tmp_path / "results").exists()


def test_schema_errors_one_line_per_key():
    cfg = _with("seed", -1)
    cfg["eval"]["batch_size"] = 0
    cfg["experiments"]["early"]["r"] = [13, -2]
    with pytest.raises(ValueError) as e:
        preflight.check_schema(cfg, ROOT / "config" / "schema.yaml")
    lines = str(e.value).splitlines()
    assert len(lines) == 3, lines
    assert [ln.split("'")[1] for ln in lines] == ["eval.batch_size", "experiments.early.r[1]", "seed"]
    preflight.check_schema(MICRO, ROOT / "config" / "schema.yaml")


def test_low_res_phase_too_small_names_the_key():
    """The first phase draws the task, and the curriculum's easy images, at the low size."""
    cfg = _with("train.low_res", {"img_size": 32, "steps": 2})
    with pytest.raises(ValueError, match=r"train\.low_res\.img_size': the task does not fit at 32 px: .*too small"):
        preflight.check_config(cfg)
    cfg["task"].update(radius_min=1.5, radius_max=2.0, distractors_min=1, distractors_max=2, max_count=2,
                       shape_distractor_frac=0.0)
    cfg["train"]["curriculum"] = {"easy_start": 1.0, "decay_frac": 0.4}  # easy disks: radius 7-9
    with pytest.raises(ValueError, match=r"curriculum's easy images do not fit at 32 px: .*set train\.curriculum\.easy"):
        preflight.check_config(cfg)
    cfg["train"]["curriculum"]["easy"] = {"background": "smooth"}
    preflight.check_config(cfg)
