"""Rule evaluate_ood: every OOD run on one condition -> per-run logits + metrics JSON."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.study.ood import evaluate_condition
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    runs = sm.params.runs
    metrics, logits = sm.output[:len(runs)], sm.output[len(runs):]
    outputs = {r["name"]: (m, lg) for r, m, lg in zip(runs, metrics, logits)}
    schedules = {r["name"]: sm.input[r["name"]] for r in runs if "match" in r}
    evaluate_condition(sm.params.cfg, sm.wildcards.condition, sm.params.cond, runs, weights=sm.input.weights,
                       eval_set_path=sm.input.eval_set, schedules=schedules, outputs=outputs, threads=sm.params.torch_threads)
