"""Rule copy_run: a run that is the same evaluation as an earlier one -> a copy of its files, renamed."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import copy_run, logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    copy_run(sm.params.run, sm.params.same_as, metrics_path=sm.input.metrics, logits_path=sm.input.logits,
             out_metrics=sm.output.metrics, out_logits=sm.output.logits)
