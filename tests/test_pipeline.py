"""Real Snakemake runs of the whole DAG: micro profile end to end, caching, re-runs, lint, the paper
profile on a tiny ImageNet-format folder with weights served over loopback HTTP, and bad configs."""
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tokred.report import tables

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args, check=True, env=None):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "8", *args]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    out = p.stdout + p.stderr
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{out[-6000:]}")
    return p.returncode, out


def job_counts(dry_run_output: str) -> dict:
    """Parse the 'Job stats' table of a dry run: rule -> count."""
    m = re.search(r"Job stats:\n(.*?)\n\n", dry_run_output + "\n\n", re.S)
    if not m:
        return {}
    counts = {}
    for line in m.group(1).splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2 and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


DELETE = object()


def write_config(path: Path, base: str, **overrides) -> Path:
    """A config file: `base` with dotted-key overrides (value DELETE removes the key)."""
    cfg = yaml.safe_load((ROOT / "config" / base).read_text())
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("micro")
    cfg = write_config(tmp / "micro.yaml", "micro.yaml", results_dir=str(tmp / "results"))
    _, out = snakemake("--configfile", str(cfg))
    (tmp / "run.log").write_text(out)
    return tmp, cfg


def job_intervals(log: str) -> list[tuple[str, float, float]]:
    """(rule, start, end) of every job from a Snakemake run's output (timestamps to the second)."""
    from datetime import datetime

    now, starts, jobs, pending = None, {}, [], None
    for line in log.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", line):
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif m := re.fullmatch(r"(?:local)?rule (\w+):", line):
            pending = (m.group(1), now)
        elif (m := re.fullmatch(r"jobid: (\d+)", line)) and pending:
            starts[m.group(1)], pending = pending, None
        elif m := re.fullmatch(r"Finished jobid: (\d+) \(Rule: (\w+)\)", line):
            rule, t0 = starts.pop(m.group(1))
            jobs.append((rule, t0, now))
    return jobs


def test_micro_end_to_end_pdf_shows_table_numbers(micro):
    tmp, _ = micro
    res = tmp / "results"
    pdf = res / "paper" / "paper.pdf"
    assert pdf.stat().st_size > 10_000
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    table = pd.read_csv(res / "tables" / "reproduce.csv")
    assert list(table.run) == ["base", "tome_r0", "tome_r4", "tome_r13", "tome_r16"]
    for _, row in table.iterrows():
        assert f"{row.gflops:.3f}" in text and f"{row.top1:.2f}" in text
    # GFLOPs fall with r and every run carries provenance
    assert table.gflops.iloc[1:].is_monotonic_decreasing
    m = yaml.safe_load((res / "runs" / "reproduce" / "tome_r13" / "metrics.json").read_text())
    assert m["provenance"]["config_hash"] and m["provenance"]["torch"] and m["resolved_r"] == [13] * 12
    assert "??" not in text  # every macro the text uses is defined
    early = pd.read_csv(res / "tables" / "early.csv")
    # ours_size_norm in L0 and L0-2, hquota_ff only in L0-2, ToMe alone in L1 (method_layers), each at r = 13, 28
    assert len(early) == 8 and set(early.layers) == {"L0", "L1", "L0-2"}
    assert set(early[early.method == "hquota_ff"].layers) == {"L0-2"}
    alone = early[early.method.isna()]
    assert set(alone.layers) == {"L1"} and alone.kl_ours.isna().all() and alone.kl_tome.notna().all()
    assert text.count("ToMe only") == 2
    for r in early.dropna(subset=["method"]).itertuples():
        assert f"{r.top1_ours:.2f}" in text and tables._kl(r.kl_ours) in text
    full = pd.read_csv(res / "tables" / "full.csv")
    matched = full[(full.method != "tome") & full.keep_shape.notna()]
    assert (abs(matched.gflops / full[full.method == "tome"].gflops.iloc[0] - 1) < 0.01).all()
    abl = pd.read_csv(res / "tables" / "ablations.csv")
    assert set(abl.run) == {"ours_size_norm_ref", "space_x", "q_0.4", "kv_only", "clip_1.0"}
    # the ablations' reference is ours at ToMe's constant r of the full group: evaluated once, copied
    runs = res / "runs"
    ref, const = (json.loads((runs / p / "metrics.json").read_text())
                  for p in ("ablations/ours_size_norm_ref", "full/ours_size_norm_r13"))
    assert ref.pop("same_as") == "full/ours_size_norm_r13" and (ref.pop("run"), ref.pop("group")) == (
        "ours_size_norm_ref", "ablations")
    assert ref == {k: v for k, v in const.items() if k not in ("run", "group")}
    assert (runs / "ablations/ours_size_norm_ref/logits.pt").read_bytes() == (
        runs / "full/ours_size_norm_r13/logits.pt").read_bytes()
    assert not (res / "benchmarks" / "evaluate" / "ablations" / "ours_size_norm_ref.tsv").exists()
    variants = abl[abl.run != "ours_size_norm_ref"]
    assert (variants.ref_run == "ours_size_norm_ref").all() and variants.p_vs_ref.notna().all()
    assert abl.set_index("run").clip_fired.notna().to_dict() == {"ours_size_norm_ref": True, "space_x": True,
                                                                 "q_0.4": True, "kv_only": False, "clip_1.0": True}
    assert "Whether each component acts" in text and "kv" in text
    check_early_regime_tables(res, text)
    for name in ("Early-layer reduction", "Full-layer schedules", "Ablations"):
        assert name in text
    for fig in ("top1_vs_gflops.pdf", "top1_vs_gflops.png"):
        assert (res / "figures" / fig).stat().st_size > 1000
    assert (res / "logs" / "train_embedded.log").read_text().strip()


