"""Rule report_reproduce: reproduction table and Top-1-vs-GFLOPs figure."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.report import figures, load, tables
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    df = load.load_metrics(sm.input.metrics)
    csv, tex, fig_pdf, fig_png = sm.output
    tables.reproduce_table(df, csv, tex)
    figures.top1_vs_gflops_figure(df, fig_pdf, fig_png)
