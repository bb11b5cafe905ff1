"""Rule time_latency: img/s and latency per method variant, batch size and precision."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import logged
from tokred.study.latency import time_latency

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    time_latency(sm.params.cfg, weights=sm.input.weights, schedules={m: sm.input[m] for m in sm.params.methods},
                    out_csv=sm.output.csv, out_json=sm.output.json, threads=sm.threads)
