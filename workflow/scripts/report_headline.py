"""Rule report_headline: ToMe vs one method at an early layer set (tokred.report.regime.headline_table)."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
import torch

from tokred import io
from tokred.io import logged
from tokred.report import load, regime

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    labels = io.load_eval_set(sm.input.eval_set)["labels"]
    base = torch.load(sm.input.base_logits, weights_only=False)["logits"]
    regime.headline_table(load.load_metrics(sm.input.metrics), base, labels, sm.params.method, sm.params.layers,
                          *sm.output, n_boot=sm.params.n_boot, seed=sm.params.seed)
