"""Rule time_tokens: latency of one block and of the whole model against the token count."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import logged
from tokred.study.latency import time_tokens

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    time_tokens(sm.params.cfg, weights=sm.input.weights, out_csv=sm.output.csv, out_json=sm.output.json,
                   threads=sm.threads)