def check_early_regime_tables(res: Path, text: str) -> None:
    """The early regime's tables of a finished micro run, and that the PDF shows their numbers."""
    head = pd.read_csv(res / "tables" / "headline.csv")
    assert list(head.row) == ["tome", "hquota_ff", "difference"] * 2 and set(head.r) == {13, 28}
    for r in (13, 28):
        h = head[head.r == r].set_index("row")
        assert h.loc["difference", "top1"] == pytest.approx(h.loc["hquota_ff", "top1"] - h.loc["tome", "top1"])
        assert (h.kl_lo <= h.kl + 1e-12).all() and (h.kl <= h.kl_hi + 1e-12).all()
        assert 0 <= h.loc["difference", "p_top1"] <= 1
        assert tables._kl(h.loc["hquota_ff", "kl"]) in text
        # a run's Top-1 interval is the one of its metrics JSON (one bootstrap, every table)
        for row in ("tome", "hquota_ff"):
            m = yaml.safe_load((res / "runs" / "early" / h.loc[row, "run"] / "metrics.json").read_text())
            assert [h.loc[row, "top1_lo"], h.loc[row, "top1_hi"]] == pytest.approx(m["top1_ci95"], abs=1e-4)
    # ToMe under ours' schedule removes exactly ours' tokens per block, and costs less (no attention matrix)
    runs = res / "runs" / "full"
    ours, tome = (yaml.safe_load((runs / n / "metrics.json").read_text())
                  for n in ("ours_size_norm_fixed_early_mid_late", "tome_fixed_early_mid_late"))
    assert ours["resolved_r"] == tome["resolved_r"] and tome["gflops"] < ours["gflops"]
    sched = yaml.safe_load((res / "schedules" / "ours_size_norm-fixed_early_mid_late-tome_r13.json").read_text())
    assert sched["resolved_r"] == ours["resolved_r"] and sched["resolved_r"][-3:] == [0, 0, 0]
    assert abs(sched["kept"][2] - 0.67 * sched["num_patches"]) <= 2
    sel = pd.read_csv(res / "tables" / "selector.csv")
    assert list(sel.schedule) == ["constant r=13", "fixed_early_mid_late"] and sel.p_selector.notna().all()
    assert pd.isna(sel.delta_schedule_ours.iloc[0]) and sel.p_schedule_ours.iloc[1:].notna().all()
    kept = pd.read_csv(res / "tables" / "schedules.csv").set_index("schedule")
    assert kept.loc["constant r=13", "after_block_11"] == sched["num_patches"] - 13 * 12
    assert kept.loc["fixed_early_mid_late"].filter(like="after_block").tolist() == sched["kept"]
    abl = pd.read_csv(res / "tables" / "ablations_early.csv")
    assert set(abl.run) == {"hquota_ff_L0-2_ref", "q_0.4_L0-2"}
    assert abl.set_index("run").loc["q_0.4_L0-2", "ref_run"] == "hquota_ff_L0-2_ref"
    for name in ("The early regime", "Ablations in the early regime", "Selector against schedule"):
        assert name in text


