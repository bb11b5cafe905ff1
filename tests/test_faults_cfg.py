"""Numbers that YAML 1.1 reads as strings (`5e-2`, `1E-3`, `.5e1`): every method knob is
type-checked (tokred.methods.Method), the schema types the ablation variants, and the config check
(tokred.study.config.check_yaml_types, run by the Snakefile before the schema) names the key and says
how to write the value. One case goes through a real `snakemake -n`."""
from __future__ import annotations

import copy
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from tokred import methods
from tokred.study import config as preflight
from tokred.methods import Method, resolve_method

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
YAML_STRINGS = ["5e-2", "1e-3", "5E-2", ".5e1", "1.0e3", "1e+3", "-2e-1", "7e-10"]


def _micro() -> dict:
    return yaml.safe_load((ROOT / "config" / "micro.yaml").read_text())


def _set(cfg: dict, key: str, value) -> dict:
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return cfg


# ---------------------------------------------------------------------------------- the hint
@pytest.mark.parametrize("text", YAML_STRINGS)
def test_yaml_loads_these_as_strings_and_the_hint_as_the_same_float(text):
    assert isinstance(yaml.safe_load(f"a: {text}")["a"], str)  # the premise (PyYAML, YAML 1.1)
    hint = methods.yaml_number_hint(text)
    forms = re.match(r"write (\S+)(?: or (\S+))? ", hint).groups()
    for form in filter(None, forms):
        loaded = yaml.safe_load(f"a: {form}")["a"]
        assert isinstance(loaded, float) and loaded == float(text), (form, hint)


def test_hint_for_integers_and_text():
    assert methods.yaml_number_hint("1e1", integer=True).startswith("write 10 ")
    assert methods.yaml_number_hint("2.0e+0", integer=True).startswith("write 2 ")
    assert "not one" in methods.yaml_number_hint("2.5", integer=True)
    assert "not text" in methods.yaml_number_hint("fast")
    assert "finite" in methods.yaml_number_hint("nan")


# ---------------------------------------------------------------------------------- Method
STRING_KNOBS = [("q", "5e-2"), ("q", ".5e1"), ("eta", "5E-2"), ("eta", "1e-3"), ("temperature", "1e-3"),
                ("temperature", ".5e1"), ("clip_tau", "5e-2"), ("topr", "2e0"), ("topr", "3")]


@pytest.mark.parametrize("key, value", STRING_KNOBS)
def test_string_knob_names_key_says_string_and_hints(key, value):
    with pytest.raises(ValueError, match=rf"method key '{key}': '{re.escape(value)}' is a string") as e:
        Method(**{key: value})
    assert "write " in str(e.value)
    # the same through the preset + overrides path that tokred.patch and the pipeline use
    with pytest.raises(ValueError, match=rf"method key '{key}'.*is a string"):
        resolve_method("ours_size_norm", **{key: value})


@pytest.mark.parametrize("i, part", [(0, "alpha"), (1, "beta0"), (2, "delta")])
@pytest.mark.parametrize("value", ["5e-2", "1E-3"])
def test_string_in_push_names_the_element(i, part, value):
    push = [0.1, 0.5, 0.5]
    push[i] = value
    with pytest.raises(ValueError, match=rf"method key 'push\[{i}\] \({part}\)': '{value}' is a string.*write"):
        Method(push=push)


@pytest.mark.parametrize("kw, needle", [
    ({"recenter": "false"}, r"'recenter': 'false' \(str\) is not a boolean; write true or false"),
    ({"prop_attn": 1}, r"'prop_attn': 1 \(int\) is not a boolean"),
    ({"q": True}, r"'q': True \(bool\) is not a number"),
    ({"q": float("nan")}, r"'q': nan is not a finite number"),
    ({"clip_tau": float("inf")}, r"'clip_tau': inf is not a finite number"),
    ({"temperature": [1.0]}, r"'temperature': \[1.0\] \(list\) is not a number"),
    ({"topr": 2.5}, r"'topr': 2.5 \(float\) is not an integer"),
    ({"topr": 0}, r"'topr': 0 outside \[1, inf\]"),
    ({"eta": 1.5}, r"'eta': 1.5 outside \[0, 1\]"),
    ({"push": "0.1,0.5,0.5"}, r"'push': expected \(alpha>=0, beta0>=0, delta\)"),
    ({"push": (0.1, -0.5, 0.5)}, r"'push\[1\] \(beta0\)': -0.5 outside"),
    ({"size_mode": False}, r"'size_mode': False is not one of"),
])
def test_every_knob_is_type_checked(kw, needle):
    with pytest.raises(ValueError, match=needle):
        Method(**kw)


