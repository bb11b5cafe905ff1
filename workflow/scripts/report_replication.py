"""Rule report_replication: the listed comparisons on every trained model (experiments.replicate)."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred import io
from tokred.io import logged
from tokred.report.replication import replication_table

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    labels = io.load_eval_set(sm.input.eval_set)["labels"]
    replication_table([(m["label"], m["runs"]) for m in sm.params.models], sm.params.pairs, labels, *sm.output)
