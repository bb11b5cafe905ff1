"""Methods defined in the config (`methods: {name: {base: <preset>, <knob>: value}}`) work wherever a
method name does, are validated by `Method` before any job, and reach the jobs that run the model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml

import tokred
from tokred import methods

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_registry():
    yield
    for name in set(methods.PRESETS) - methods.BUILTIN:
        del methods.PRESETS[name]


def test_a_defined_method_equals_its_base_with_the_knobs():
    methods.define_methods({"ours_v": {"base": "ours", "q": 0.4, "space": "v"}})
    torch.manual_seed(0)
    m = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=4, num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = tokred.patch(m, "ours_v", r=4)(x)
        assert m._tokred.method.name == "ours_v" and m._tokred.method.q == 0.4
        b = tokred.patch(m, "ours", r=4, q=0.4, space="v")(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("table, words", [
    ({"tome": {"base": "ours"}}, "methods.tome.*built-in"),
    ({"m": {"base": "nope"}}, "methods.m.*base 'nope'"),
    ({"m": {"q": 0.4}}, "methods.m.*base"),
    ({"m": {"base": "ours", "q": 2.0}}, "methods.m.*'q'"),
    ({"m": {"base": "ours", "eta": "5e-2"}}, "methods.m.*string"),
    ({"m": {"base": "tome", "topr": 2}}, "methods.m.*topr"),
    ({"m": {"base": "ours", "colour": 1}}, "methods.m.*unknown"),
])
def test_bad_definitions_name_the_key(table, words):
    with pytest.raises(ValueError, match=words):
        methods.define_methods(table)


def test_a_defined_method_runs_in_the_early_group(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "micro.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    cfg["methods"] = {"ours_v": {"base": "ours", "q": 0.4, "space": "v"}}
    cfg["experiments"]["early"]["methods"] = ["tome", "ours_v"]
    for key in ("method_layers", "headline"):  # they name hquota_ff, which this early group drops
        cfg["experiments"]["early"].pop(key, None)
    cfg["experiments"].pop("replicate")  # it names early runs of ours_size_norm
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    layers, r = cfg["experiments"]["early"]["layers"][0], cfg["experiments"]["early"]["r"][0]
    target = tmp_path / "results" / "runs" / "early" / f"ours_v_{layers}_r{r}" / "metrics.json"
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(path), "--", str(target)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    mc = json.loads(target.read_text())["method_config"]
    assert (mc["name"], mc["q"], mc["space"], mc["size_mode"]) == ("ours_v", 0.4, "v", "norm")