def test_numeric_scalars_are_accepted_and_stored_as_python_numbers():
    torch = pytest.importorskip("torch")
    m = Method(selector="hquota_ff", q=np.float32(0.25), topr=np.int64(3), eta=np.array(0.1), clip_tau=torch.tensor(2.0),
               temperature=1, push=[0, np.float64(0.5), -1], recenter=np.bool_(True))
    assert (m.q, m.topr, m.eta, m.clip_tau, m.temperature, m.push, m.recenter) == (0.25, 3, 0.1, 2.0, 1.0,
                                                                                  (0.0, 0.5, -1.0), True)
    assert all(type(v) is float for v in (m.q, m.eta, m.clip_tau, m.temperature, *m.push))
    assert type(m.topr) is int and type(m.recenter) is bool
    assert Method(q=1) == Method(q=1.0)
    for name, preset in methods.PRESETS.items():  # the presets are valid as they are
        assert dataclasses.replace(preset) == preset, name


# ---------------------------------------------------------------------------------- schema
def test_schema_variant_knobs_are_the_method_fields():
    knobs = SCHEMA["$defs"]["method_overrides"]["properties"]
    assert set(knobs) == {f.name for f in dataclasses.fields(Method)} - {"name"}
    assert SCHEMA["$defs"]["method_overrides"]["additionalProperties"] is False
    for key, allowed in (("selector", methods.SELECTORS), ("match", methods.MATCH), ("space", methods.SPACES),
                         ("size_mode", methods.SIZE_MODES)):
        assert tuple(knobs[key]["enum"]) == allowed, key
    # what the schema accepts, Method accepts, on every shipped config's variants
    for f in ("config.yaml", "micro.yaml", "embedded_full.yaml", "imagenet.yaml"):
        cfg = yaml.safe_load((ROOT / "config" / f).read_text())
        assert not list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(cfg)), f
        for overrides in cfg["experiments"]["ablations"]["variants"].values():
            resolve_method("ours_size_norm", **overrides)


@pytest.mark.parametrize("knob, value", [("eta", "5e-2"), ("q", "1e-3"), ("temperature", ".5e1"),
                                         ("clip_tau", "5E-2"), ("topr", "2e0"), ("push", [0.1, "5e-2", 0.5]),
                                         ("recenter", "false"), ("quota", 0.3)])
def test_schema_rejects_bad_variant_knobs(knob, value):
    cfg = _set(_micro(), "experiments.ablations.variants.bad", {knob: value})
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(cfg))
    assert errors and all(list(e.absolute_path)[:4] == ["experiments", "ablations", "variants", "bad"]
                          for e in errors)


# ---------------------------------------------------------------------------------- config check
# Every kind of numeric key: method knobs in variants, r lists and single r values of the experiment
# groups, full/OOD/timing/paper numbers, training, data, eval, the free-form task and curriculum.
CONFIG_STRINGS = [
    ("experiments.ablations.variants.eta_small.eta", "5e-2", {"eta": "5e-2"}),
    ("experiments.ablations.variants.q_small.q", "1e-3", {"q": "1e-3"}),
    ("experiments.ablations.variants.t.temperature", ".5e1", {"temperature": ".5e1"}),
    ("experiments.ablations.variants.c.clip_tau", "5E-2", {"clip_tau": "5E-2"}),
    ("experiments.ablations.variants.p.push[1]", "5e-2", {"push": [0.1, "5e-2", 0.5]}),
    ("experiments.ablations.variants.k.topr", "2e0", {"topr": "2e0"}),
]
CONFIG_KEYS = [
    ("experiments.reproduce.r[1]", ["0", "1e1"], "1e1"), ("experiments.early.r[0]", ["1.3e1"], "1.3e1"),
    ("experiments.ablations.r", "1.3e1", None), ("experiments.full.target_r", "1.3e1", None),
    ("experiments.full.early_boost", "1e-1", None), ("experiments.full.late_k", "3e0", None),
    ("experiments.ood.target_r", "1.3e1", None), ("experiments.ood.severities[0]", ["1e0"], "1e0"),
    ("experiments.ood.images", "3.2e1", None), ("timing.target_r", "1.3e1", None),
    ("timing.warmup", "1e0", None), ("timing.batch_sizes[1]", [1, "4e0"], "4e0"),
    ("timing.tokens.min", "3.2e1", None), ("paper.visualize.r", "1.3e1", None),
    ("train.lr", "1e-3", None), ("train.weight_decay", "5E-2", None), ("train.curriculum.easy_start", ".5e0", None),
    ("data.eval_images", "6.4e1", None), ("eval.bootstrap", "2e2", None), ("seed", "0", None),
    ("task.radius_min", "3.5e0", None), ("task.target_sat[0]", ["7.5e-1", 0.95], "7.5e-1"),
    ("train.curriculum.easy.radius_max", "9e0", None),
]


