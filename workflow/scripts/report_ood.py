"""Rule report_ood: OOD table (mean Top-1 and drop per condition family) and severity curves."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.report import figures, load, macros, tables
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    df = load.load_ood(sm.input.metrics)
    t = tables.ood_table(df, sm.output[0], sm.output[1], n_boot=sm.params.n_boot, seed=sm.params.seed)
    macros.write_system_macros(sm.output[2], ood=t)
    figs = sm.output[3:]
    for i, fam in enumerate(sm.params.families):
        figures.ood_severity_figure(df, fam, figs[2 * i], figs[2 * i + 1])
