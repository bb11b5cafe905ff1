"""Rule report_findings: the paper's findings, conclusion and data-driven limitations in words."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
import pandas as pd

from tokred.io import logged
from tokred.report.findings import write_findings

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    tables = {k: pd.read_csv(v) for k, v in sm.input.items()}
    write_findings(sm.output[0], **tables)
