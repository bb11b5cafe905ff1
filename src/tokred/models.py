"""Model construction for both profiles.

The embedded default is a timm `VisionTransformer` with DeiT-S token geometry (12 blocks, 6 heads,
196 patches + CLS) at a small width, so every schedule in docs/method.md means the same thing as on DeiT-S.
"""
from __future__ import annotations

import torch

# global_pool: how the head reads the final tokens (timm's names): "token" (the CLS token) or "avg"
# (mean of the patch tokens; size-weighted once merged, see tokred.patch).
EMBEDDED_DEFAULTS = dict(img_size=112, patch_size=8, embed_dim=96, depth=12, num_heads=6, global_pool="token")
# Inputs are stored as uint8; the embedded model sees them scaled to [-1, 1].
EMBEDDED_MEAN = (0.5, 0.5, 0.5)
EMBEDDED_STD = (0.5, 0.5, 0.5)


def create_embedded_model(num_classes: int, **overrides) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    kw = {**EMBEDDED_DEFAULTS, "class_token": True, **overrides}
    return VisionTransformer(num_classes=num_classes, **kw)


def normalize(images_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [B,3,H,W] -> float32 normalised with per-channel mean/std (given on the 0..1 scale)."""
    x = images_uint8.float().div_(255.0)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
