"""Rule train_embedded: train the embedded profile's ViT on its synthetic task."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.data.train import train_embedded
from tokred.io import logged, set_threads

with logged(snakemake.log[0]):  # noqa: F821 (provided by Snakemake)
    set_threads(snakemake.threads)  # noqa: F821
    train_embedded(snakemake.params.cfg, snakemake.output[0])  # noqa: F821
