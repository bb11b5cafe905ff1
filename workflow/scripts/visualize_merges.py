"""Rule visualize_merges: which input patches each final token holds, per method, on a few images."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import logged
from tokred.report.merges import visualize_merges

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    visualize_merges(sm.params.cfg, weights=sm.input.weights, eval_set_path=sm.input.eval_set, pdf_path=sm.output[0],
                     png_path=sm.output[1])
