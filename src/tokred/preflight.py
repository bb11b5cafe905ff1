"""Checks and expansions the Snakefile runs while building the DAG. Must stay light: no torch.

The JSON schema (config/schema.yaml) checks keys, types and ranges; this adds what a schema cannot
see (dataset paths on disk, the synthetic task's own keys, method knobs) so a bad config fails
before any job, and turns the experiment groups into one run spec per job.
"""
from __future__ import annotations

from .methods import resolve_method


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


def _method(key: str, name: str, overrides: dict | None = None) -> None:
    try:
        resolve_method(name, **(overrides or {}))
    except ValueError as e:
        raise ValueError(f"config key '{key}': {e}") from None


def expand_runs(cfg: dict) -> dict[tuple[str, str], dict]:
    """(group, run) -> run spec for every evaluation job; the baseline is ('baseline', 'base').

    A spec names a method preset, optional knob overrides and a schedule: r / keep / layers, or
    `match` (solve a keep profile to the GFLOPs of ToMe at r = match.r on the same model).
    """
    ex = cfg["experiments"]
    runs = {("baseline", "base"): {"name": "base", "group": "baseline", "method": None}}

    def add(group: str, name: str, **spec) -> None:
        runs[(group, name)] = {"name": name, "group": group, **spec}

    rep = ex["reproduce"]
    _method("experiments.reproduce.method", rep["method"])
    for r in rep["r"]:
        add("reproduce", f"{rep['method']}_r{r}", method=rep["method"], r=r)

    if "early" in ex:
        e = ex["early"]
        for m in e["methods"]:
            _method("experiments.early.methods", m)
            for layers in e["layers"]:
                for r in e["r"]:
                    add("early", f"{m}_{layers}_r{r}", method=m, r=r, layers=layers)

    if "full" in ex:
        f = ex["full"]
        _method("experiments.full.method", f["method"])
        for profile in f["profiles"]:
            add("full", f"{f['method']}_{profile}", method=f["method"],
                match={"tome_r": f["target_r"], "profile": profile,
                       "profile_kw": {"late_k": f.get("late_k", 3), "early_boost": f.get("early_boost", 0.1)}})

    if "ablations" in ex:
        a = ex["ablations"]
        _method("experiments.ablations.method", a["method"])
        add("ablations", f"{a['method']}_ref", method=a["method"], r=a["r"])
        for name, overrides in a["variants"].items():
            _method(f"experiments.ablations.variants.{name}", a["method"], overrides)
            add("ablations", name, method=a["method"], overrides=overrides, r=a["r"])
    return runs


def comparisons(runs: dict) -> dict[str, str]:
    """Run -> the ToMe run it is compared with at equal r or equal GFLOPs (McNemar, Δ columns)."""
    pairs = {}
    for (group, name), spec in runs.items():
        if group == "early" and spec["method"] != "tome":
            tome = f"tome_{spec['layers']}_r{spec['r']}"
            if ("early", tome) in runs:
                pairs[name] = tome
        elif group in ("full", "ablations"):
            r = spec["match"]["tome_r"] if "match" in spec else spec["r"]
            if ("reproduce", f"tome_r{r}") in runs:
                pairs[name] = f"tome_r{r}"
    return pairs
