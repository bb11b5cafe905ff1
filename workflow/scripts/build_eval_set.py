"""Rule eval_set: decode and preprocess the evaluation images once."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.data.eval_set import build_eval_set
from tokred.io import logged, set_threads

with logged(snakemake.log[0]):  # noqa: F821
    set_threads(snakemake.threads)  # noqa: F821
    build_eval_set(snakemake.params.cfg, snakemake.output[0])  # noqa: F821