def test_micro_ood_variants_paired_tests_tail_delta_and_holm(micro):
    """The OOD variants run on ours' schedule and are tested against ours under every condition; ours is
    tested against ToMe under every condition; tail Δ is in every metrics JSON; stars are Holm's."""
    import json

    tmp, cfg = micro
    res = tmp / "results"
    micro_cfg = yaml.safe_load(cfg.read_text())
    conds = ["clean"] + [f"{c}-{s}" for c in micro_cfg["experiments"]["ood"]["corruptions"]
                         for s in micro_cfg["experiments"]["ood"]["severities"]]
    variants = [f"{v}_matched" for v in micro_cfg["experiments"]["ood"]["variants"]]
    ref = json.loads((res / "ood" / "clean" / "ours_size_norm_matched" / "metrics.json").read_text())
    for v in variants:
        m = json.loads((res / "ood" / "clean" / v / "metrics.json").read_text())
        assert m["schedule"] == ref["schedule"] and m["overrides"] and m["method"] == ref["method"]
    blur = json.loads((res / "ood" / "gaussian_blur-5" / "base" / "metrics.json").read_text())
    assert blur["image_side"] == 112 and blur["corruption_param"] == 3.0  # ImageNet-C's 6 px at 224 px
    vs_tome = pd.read_csv(res / "tables" / "ood_vs_tome.csv")
    assert sorted(vs_tome.condition) == sorted(conds) and set(vs_tome.partner) == {"tome_r13"}
    var = pd.read_csv(res / "tables" / "ood_variants.csv")
    assert len(var) == len(conds) * len(variants) and set(var.partner) == {"ours_size_norm_matched"}
    for t in (vs_tome, var):
        from statsmodels.stats.multitest import multipletests

        ok = t[~t.floor]  # the micro model may be at chance level everywhere: then nothing is tested
        assert ok.empty or np.allclose(ok.p_holm, multipletests(ok.p, method="holm")[1])
        assert t[t.floor].p_holm.isna().all()
    for group, run in [("reproduce", "tome_r13"), ("ablations", "space_x"), ("early", "ours_size_norm_L0_r13")]:
        m = json.loads((res / "runs" / group / run / "metrics.json").read_text())
        lo, hi = m["tail_drop_ci95"]
        assert lo <= m["tail_drop_pp"] <= hi and m["tail_images"] == -(-m["n_images"] // 10)
    text = subprocess.run(["pdftotext", "-layout", str(res / "paper" / "paper.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "Holm" in text and "Chance level" in text and "Tail" in text and "??" not in text
    assert "scaled to these 112 px images" in " ".join(text.split())


def test_timing_jobs_never_overlap_other_jobs(micro):
    """Profiling jobs claim every core: with --cores 8 nothing ran beside them."""
    tmp, _ = micro
    jobs = job_intervals((tmp / "run.log").read_text())
    assert len(jobs) > 30
    prof = [j for j in jobs if j[0].startswith("time_")]
    assert len(prof) == 3
    for rule, a0, a1 in prof:
        for other, b0, b1 in jobs:
            if (other, b0, b1) != (rule, a0, a1) and other != "all":
                assert not (b0 < a1 and a0 < b1), f"{other} ran during {rule}"


def test_second_run_does_nothing(micro):
    _, cfg = micro
    _, out = snakemake("--configfile", str(cfg))
    assert "Nothing to be done" in out


def test_html_report_has_every_figure_with_its_caption(micro):
    import zipfile

    tmp, cfg = micro
    snakemake("--configfile", str(cfg), "--report", str(tmp / "report.zip"))
    with zipfile.ZipFile(tmp / "report.zip") as z:
        names = z.namelist()
        pngs = {Path(n).name for n in names if n.endswith(".png")}
        assert {"merges.png", "top1_vs_gflops.png", "pareto.png", "latency.png", "token_sweep.png",
                "ood_gaussian_noise.png"} <= pngs
        html = "".join(z.read(n).decode("utf-8", "ignore") for n in names if n.endswith((".html", ".js")))
    assert "trace_source" in html  # the merges caption (report/merges.rst)


def test_slurm_requests_from_the_runs_benchmark_files(micro):
    """tools/slurm_resources.py: every measured rule gets mem_mb >= its largest RSS and runtime >= its
    longest wall time, in a profile that keeps the other per-rule keys of profiles/slurm."""
    import pandas as pd

    tmp, _ = micro
    bench, out = tmp / "results" / "benchmarks", tmp / "slurm-measured"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "slurm_resources.py"), str(bench), "--out", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    prof = yaml.safe_load((out / "config.yaml").read_text())
    base = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    rules = {f.relative_to(bench).parts[0].removesuffix(".tsv") for f in bench.rglob("*.tsv")}
    assert {"train_embedded", "evaluate", "evaluate_ood", "time_latency"} <= rules
    for rule in rules:
        files = [bench / f"{rule}.tsv"] if (bench / f"{rule}.tsv").exists() else list((bench / rule).rglob("*.tsv"))
        t = pd.concat([pd.read_csv(f, sep="\t") for f in files])
        req = prof["set-resources"][rule]
        assert req["mem_mb"] >= t["max_rss"].max() and req["runtime"] * 60 >= t["s"].max(), (rule, req)
    assert prof["set-resources"]["time_latency"]["slurm_extra"] == base["set-resources"]["time_latency"]["slurm_extra"]
    assert {k: v for k, v in prof.items() if k != "set-resources"} == {k: v for k, v in base.items() if k != "set-resources"}
    empty = subprocess.run([sys.executable, str(ROOT / "tools" / "slurm_resources.py"), str(out)],
                           capture_output=True, text=True)
    assert empty.returncode != 0 and str(out) in empty.stderr


def test_changing_one_r_reruns_only_that_run(micro):
    tmp, _ = micro
    cfg = write_config(tmp / "changed.yaml", "micro.yaml", results_dir=str(tmp / "results"),
                       **{"experiments.reproduce.r": [0, 4, 13, 17]})
    _, out = snakemake("--configfile", str(cfg), "-n")
    # the r-sweep figure, the overview (Pareto, macros) and the GFLOPs-vs-latency study read every
    # run; nothing else reruns
    assert job_counts(out) == {"evaluate": 1, "report_reproduce": 1, "report_figures_early": 1,
                               "report_overview": 1, "time_runs": 1, "report_systems": 1, "report_fidelity": 1,
                               "report_findings": 1, "paper": 1, "all": 1}
    assert "tome_r17" in out


def test_lint_is_clean():
    code, out = snakemake("--lint", check=False)
    assert code == 0, out
    assert "Lints for" not in out, out


def test_dry_run_embedded_default_is_fast_and_complete(tmp_path):
    # the default config as shipped, in an empty results folder (a local results/ may be finished)
    cfg = write_config(tmp_path / "default.yaml", "config.yaml", results_dir=str(tmp_path / "results"))
    _, out = snakemake("--configfile", str(cfg), "-n")
    counts = job_counts(out)
    assert counts["train_embedded"] == 1 and counts["paper"] == 1
    # baseline + 2 ToMe r + early ToMe in 4 layer sets at r=13 + ours_size_norm and hquota_ff in L0-2 + 2 full
    # keep shapes + ToMe under one of them + ours at constant r + 2 ablations (their reference is ours at
    # constant r: copied, not evaluated) + 2 more trained models x (their baseline + 6 repeated runs)
    assert counts["evaluate"] == 1 + 2 + 4 + 2 + 2 + 1 + 1 + 2 + 2 * 7 and counts["copy_run"] == 1
    assert counts["train_replicate"] == 2 and counts["report_replication"] == 1
    # OOD: clean + 1 corruption x 2 severities, one job each; matched schedules solved once each
    assert counts["evaluate_ood"] == 3 and counts["solve_schedule"] == 2
    assert counts["report_headline"] == 1 and counts["report_schedules"] == 1
    assert all(counts[r] == 1 for r in ("time_latency", "time_runs", "time_tokens", "report_systems"))


def test_full_grid_extends_the_default(tmp_path):
    # embedded_full.yaml = the default's weights and eval set (same keys, same results_dir) + more runs
    default, full = (yaml.safe_load((ROOT / "config" / f).read_text()) for f in ("config.yaml", "embedded_full.yaml"))
    for key in ("results_dir", "seed", "model", "task", "train", "data", "eval"):
        assert default[key] == full[key], key
    cfg = write_config(tmp_path / "full.yaml", "embedded_full.yaml", results_dir=str(tmp_path / "results"))
    counts = job_counts(snakemake("--configfile", str(cfg), "-n")[1])
    # + hquota_ff 4 layer sets x 5 r, a 4th keep shape, ToMe under all 4, ours at constant r (= the ablations'
    # reference, copied), 8 early ablations (their reference = hquota_ff at L0-2 r=28, copied), 2 more trained
    # models x 8 runs
    assert counts["evaluate"] == 1 + 5 + 40 + 20 + 4 + 4 + 1 + 27 + 7 + 16 and counts["evaluate_ood"] == 16
    assert counts["copy_run"] == 2


@pytest.mark.parametrize("override, needle", [
    ({"eval.batch_sise": 4}, "batch_sise"),
    ({"eval.batch_size": "many"}, "batch_size"),
    ({"experiments.reproduce.r": [13, -1]}, "-1"),
    ({"task.radius_minimum": 3}, "radius_minimum"),
])
def test_bad_config_fails_naming_the_key(tmp_path, override, needle):
    cfg = write_config(tmp_path / "bad.yaml", "micro.yaml", results_dir=str(tmp_path / "r"), **override)
    code, out = snakemake("--configfile", str(cfg), "-n", check=False)
    assert code != 0 and needle in out, out[-3000:]
    assert not (tmp_path / "r").exists()


def test_missing_dataset_path_fails_before_any_job(tmp_path):
    cfg = write_config(tmp_path / "im.yaml", "imagenet.yaml", results_dir=str(tmp_path / "r"),
                       **{"data.imagenet_val": str(tmp_path / "nowhere")})
    code, out = snakemake("--configfile", str(cfg), "-n", check=False)
    assert code != 0 and "data.imagenet_val" in out and "nowhere" in out
    assert not (tmp_path / "r").exists()


# --- paper profile, for real, offline ------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def hub(tmp_path):
    """A loopback HTTP server standing in for the hub, serving DeiT-S weights the test writes."""
    import timm
    import torch
    from safetensors.torch import save_file

    root = tmp_path / "hub"
    target = root / "timm" / "deit_small_patch16_224.fb_in1k" / "resolve" / "main" / "model.safetensors"
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target))
    handler = lambda *a, **kw: _Quiet(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _jpegs(folder: Path, rng, n: int = 2, size=(250, 300)) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[0] + 10 * i, size[1], 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")


def test_paper_profile_end_to_end_on_loopback(tmp_path, hub):
    rng = np.random.default_rng(0)
    wnids = ("n01440764", "n01443537", "n01484850")
    val, v2, im_r, im_c = (tmp_path / d for d in ("val", "v2", "imagenet-r", "imagenet-c"))
    for c in wnids:
        _jpegs(val / c, rng)
    for label in ("0", "2"):  # ImageNet-V2: the folder name is the label
        _jpegs(v2 / label, rng)
    for c in wnids[1:]:  # ImageNet-R: a subset of its classes, scored on ImageNet-R's 200 classes' logits
        _jpegs(im_r / c, rng)
    for c in wnids:  # ImageNet-C: pre-rendered 224 crops
        _jpegs(im_c / "gaussian_noise" / "1" / c, rng, size=(224, 224))
    cfg = write_config(tmp_path / "im.yaml", "imagenet.yaml", results_dir=str(tmp_path / "results"),
                       **{"data.imagenet_val": str(val), "data.num_classes": 3, "data.decode_workers": 0,
                          "data.imagenet_v2": str(v2), "data.imagenet_r": str(im_r), "data.imagenet_c": str(im_c),
                          "eval.threads": 2, "eval.bootstrap": 200, "eval.device": "cpu", "timing": DELETE,
                          "experiments": {"reproduce": {"method": "tome", "r": [0, 13]},
                                          "ood": {"target_r": 13, "methods": ["ours_size_norm"],
                                                  "corruptions": ["gaussian_noise"], "severities": [1],
                                                  "images": 6, "imagenet_c_corruptions": ["gaussian_noise"]}}})
    snakemake("--configfile", str(cfg), env={"HF_ENDPOINT": hub})
    res = tmp_path / "results"
    side = yaml.safe_load((res / "weights" / "model.safetensors.json").read_text())
    assert side["url"].startswith(hub) and len(side["sha256"]) == 64
    table = pd.read_csv(res / "tables" / "reproduce.csv")
    assert table.gflops.iloc[0] == pytest.approx(4.608, rel=0.005)
    assert table.set_index("run").loc["tome_r13", "gflops"] == pytest.approx(2.712, rel=0.005)
    assert table.n_images.iloc[0] == 6
    assert (res / "paper" / "paper.pdf").exists()
    # OOD: every condition has every run; V2 labels are the folder integers, R is scored on its 200 classes
    ood = pd.read_csv(res / "tables" / "ood.csv")
    assert set(ood.family) == {"clean", "gaussian_noise", "imagenet_v2", "imagenet_r", "imagenet_c-gaussian_noise"}
    assert set(ood.run) == {"base", "tome_r13", "ours_size_norm_matched"}
    import torch

    v2_labels = torch.load(res / "ood" / "imagenet_v2" / "base" / "logits.pt", weights_only=False)
    assert sorted(set(v2_labels["labels"].tolist())) == [0, 2] and v2_labels["logits"].shape == (4, 1000)
    r_out = torch.load(res / "ood" / "imagenet_r" / "base" / "logits.pt", weights_only=False)
    assert r_out["logits"].shape == (4, 200) and sorted(set(r_out["labels"].tolist())) == [0, 1]
    sched = yaml.safe_load((res / "schedules" / "ours_size_norm-uniform-tome_r13.json").read_text())
    assert sched["achieved_gflops"] == pytest.approx(sched["target_gflops"], rel=0.01)


def test_dag_build_imports_no_torch():
    """The checks the Snakefile runs while building the DAG stay light (no torch, no timm)."""
    code = ("import sys, yaml; sys.path.insert(0, 'src'); from tokred.study import config as preflight; "
            "cfg = yaml.safe_load(open('config/config.yaml')); preflight.check_config(cfg); "
            "preflight.comparisons(preflight.expand_runs(cfg)); "
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
