"""Rule report_schedules: kept tokens per block under every full-group schedule, and (when configured) the
selector/schedule split table (tokred.report.regime)."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
import json

from tokred import io
from tokred.io import logged
from tokred.report import load, regime

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    df = load.load_metrics(sm.input.metrics)
    schedules = [json.loads(open(p).read()) for p in sm.input.schedules]
    regime.schedules_table(df, schedules, *sm.output[:2])
    if sm.params.pairs:
        labels = io.load_eval_set(sm.input.eval_set)["labels"]
        regime.selector_table(df, sm.params.pairs, labels, *sm.output[2:])
