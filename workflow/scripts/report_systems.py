"""Rule report_systems: latency, GFLOPs-vs-latency and token-sweep figures, and their macros."""
import json

import _paths  # noqa: F401  (puts the project's src/ on sys.path)
import pandas as pd
from tokred.report import figures, macros
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    latency = pd.read_csv(sm.input.latency)
    runs = pd.read_csv(sm.input.runs)
    tokens = pd.read_csv(sm.input.tokens)
    summary = json.loads(open(sm.input.runs_summary).read())
    hw = json.loads(open(sm.input.latency_hw).read())["hardware"]
    out = sm.output
    figures.latency_figure(latency, hw, out[0], out[1])
    figures.gflops_latency_figure(runs, summary, out[2], out[3])
    figures.token_sweep_figure(tokens, json.loads(open(sm.input.tokens_hw).read())["hardware"], out[4], out[5])
    macros.write_system_macros(out[6], latency=latency, correlation=summary)
