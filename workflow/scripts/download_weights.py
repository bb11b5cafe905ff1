"""Rule download_weights: fetch the paper profile's pretrained weights once (checksum sidecar)."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.io import logged
from tokred.data.weights import download_hub_weights

with logged(snakemake.log[0]):  # noqa: F821
    download_hub_weights(snakemake.params.cfg, snakemake.output.weights)  # noqa: F821
