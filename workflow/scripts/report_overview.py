"""Rule report_overview: Pareto figure over every run, the macros the paper's text uses, the runs table."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred import report
from tokred.pipeline import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    df = report.load_metrics(sm.input.metrics)
    pdf, png, macros, runs = sm.output
    report.pareto_figure(df, pdf, png)
    report.runs_table(df, runs)
    report.write_macros(df, macros, profile=sm.params.profile, model=sm.params.model, data=sm.params.data,
                        train=sm.params.train, task=sm.params.task, weights=sm.input.weights)
