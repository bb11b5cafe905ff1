"""Cluster submission for real: a single-node SLURM cluster on this machine (tools/slurm_local.sh
installs it as root, starts it, and stops what it started), the micro DAG run through
`snakemake --profile profiles/slurm`, and the same numbers as a local run of the same config.

The config is the micro profile without the early-layer, ablation, OOD and timing stages (the DAG
still goes weights -> eval set -> runs -> tables/figures -> paper) to keep the test at a few minutes
on 2 cores; the local run goes beside the SLURM one (it fills the cluster run's polling gaps)."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "slurm_local.sh"
TIMEOUT = 1500  # s, each snakemake run; a hang (e.g. a status check that never sees a job) fails


def _config(path: Path, results: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "micro.yaml").read_text())
    cfg["results_dir"] = str(results)
    for group in ("early", "ablations", "ablations_early", "ood"):
        cfg["experiments"].pop(group, None)
    cfg.pop("timing", None)
    cfg["experiments"]["reproduce"]["r"] = [4, 13]  # 13: the full-layer schedules match ToMe r=13
    cfg["experiments"]["full"]["keep_shapes"] = ["uniform"]
    for key in ("tome_keep_shapes", "constant_r"):  # the selector/schedule split: not this test's subject
        cfg["experiments"]["full"].pop(key, None)
    cfg["train"]["steps"] = 4  # weights only need to be the same in both runs
    # a second trained model, as a cluster job too, on the runs this reduced DAG keeps
    cfg["experiments"]["replicate"]["runs"] = ["reproduce/tome_r13", "full/ours_size_norm_uniform"]
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        installed = shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged")
        pytest.skip("a local SLURM cluster needs root (slurmd runs jobs as root; /etc/slurm/slurm.conf)"
                    + ("" if installed else "; SLURM is not installed: apt-get install slurmctld slurmd slurm-client munge"))
    state = tmp_path_factory.mktemp("slurm")
    p = subprocess.run([str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=900)
    try:
        assert p.returncode == 0, f"tools/slurm_local.sh start failed:\n{p.stdout}\n{p.stderr}"
        yield state
    finally:
        stop = subprocess.run([str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, f"tools/slurm_local.sh stop failed:\n{stop.stdout}\n{stop.stderr}"
        for name in ("slurmctld", "slurmd", "munged"):  # every daemon it started is gone
            assert not (state / "pids" / name).exists()
        assert not (state / "etc_conf.link").exists()


def _snakemake(*args, env=None):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def _finish(proc, what):
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"{what} timed out after {TIMEOUT} s:\n{out[-6000:]}")
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def _numbers(obj, path=""):
    """Flatten a metrics JSON to {path: value}, leaving out provenance (versions, host, threads)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k != "provenance":
                out.update(_numbers(v, f"{path}.{k}"))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{path}[{i}]"))
        return out
    return {path: obj}


def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and (
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b)))
    return a == b


def test_micro_through_slurm_profile_matches_local_run(cluster, tmp_path):
    slurm_res, local_res = tmp_path / "slurm" / "results", tmp_path / "local" / "results"
    slurm_cfg = _config(tmp_path / "slurm.yaml", slurm_res)
    local_cfg = _config(tmp_path / "local.yaml", local_res)
    logs = tmp_path / "slurm_logs"

    # --cores 2: this machine's CPUs (the per-job thread ceiling under SLURM, as locally)
    local = _snakemake("--configfile", str(local_cfg))
    try:
        out = _finish(_snakemake("--profile", "profiles/slurm", "--configfile", str(slurm_cfg),
                                 "--slurm-logdir", str(logs), "--slurm-keep-successful-logs",
                                 env={"SLURM_CONF": str(cluster / "slurm.conf")}), "snakemake --profile profiles/slurm")
    finally:
        local_out = _finish(local, "local snakemake")
    assert "Nothing to be done" not in out and "Nothing to be done" not in local_out

    # --- the jobs really ran as SLURM jobs --------------------------------------------------------
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    rules = {r for r in re.findall(r"^rule (\w+):", out, re.M)}  # cluster jobs; the Snakefile's localrules
    local = re.findall(r"^localrule (\w+):", out, re.M)       # (quick report jobs) run on the submit host
    assert {"train_embedded", "eval_set", "evaluate", "solve_schedule", "visualize_merges"} <= rules
    assert {"report_reproduce", "report_group", "report_overview", "paper"} <= set(local)
    assert not rules & set(local)
    target = int("all" in rules)  # the action-less target rule `all` (however Snakemake prints it)
    rules.discard("all")
    total = int(re.findall(r"(\d+) of \1 steps \(100%\) done", out)[-1])
    assert len(submitted) == total - len(local) - target, out[-4000:]  # every job but the local ones
    ctld = (cluster / "log" / "slurmctld.log").read_text()
    for slurm_id in submitted.values():
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={slurm_id}\b", ctld)
        assert re.search(rf"_job_complete: JobId={slurm_id} WEXITSTATUS 0", ctld)
    job_logs = sorted(logs.rglob("*.log"))
    assert {p.relative_to(logs).parts[0] for p in job_logs} == {f"rule_{r}" for r in rules}
    assert len(job_logs) == len(submitted)
    for p in job_logs:  # SLURM's stdout: the jobstep executor (remote nodes) ran the rule by srun, done
        text, rule = p.read_text(), p.relative_to(logs).parts[0].removeprefix("rule_")
        assert "Provided remote nodes" in text and f"localrule {rule}:" in text, p
        assert "1 of 1 steps (100%) done" in text and "Error" not in text, p

    # --- the same outputs as the local run --------------------------------------------------------
    assert (slurm_res / "paper" / "paper.pdf").stat().st_size > 10_000
    jsons = sorted(p.relative_to(local_res) for p in local_res.glob("runs/*/*/metrics.json"))
    assert [str(p.parent) for p in jsons] == ["runs/baseline/base", "runs/full/ours_size_norm_uniform",
                                              "runs/reproduce/tome_r13", "runs/reproduce/tome_r4", "runs/seed1/base",
                                              "runs/seed1/ours_size_norm_uniform", "runs/seed1/tome_r13"]
    jsons += sorted(p.relative_to(local_res) for p in local_res.glob("schedules/*.json"))
    for rel in jsons:
        a = _numbers(json.loads((slurm_res / rel).read_text()))
        b = _numbers(json.loads((local_res / rel).read_text()))
        assert a.keys() == b.keys(), rel
        diff = {k: (a[k], b[k]) for k in a if not _same(a[k], b[k])}
        assert not diff, f"{rel}: SLURM vs local differ: {diff}"
    r13 = _numbers(json.loads((slurm_res / "runs/reproduce/tome_r13/metrics.json").read_text()))
    assert {".top1", ".gflops", ".drop_pp", ".kl", ".base_top1"} <= r13.keys()  # what was compared
    for table in ("reproduce", "full"):
        pd.testing.assert_frame_equal(pd.read_csv(slurm_res / "tables" / f"{table}.csv"),
                                      pd.read_csv(local_res / "tables" / f"{table}.csv"), rtol=1e-6)
