"""Rule report_group: the early / full / ablations / ablations_early table, with McNemar tests against ToMe
(early, full) or against the ablation group's reference run (ablations, ablations_early)."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.report import load, tables
from tokred import io
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    labels = io.load_eval_set(sm.input.eval_set)["labels"]
    df = load.load_metrics(sm.input.metrics)
    if sm.wildcards.group.startswith("ablations"):
        df = load.add_comparison(df, sm.params.pairs, labels, "ref")
        tables.ablation_table(df, *sm.output, group=sm.wildcards.group)
    else:
        df = load.add_tome_comparison(df, sm.params.pairs, labels)
        {"early": tables.early_table, "full": tables.full_table}[sm.wildcards.group](df, *sm.output)
