"""Rule report_ood: OOD table (mean Top-1 and drop per condition family, floor-level severities left out),
per-condition paired tests (ours vs ToMe; each variant vs ours), severity curves with chance level."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.report import figures, load, macros, ood_tables
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    df = load.load_ood(sm.input.metrics)
    pairs = sm.params.pairs
    variants = {r: p for r, p in pairs.items() if r in sm.params.variant_runs}
    main = df[~df.run.isin(variants)]
    t = ood_tables.ood_table(main, *sm.output.table, n_boot=sm.params.n_boot, seed=sm.params.seed)
    vs_tome = ood_tables.ood_paired_table(df, {r: p for r, p in pairs.items() if r not in variants}, *sm.output.vs_tome)
    v = ood_tables.ood_paired_table(df, variants, *sm.output.variants) if sm.output.variants else None
    macros.write_system_macros(sm.output.macros, ood=t, ood_text=macros.ood_facts(df, vs_tome, v, table=t))
    figs = sm.output.figures
    for i, fam in enumerate(sm.params.families):
        figures.ood_severity_figure(df, fam, figs[2 * i], figs[2 * i + 1], runs=list(main.run.unique()))
