"""Rule report_fidelity: head-free fidelity tables per group, the per-block figure and the macros."""
import json

import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import load_eval_set, logged
from tokred.report import fidelity

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    df = fidelity.fidelity_frame(sm.input.metrics, sm.params.pairs)
    out = list(sm.output)
    for i, group in enumerate(sm.params.groups):
        fidelity.fidelity_table(df, group, out[2 * i], out[2 * i + 1])
    k = 2 * len(sm.params.groups)
    fidelity.block_figure(df, out[k], out[k + 1])
    base = json.loads(open(sm.input.metrics[0]).read())
    # the setup facts (weights' source, photos, views) exist only for the real profile's photo set
    setup = (fidelity.real_setup(sm.input.weights, load_eval_set(sm.input.eval_set), base) if sm.params.real
             else {"fidimages": str(base["fidelity"]["n_images"])})
    fidelity.write_fidelity_macros(df, out[k + 2], setup)
