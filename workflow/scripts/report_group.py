"""Rule report_group: the early / full / ablations table, with McNemar tests against ToMe."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred import report
from tokred.pipeline import load_eval_set, logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    labels = load_eval_set(sm.input.eval_set)["labels"]
    df = report.add_tome_comparison(report.load_metrics(sm.input.metrics), sm.params.pairs, labels)
    make = {"early": report.early_table, "full": report.full_table, "ablations": report.ablation_table}
    make[sm.wildcards.group](df, *sm.output)
