"""Rule time_runs: time every evaluated run's configuration; GFLOPs vs latency correlation."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import logged
from tokred.study.latency import time_runs

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    time_runs(sm.params.cfg, list(sm.input.metrics), weights=sm.input.weights, out_csv=sm.output.csv,
                 out_json=sm.output.json, threads=sm.threads)
