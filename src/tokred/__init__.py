"""tokred: training-free token reduction for Vision Transformers.

    import tokred
    tokred.patch(model, method="tome", r=13)   # any timm VisionTransformer, in place
    tokred.count_flops(model)                  # GFLOPs with fused attention and reduction ops counted

Submodules load lazily so that light users (the Snakefile's config checks) never import torch.
"""
import importlib

__all__ = ["patch", "unpatch", "is_patched", "count_flops"]
_LAZY = {"patch": "patching", "unpatch": "patching", "is_patched": "patching", "count_flops": "flops"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'tokred' has no attribute {name!r}")
