"""Rule solve_schedule: the keep ratios of a schedule family that match ToMe's GFLOPs at some r."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import logged
from tokred.study.matching import solve_schedule

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    solve_schedule(sm.params.cfg, sm.params.spec, weights=sm.input.weights, out=sm.output[0], threads=sm.threads)