def _dotted_set(cfg, key, value):
    return _set(cfg, re.sub(r"\[\d+\]$", "", key), value)


@pytest.mark.parametrize("key, text, variant", CONFIG_STRINGS)
def test_check_names_string_method_knobs(key, text, variant):
    name = key.split(".")[3]
    cfg = _set(_micro(), f"experiments.ablations.variants.{name}", variant)
    with pytest.raises(ValueError, match=rf"config key '{re.escape(key)}': '{re.escape(text)}' is a string, "
                                         rf"not a number; write "):
        preflight.check_yaml_types(cfg, ROOT / "config" / "schema.yaml")


@pytest.mark.parametrize("key, value, text", CONFIG_KEYS)
def test_check_names_string_numbers_anywhere(key, value, text):
    cfg = _dotted_set(_micro(), key, value)
    text = text or value
    with pytest.raises(ValueError, match=rf"config key '{re.escape(key)}': '{re.escape(text)}' is a string, "
                                         rf"not a number; write "):
        preflight.check_yaml_types(cfg, SCHEMA)


def test_check_names_a_bare_off_and_reports_every_key_at_once():
    cfg = _set(_micro(), "experiments.ablations.variants.size_off", {"size_mode": False})
    _set(cfg, "train.lr", "1e-3")
    _set(cfg, "task.img_size", "1.12e2")  # typed by the schema and a task key: reported once
    with pytest.raises(ValueError) as e:
        preflight.check_yaml_types(cfg, SCHEMA)
    lines = str(e.value).splitlines()
    assert len(lines) == 3, lines
    assert "config key 'experiments.ablations.variants.size_off.size_mode': False is a boolean" in lines[0]
    assert 'quote it (e.g. "off")' in lines[0]
    assert lines[1].startswith("config key 'task.img_size': '1.12e2' is a string, not a number; write 112 ")
    assert "config key 'train.lr': '1e-3' is a string" in lines[2]


@pytest.mark.parametrize("f", ["config.yaml", "micro.yaml", "embedded_full.yaml", "imagenet.yaml"])
def test_check_passes_the_shipped_configs(f):
    preflight.check_yaml_types(yaml.safe_load((ROOT / "config" / f).read_text()), SCHEMA)


def test_run_expansion_names_the_variant_for_any_bad_knob():
    # expand_runs (rules/common.smk) checks every variant itself, whatever ran before it
    for variant, needle in (({"eta": "5e-2"}, "'eta': '5e-2' is a string"), ({"name": "x"}, "name")):
        cfg = _set(_micro(), "experiments.ablations.variants.bad", variant)
        with pytest.raises(ValueError, match=rf"config key 'experiments.ablations.variants.bad': .*{needle}"):
            preflight.expand_runs(copy.deepcopy(cfg))


# ---------------------------------------------------------------------------------- real DAG build
@pytest.mark.parametrize("line, key", [
    ("      eta_small: {eta: 5e-2}", "experiments.ablations.variants.eta_small.eta"),
    ("      push_small: {push: [0.1, 5E-2, 0.5]}", "experiments.ablations.variants.push_small.push[1]"),
])
def test_snakemake_dry_run_names_the_key(tmp_path, line, key):
    text = (ROOT / "config" / "micro.yaml").read_text()
    text = text.replace("results_dir: results/micro", f"results_dir: {tmp_path / 'r'}")
    text = text.replace("      q_0.4: {q: 0.4}\n", "      q_0.4: {q: 0.4}\n" + line + "\n")
    assert line in text
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-n", "--configfile", str(cfg)],
                       cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-3000:]
    assert f"config key '{key}'" in out and "is a string, not a number; write 0.05 or 5.0e-2" in out, out[-3000:]
    assert "TypeError" not in out
    assert not (tmp_path / "r").exists()


def test_a_plain_number_given_as_text_points_at_configfile():
    # snakemake --config 'train={steps: 3}' hands nested values over as text; a config file would not
    cfg = _set(_micro(), "train.steps", "3")
    with pytest.raises(ValueError, match=r"'train.steps': '3' is a string.*pass it with --configfile"):
        preflight.check_yaml_types(cfg, SCHEMA)
    cfg = _set(_micro(), "train.lr", "1e-3")  # YAML 1.1 itself reads this as text: no --config hint
    with pytest.raises(ValueError) as e:
        preflight.check_yaml_types(cfg, SCHEMA)
    assert "--configfile" not in str(e.value)
