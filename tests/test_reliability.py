"""Faults injected into real runs: SIGKILL mid-job, a corrupted weights file, NaN logits, a failed job.

A small slice of the micro DAG (weights -> eval set -> baseline + ToMe runs -> tables -> paper) keeps
these minutes, not tens of minutes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_pipeline import DELETE, ROOT, snakemake, write_config

SLICE = {"experiments": {"reproduce": {"method": "tome", "r": [0, 13]}}, "timing": DELETE}


def _metrics(results: Path) -> dict[str, bytes]:
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.glob("runs/**/metrics.json"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    cfg = write_config(tmp / "c.yaml", "micro.yaml", results_dir=str(tmp / "results"), **SLICE)
    snakemake("--configfile", str(cfg))
    return tmp / "results"


def test_sigkill_mid_run_resumes_to_identical_results(tmp_path, reference):
    """Kill snakemake and its job with SIGKILL while an evaluation runs; a plain rerun finishes with
    byte-identical metrics (same as an uninterrupted run of the same config), and no partial file
    was ever left where a complete one belongs."""
    res = tmp_path / "results"
    cfg = write_config(tmp_path / "c.yaml", "micro.yaml", results_dir=str(res), **SLICE)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "8", "--configfile", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not any((res / "logs" / "runs").glob("*/*.log")):  # an evaluation job has started
            assert proc.poll() is None, "the run ended before an evaluation started"
            assert time.time() < deadline, "no evaluation started within 10 minutes"
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for p in res.rglob("*.json"):  # whatever exists is complete (atomic writes)
        json.loads(p.read_text())
    for p in res.rglob("*.pt"):
        torch.load(p, weights_only=False)

    snakemake("--configfile", str(cfg))
    got, want = _metrics(res), _metrics(reference)
    assert got.keys() == want.keys() and len(got) == 3
    assert got == want  # same config twice (one of them interrupted): identical metrics files


def test_corrupted_weights_fail_the_run_and_mark_the_paper_stale(tmp_path, reference):
    """Truncated weights: the next run fails in the jobs that read them, with a message; the old PDF
    is renamed paper.stale.pdf (STALE.txt says why) instead of looking current."""
    import shutil

    res = tmp_path / "results"
    shutil.copytree(reference, res)
    cfg = write_config(tmp_path / "c.yaml", "micro.yaml", results_dir=str(res), **SLICE)
    snakemake("--configfile", str(cfg))  # nothing to do: the copy is complete
    weights = res / "weights" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    code, out = snakemake("--configfile", str(cfg), "--forcerun", "evaluate", check=False)
    assert code != 0
    assert not (res / "paper" / "paper.pdf").exists() and (res / "paper" / "paper.stale.pdf").exists()
    assert "failed" in (res / "STALE.txt").read_text()
    log = "".join(p.read_text() for p in (res / "logs" / "runs").rglob("*.log"))
    assert "model.pt" in log or "zip archive" in log or "Error" in log


def test_nan_logits_fail_the_run_naming_the_images():
    from tokred.models import create_embedded_model
    from tokred.study.runner import compute_logits

    model = create_embedded_model(3, embed_dim=24).eval()
    with torch.no_grad():
        model.head.bias[1] = float("nan")
    es = {"images": torch.zeros(4, 3, 112, 112, dtype=torch.uint8), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    with pytest.raises(FloatingPointError, match="non-finite logits for 4 images"):
        compute_logits(model, es, 2, progress=False)
