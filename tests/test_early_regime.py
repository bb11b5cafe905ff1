"""The early regime and the selector/schedule split (docs/method.md §3.4, §5): the notes' keep shape, the run
expansion of the new groups, their pre-flight errors, and the tables built from real runs of a tiny model."""
from pathlib import Path

import pytest
import yaml
from cfgutil import with_key

from tokred.schedule import approx_block_flops, keep_shape_ratios, resolve
from tokred.study import config as preflight

ROOT = Path(__file__).resolve().parents[1]


def _cfg(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def test_fixed_early_keep_is_not_moved_by_the_free_ratio():
    for keep in (0.0, 0.4, 1.0):
        k = keep_shape_ratios("fixed_early_mid_late", 12, keep, early_keep=0.67, late_k=3)
        assert k[:3] == pytest.approx([0.67 ** (1 / 3)] * 3) and k[3:9] == [keep] * 6 and k[9:] == [1.0] * 3
    # "input": about 67% of the 196 patches are left after block 2, whatever the middle does
    rs = resolve(12, 196, keep=keep_shape_ratios("fixed_early_mid_late", 12, 0.9))
    assert abs(196 - sum(rs[:3]) - 0.67 * 196) <= 2 and rs[9:] == [0, 0, 0]
    assert keep_shape_ratios("fixed_early_mid_late", 12, 0.5, early_keep_of="block")[:3] == [0.67] * 3
    with pytest.raises(ValueError, match="early_keep_of"):
        keep_shape_ratios("fixed_early_mid_late", 12, 0.5, early_keep_of="cumulative")
    with pytest.raises(ValueError, match="early_keep"):
        keep_shape_ratios("fixed_early_mid_late", 12, 0.5, early_keep=1.5)


def test_per_block_reading_of_the_notes_cannot_reach_tome_r13():
    # keep 0.67 in each of blocks 0-2 is cheaper than ToMe r=13 even without merging elsewhere: the
    # pre-flight says so, naming the key, before any job
    n, dim = 196, 96
    tome = approx_block_flops(n, resolve(12, n, 13), dim)
    mildest = approx_block_flops(n, resolve(12, n, keep=keep_shape_ratios("fixed_early_mid_late", 12, 1.0,
                                                                          early_keep_of="block")), dim)
    assert mildest < 0.7 * tome
    cfg = _cfg("micro.yaml")
    cfg["experiments"]["full"]["early_keep_of"] = "block"
    with pytest.raises(ValueError, match=r"experiments\.full\.target_r.*fixed_early_mid_late.*early_keep_of: input"):
        preflight.check_config(cfg)


def test_default_expansion_adds_the_early_regime_and_the_selector_split():
    cfg = _cfg("config.yaml")
    runs = preflight.expand_runs(cfg)
    early = {n for (g, n) in runs if g == "early"}
    assert "hquota_ff_L0-2_r13" in early and not any(n.startswith("hquota_ff_L0_") for n in early)
    # the early-setting ablations are in the full grid only (the default's budget)
    assert not any(g == "ablations_early" for (g, _) in runs)
    full_runs = preflight.expand_runs(_cfg("embedded_full.yaml"))
    abl = {n: s for (g, n), s in full_runs.items() if g == "ablations_early"}
    assert {"hquota_ff_L0-2_ref", "match_xnorm_L0-2"} <= set(abl)
    assert all(s["layers"] == "L0-2" and s["r"] == 28 and s["method"] == "hquota_ff" for s in abl.values())
    assert preflight.comparisons(full_runs)["match_xnorm_L0-2"] == "hquota_ff_L0-2_ref"
    # the all-layer ablations keep their names and specs (no rerun of finished runs)
    assert runs[("ablations", "size_off")] == {"name": "size_off", "group": "ablations", "method": "ours_size_norm",
                                                "overrides": {"sizes": False}, "r": 13}
    pairs = preflight.comparisons(runs)
    assert pairs["size_off"] == "ours_size_norm_ref"
    assert pairs["hquota_ff_L0-2_r13"] == "tome_L0-2_r13" and pairs["tome_fixed_early_mid_late"] == "tome_r13"
    full = {n: s for (g, n), s in runs.items() if g == "full"}
    assert full["ours_size_norm_r13"] == {"name": "ours_size_norm_r13", "group": "full", "method": "ours_size_norm",
                                          "r": 13}
    tome = full["tome_fixed_early_mid_late"]
    assert tome["method"] == "tome" and tome["schedule_of"] == "ours_size_norm"
    assert tome["match"] == full["ours_size_norm_fixed_early_mid_late"]["match"]
    assert tome["match"]["shape_kw"] == {"early_keep": 0.67, "early_keep_of": "input", "late_k": 3}
    # ToMe under ours' keep shape reuses ours' solved schedule: no extra solve job
    scheds = preflight.matched_schedules(runs)
    assert "ours_size_norm-fixed_early_mid_late-tome_r13" in scheds and not any(s.startswith("tome-") for s in scheds)
    sel = preflight.selector_pairs(runs)
    assert [p["schedule"] for p in sel] == ["constant r=13", "fixed_early_mid_late"]
    assert sel[1] == {"schedule": "fixed_early_mid_late", "ours": "ours_size_norm_fixed_early_mid_late",
                      "tome": "tome_fixed_early_mid_late", "ours_const": "ours_size_norm_r13", "tome_const": "tome_r13"}
    # the main model's grid, small enough for three trained models in the default (embedded_full.yaml: all);
    # one of its runs is the same evaluation as another and is copied, not evaluated
    assert len(runs) == 16
    assert preflight.duplicate_runs(runs) == {("ablations", "ours_size_norm_ref"): ("full", "ours_size_norm_r13")}


def test_full_grids_run_every_early_regime_run():
    for name in ("embedded_full.yaml", "imagenet.yaml"):
        runs = preflight.expand_runs(_cfg(name))
        early = {n for (g, n) in runs if g == "early"}
        assert {f"hquota_ff_{la}_r{r}" for la in ("L0", "L1", "L2", "L0-2") for r in (4, 9, 13, 20, 28)} <= early
        assert {n for (g, n) in runs if g == "ablations_early"} == {
            "hquota_ff_L0-2_ref", *(f"{v}_L0-2" for v in ("match_xnorm", "space_v", "q_0.2", "q_0.4", "eta_0.05",
                                                           "eta_0.1", "eta_0.2"))}
        assert {f"tome_{s}" for s in ("uniform", "late", "early", "fixed_early_mid_late")} | {"ours_size_norm_r13"} <= \
            {n for (g, n) in runs if g == "full"}
        assert len(preflight.selector_pairs(runs)) == 5


_with = with_key


@pytest.mark.parametrize("key, value, words", [
    ("experiments.ablations_early.layers", "L12", r"experiments\.ablations_early\.layers.*model\.depth is 12"),
    ("experiments.ablations_early.layers", "L0-x", r"experiments\.ablations_early\.layers.*cannot parse"),
    ("experiments.early.method_layers", {"hquota": ["L0-2"]}, r"experiments\.early\.method_layers\.hquota.*not in"),
    ("experiments.early.method_layers", {"hquota_ff": ["L2"]}, r"method_layers\.hquota_ff.*'L2' is not in"),
    ("experiments.early.headline", {"method": "tome", "layers": "L0-2"}, r"early\.headline\.method"),
    ("experiments.early.headline", {"method": "hquota_ff", "layers": "L0"}, r"early\.headline\.layers.*'L0'"),
    ("experiments.full.tome_keep_shapes", ["early"], r"experiments\.full\.tome_keep_shapes.*'early'"),
    ("experiments.ablations_early.variants", {"bad": {"q": 2.0}}, r"experiments\.ablations_early\.variants\.bad"),
])
def test_early_regime_mistakes_fail_in_the_preflight_naming_the_key(key, value, words):
    cfg = _with(_cfg("micro.yaml"), key, value)
    with pytest.raises(ValueError, match=words):
        preflight.check_config(cfg)
        preflight.expand_runs(cfg)


@pytest.mark.parametrize("key, value, words", [
    ("experiments.full.keep_shapes", ["uniform", "seed"], "experiments.full.keep_shapes[1]"),
    ("experiments.full.early_keep", 0, "experiments.full.early_keep"),
    ("experiments.full.early_keep_of", "cumulative", "experiments.full.early_keep_of"),
    ("experiments.ablations_early.layers", "first three", "experiments.ablations_early.layers"),
    ("experiments.early.headline", {"method": "hquota_ff"}, "experiments.early.headline"),
])
def test_early_regime_schema_errors_name_the_key(key, value, words):
    cfg = _with(_cfg("micro.yaml"), key, value)
    with pytest.raises(ValueError, match=f"config key '{words}".replace(".", r"\.").replace("[", r"\[")):
        preflight.check_schema(cfg, ROOT / "config" / "schema.yaml")


def test_shipped_configs_pass_the_schema():
    for f in ("config.yaml", "micro.yaml", "embedded_full.yaml", "imagenet.yaml"):
        preflight.check_schema(_cfg(f), ROOT / "config" / "schema.yaml")


def _dry_run(tmp_path, cfg: dict) -> str:
    import subprocess
    import sys

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(path)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return p.stdout + p.stderr


EXPECTED = ["runs/early/hquota_ff_L0-2_r13/", "runs/early/tome_L0-2_r13/",
            "runs/full/ours_size_norm_fixed_early_mid_late/",
            "runs/full/tome_fixed_early_mid_late/", "runs/full/ours_size_norm_r13/",
            "schedules/ours_size_norm-fixed_early_mid_late-tome_r13.json", "tables/headline.tex",
            "tables/selector.tex", "tables/schedules.tex",
            # ablations at every layer are kept
            "runs/ablations/ours_size_norm_ref/", "runs/ablations/size_off/"]


def test_dry_run_lists_the_early_regime_in_the_default(tmp_path):
    cfg = _cfg("config.yaml")
    cfg["results_dir"] = str(tmp_path / "results")
    out = _dry_run(tmp_path, cfg)
    for path in EXPECTED:
        assert path in out, path
    assert not (tmp_path / "results").exists()


def test_dry_run_lists_the_early_regime_in_the_paper_profile(tmp_path):
    from PIL import Image

    val = tmp_path / "val"
    for c in ("n01440764", "n01443537", "n01484850"):
        (val / c).mkdir(parents=True)
        Image.new("RGB", (256, 256)).save(val / c / "0.JPEG")
    cfg = _cfg("imagenet.yaml")
    cfg["results_dir"] = str(tmp_path / "results")
    cfg["data"].update(imagenet_val=str(val), num_classes=3)
    out = _dry_run(tmp_path, cfg)
    for path in EXPECTED + ["runs/early/hquota_ff_L1_r4/", "runs/ablations_early/eta_0.2_L0-2/", "runs/full/tome_late/",
                            "runs/ablations_early/hquota_ff_L0-2_ref/", "tables/ablations_early.tex"]:
        assert path in out, path
