"""eval.device: resolution and its errors, fp32 numerics, the evaluation paths on the CPU (bit-identical
to a plain model(x) loop), a CUDA config failing at the job's first line on a machine without CUDA,
and the GPU request Snakemake sees for the jobs that run the model. The CUDA-only tests run where a
GPU is visible (CPU and CUDA logits agree; CUDA runs repeat bit for bit)."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml

import tokred
from tokred.models import EMBEDDED_MEAN, EMBEDDED_STD, create_embedded_model, normalize
from tokred.study.device import eval_device, exact_fp32, resolve_device
from tokred.study.runner import compute_logits

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
no_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the failure on a machine without CUDA")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


def _model(method=None, r=13):
    torch.manual_seed(0)
    m = create_embedded_model(5, embed_dim=24).eval()
    return tokred.patch(m, method, r=r) if method else m


def _eval_set(n=12):
    images = torch.randint(0, 256, (n, 3, 112, 112), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return {"images": images, "labels": torch.arange(n) % 5, "mean": EMBEDDED_MEAN, "std": EMBEDDED_STD}


# ------------------------------------------------------------------------------- resolution
@pytest.mark.parametrize("spec", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda0", "cpu:0", " cpu", "", None, 0])
def test_malformed_device_names_the_key(spec):
    with pytest.raises(ValueError, match=r"config key 'eval.device': .* is not a device; write cpu, cuda or cuda:N"):
        resolve_device(spec)


def test_cpu_resolves_and_is_the_default():
    assert resolve_device("cpu") == torch.device("cpu")
    assert eval_device({"eval": {"batch_size": 4}}) == torch.device("cpu")
    assert eval_device({"eval": {"device": "cpu"}}) == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_fails_naming_the_key_and_the_fix(spec):
    with pytest.raises(RuntimeError, match=rf"config key 'eval.device' is '{spec}' but CUDA is not available") as e:
        eval_device({"eval": {"device": spec}})
    assert "set eval.device: cpu" in str(e.value)


@needs_cuda
def test_cuda_index_beyond_the_visible_gpus_fails_naming_the_count():
    n = torch.cuda.device_count()
    assert resolve_device(f"cuda:{n - 1}") == torch.device("cuda", n - 1)
    with pytest.raises(RuntimeError, match=rf"'eval.device' is 'cuda:{n}' but only {n} CUDA device"):
        resolve_device(f"cuda:{n}")


def test_schema_takes_cpu_cuda_and_cuda_n_only():
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    cfg = yaml.safe_load((ROOT / "config" / "micro.yaml").read_text())
    v = jsonschema.Draft202012Validator(schema)
    for ok in ("cpu", "cuda", "cuda:1", "cuda:12"):
        cfg["eval"]["device"] = ok
        assert not list(v.iter_errors(cfg)), ok
    for bad in ("gpu", "cuda:x", "CUDA", "mps", 0):
        cfg["eval"]["device"] = bad
        errors = list(v.iter_errors(cfg))
        assert errors and list(errors[0].absolute_path) == ["eval", "device"], bad
    shipped = {f: yaml.safe_load((ROOT / "config" / f).read_text())["eval"]["device"]
               for f in ("config.yaml", "embedded_full.yaml", "micro.yaml", "imagenet.yaml")}
    assert shipped == {"config.yaml": "cpu", "embedded_full.yaml": "cpu", "micro.yaml": "cpu", "imagenet.yaml": "cuda"}


# ------------------------------------------------------------------------------- numerics
def test_exact_fp32_sets_tf32_off_and_determinism_then_restores():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision(), torch.are_deterministic_algorithms_enabled())
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
        torch.use_deterministic_algorithms(False)
        with exact_fp32() as rec:
            assert rec == {"dtype": "float32", "tf32_matmul": False, "tf32_cudnn": False, "deterministic": True}
            assert torch.get_float32_matmul_precision() == "highest"
            assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high" and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])
        torch.use_deterministic_algorithms(saved[3])


@pytest.mark.parametrize("method", [None, "tome", "ours_size_norm"])
def test_cpu_logits_are_bit_identical_to_a_plain_loop(method):
    """The new path (device, inference mode, exact_fp32) changes nothing on the CPU: the logits are
    those of the loop compute_logits ran before eval.device existed."""
    es, model = _eval_set(), _model(method)
    with torch.no_grad():
        ref = torch.cat([model(normalize(es["images"][i:i + 5], es["mean"], es["std"])).float()
                         for i in range(0, 12, 5)])
    logits, model_s = compute_logits(model, es, 5, device="cpu", progress=False)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu" and model_s > 0
    assert torch.equal(logits, ref)


# ------------------------------------------------------------------------------- the jobs on the CPU
def _artefacts(tmp_path):
    """A tiny embedded checkpoint and eval set, in the formats the jobs read."""
    torch.manual_seed(0)
    model = create_embedded_model(5, embed_dim=24)
    weights = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict(), "model": {"embed_dim": 24}, "num_classes": 5, "history": {}},
               weights)
    es_path = tmp_path / "eval_set.pt"
    torch.save(_eval_set(), es_path)
    return str(weights), str(es_path)


def _cfg(device="cpu"):
    cfg = yaml.safe_load((ROOT / "config" / "micro.yaml").read_text())
    cfg["model"]["embed_dim"] = 24
    cfg["eval"].update(device=device, batch_size=5)
    cfg["experiments"]["ood"]["images"] = 8
    return cfg


def test_ood_job_on_cpu_matches_direct_logits_and_flops(tmp_path):
    """evaluate_condition counts FLOPs before the model moves and evaluates every run on eval.device;
    on the CPU each run's logits and GFLOPs are those computed directly, and the provenance records
    the device and the numerics."""
    from tokred.flops import count_flops
    from tokred.study.ood import condition_images, evaluate_condition

    weights, es_path = _artefacts(tmp_path)
    cfg = _cfg()
    runs = [{"name": "base", "group": "ood", "method": None},
            {"name": "tome_r13", "group": "ood", "method": "tome", "r": 13},
            {"name": "ours_r9", "group": "ood", "method": "ours_size_norm", "r": 9}]
    cond = {"kind": "corruption", "corruption": "gaussian_noise", "severity": 3}
    outputs = {r["name"]: (str(tmp_path / f"{r['name']}.json"), str(tmp_path / f"{r['name']}.pt")) for r in runs}
    results = evaluate_condition(cfg, "gaussian_noise-3", cond, runs, weights=weights, eval_set_path=es_path,
                                 schedules={}, outputs=outputs)
    data = condition_images(cfg, cond, es_path)
    for run, res in zip(runs, results):
        model = _model(run["method"], run.get("r"))
        ref, _ = compute_logits(model, data, 5, progress=False)
        saved = torch.load(outputs[run["name"]][1], weights_only=False)["logits"]
        assert torch.equal(saved, ref), run["name"]
        assert res["gflops"] == count_flops(model, (3, 112, 112)), run["name"]
        prov = json.loads(Path(outputs[run["name"]][0]).read_text())["provenance"]
        assert prov["device"] == "cpu" and prov["numerics"]["tf32_matmul"] is False
    assert results[1]["gflops"] < results[0]["gflops"]


@no_cuda
def test_cuda_config_fails_at_the_first_line_of_every_model_job(tmp_path):
    """Before any weights or images are read (the paths do not exist: a later failure would be
    FileNotFoundError), and within seconds."""
    from tokred.report.merges import visualize_merges
    from tokred.study.evaluate import evaluate_run
    from tokred.study.ood import evaluate_condition

    cfg, nowhere = _cfg("cuda"), str(tmp_path / "missing")
    jobs = {
        "evaluate": lambda: evaluate_run(cfg, {"name": "base", "group": "baseline", "method": None}, weights=nowhere,
                                         eval_set_path=nowhere, base_logits_path=None, out_metrics=nowhere,
                                         out_logits=nowhere),
        "evaluate_ood": lambda: evaluate_condition(cfg, "clean", {"kind": "clean"}, [{"name": "base", "method": None}],
                                                   weights=nowhere, eval_set_path=nowhere, schedules={}, outputs={}),
        "visualize_merges": lambda: visualize_merges({**cfg, "eval": {"device": "cuda"}}, weights=nowhere,
                                                     eval_set_path=nowhere, pdf_path=nowhere, png_path=nowhere),
    }
    for name, job in jobs.items():
        t0 = time.perf_counter()
        with pytest.raises(RuntimeError, match="config key 'eval.device' is 'cuda' but CUDA is not available"):
            job()
        assert time.perf_counter() - t0 < 5, name
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------- the DAG
def _dry_run_resources(cfg_path: Path) -> dict[str, set[str]]:
    """rule -> the set of `resources:` lines of its jobs in `snakemake -n` (gpu=... kept, the rest dropped)."""
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "8", "--configfile", str(cfg_path), "-n"],
                       cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    jobs: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block)
        if m:
            res = re.search(r"^\s+resources: (.*)$", block, re.M)
            gpu = re.findall(r"\bgpu=\d+", res.group(1) if res else "")
            jobs.setdefault(m.group(1), set()).add(",".join(gpu))
    return jobs


def _tiny_imagenet(tmp_path: Path, **overrides) -> Path:
    from PIL import Image

    for w in ("n01440764", "n01443537", "n01484850"):
        (tmp_path / "val" / w).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "val" / w / "0.JPEG")
    cfg = yaml.safe_load((ROOT / "config" / "imagenet.yaml").read_text())
    cfg["data"].update(imagenet_val=str(tmp_path / "val"), num_classes=3)
    cfg["results_dir"] = str(tmp_path / "results")
    for key, value in overrides.items():
        section, leaf = key.split(".")
        cfg[section][leaf] = value
    path = tmp_path / "im.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


MODEL_JOBS = ("evaluate", "evaluate_ood", "visualize_merges")


def test_paper_profile_dry_run_asks_a_gpu_for_every_model_job(tmp_path):
    jobs = _dry_run_resources(_tiny_imagenet(tmp_path))
    for rule in MODEL_JOBS:
        assert jobs.get(rule) == {"gpu=1"}, (rule, jobs.get(rule))
    for rule in ("solve_schedule", "eval_set", "report_overview", "paper"):  # FLOPs matching and the rest: no GPU
        assert jobs.get(rule) == {""}, (rule, jobs.get(rule))
    assert not (tmp_path / "results").exists()


def test_cpu_device_asks_no_gpu(tmp_path):
    jobs = _dry_run_resources(_tiny_imagenet(tmp_path, **{"eval.device": "cpu"}))
    for rule in MODEL_JOBS:
        assert jobs.get(rule) == {""}, (rule, jobs.get(rule))


# ------------------------------------------------------------------------------- on a GPU
@needs_cuda
@pytest.mark.parametrize("method", [None, "tome", "ours_size_norm"])
def test_cuda_logits_match_cpu_and_repeat_exactly(method):
    es, model = _eval_set(32), _model(method)
    cpu, _ = compute_logits(model, es, 16, device="cpu", progress=False)
    dev = eval_device({"eval": {"device": "cuda"}})
    gpu, _ = compute_logits(model, es, 16, device=dev, progress=False)
    again, _ = compute_logits(model, es, 16, device=dev, progress=False)
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float32
    assert torch.equal(gpu, again)  # deterministic on the device
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)
    assert (gpu.argmax(-1) == cpu.argmax(-1)).float().mean() >= 0.95
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG")


def test_paper_states_the_numerics_the_runs_recorded():
    from tokred.report.macros import precision_text

    off = {"dtype": "float32", "tf32_matmul": False, "tf32_cudnn": False, "deterministic": True}
    assert precision_text([off, off]).startswith("fp32 with TF32 off for matrix products and cuDNN and deterministic")
    assert precision_text([off, {**off, "tf32_cudnn": True}]) == "fp32 with TF32 allowed on CUDA"
    assert precision_text([off, None]) == "fp32"  # a run from before numerics were recorded: no claim
    assert r"\setup{precision}" in (ROOT / "paper" / "main.tex").read_text()
