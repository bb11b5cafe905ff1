"""Rule report_figures_ablations: Top-1 of every ablation variant against its reference and ToMe at the same r."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
import pandas as pd

from tokred.report import figures, load
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    rep = load.load_metrics([sm.input.reproduce]).set_index("run")
    figures.ablation_figure(pd.read_csv(sm.input.table), rep.loc[sm.params.tome_run, "top1"], *sm.output)
