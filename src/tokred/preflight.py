"""Checks and expansions the Snakefile runs while building the DAG. Must stay light: no torch.

The JSON schema (config/schema.yaml) checks keys, types and ranges; this adds what a schema cannot
see (dataset paths on disk, the synthetic task's own keys) so a bad config fails before any job.
"""
from __future__ import annotations


def check_config(cfg: dict) -> None:
    if cfg["model"]["source"] == "embedded":
        from .synthetic import resolve_task

        try:
            resolve_task(cfg["task"])
        except ValueError as e:
            raise ValueError(f"config key 'task': {e}") from None
    else:
        from .imagenet import check_dataset_path

        d = cfg["data"]
        check_dataset_path("data.imagenet_val", d["imagenet_val"], d.get("labels_file") or None,
                           num_classes=d.get("num_classes", 1000))


def run_name(method: str, r) -> str:
    return f"{method}_r{r}"


def expand_runs(cfg: dict) -> dict[tuple[str, str], dict]:
    """(group, run) -> run spec for every evaluation job; the baseline is ('baseline', 'base')."""
    runs = {("baseline", "base"): {"name": "base", "group": "baseline", "method": None}}
    rep = cfg["experiments"]["reproduce"]
    for r in rep["r"]:
        name = run_name(rep["method"], r)
        runs[("reproduce", name)] = {"name": name, "group": "reproduce", "method": rep["method"], "r": r}
    return runs
