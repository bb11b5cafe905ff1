"""tokred: training-free token reduction for Vision Transformers.

    import tokred
    tokred.patch(model, method="tome", r=13)   # any timm VisionTransformer, in place
    tokred.count_flops(model)                  # GFLOPs with fused attention and reduction ops counted
"""
from .patch import is_patched, patch, unpatch

__all__ = ["patch", "unpatch", "is_patched", "count_flops"]


def count_flops(*args, **kwargs):
    from .flops import count_flops as _count_flops

    return _count_flops(*args, **kwargs)
