"""Rule report_overview: Pareto figure over every run, the macros the paper's text uses, the runs table."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.report import figures, load, macros, tables
from tokred.io import load_eval_set, logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    df = load.load_metrics(sm.input.metrics)
    # the preprocessing the eval set was built with (hub models), for the paper's setup text
    preprocess = load_eval_set(sm.input.eval_set).get("preprocess")
    pdf, png, macros_tex, runs = sm.output
    figures.pareto_figure(df, pdf, png)
    tables.runs_table(df, runs)
    macros.write_macros(df, macros_tex, profile=sm.params.profile, model=sm.params.model, data=sm.params.data,
                        train=sm.params.train, task=sm.params.task, weights=sm.input.weights,
                        preprocess=preprocess)
