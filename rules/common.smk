# Shared state for all rules: paths, the run list, and pre-flight checks that fail before any job
# runs (bad task keys, missing dataset paths) with a message naming the config key.
import sys
from pathlib import Path

# The library is importable by the DAG (and by job scripts, see workflow/scripts/_paths.py),
# installed or not.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from tokred import preflight  # light: no torch

R = config["results_dir"]
EMBEDDED = config["model"]["source"] == "embedded"
WEIGHTS = f"{R}/weights/model.pt" if EMBEDDED else f"{R}/weights/model.safetensors"
EVAL_SET = f"{R}/data/eval_set.pt"
BASELINE = ("baseline", "base")

preflight.check_config(config)

# Every evaluation is one job: (group, run) -> run spec. The baseline is the unreduced model.
RUNS = preflight.expand_runs(config)


def run_output(group, run, kind="metrics.json"):
    return f"{R}/runs/{group}/{run}/{kind}"


def group_metrics(group):
    return [run_output(g, r) for (g, r) in RUNS if g == group]


def evaluate_inputs(wc):
    inputs = {"weights": WEIGHTS, "eval_set": EVAL_SET}
    if (wc.group, wc.run) != BASELINE:
        inputs["base_logits"] = run_output(*BASELINE, "logits.pt")
    return inputs


wildcard_constraints:
    group=r"[A-Za-z0-9_]+",
    run=r"[A-Za-z0-9_.\-]+",
