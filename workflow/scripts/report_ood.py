"""Rule report_ood: OOD table (mean Top-1 and drop per condition family) and severity curves."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred import report
from tokred.pipeline import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    df = report.load_ood(sm.input.metrics)
    t = report.ood_table(df, sm.output[0], sm.output[1], n_boot=sm.params.n_boot, seed=sm.params.seed)
    report.write_system_macros(sm.output[2], ood=t)
    figs = sm.output[3:]
    for i, fam in enumerate(sm.params.families):
        report.ood_severity_figure(df, fam, figs[2 * i], figs[2 * i + 1])
