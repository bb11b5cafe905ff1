"""Rule evaluate: one run (baseline or a reduction method) -> logits + metrics JSON."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import logged
from tokred.study.evaluate import evaluate_run

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    evaluate_run(sm.params.cfg, sm.params.run, weights=sm.input.weights, eval_set_path=sm.input.eval_set,
                 base_logits_path=sm.input.get("base_logits"), out_metrics=sm.output.metrics,
                 out_logits=sm.output.logits, schedule_path=sm.input.get("schedule"), threads=sm.params.torch_threads)
