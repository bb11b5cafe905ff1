"""Rule report_figures_early: per-layer-set drop bars and drop-vs-r curves."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
import pandas as pd

from tokred.report import figures, load
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    figures.early_drop_figure(pd.read_csv(sm.input.table), *sm.output[:2])
    figures.rsweep_figure(load.load_metrics(sm.input.metrics), *sm.output[2:])
