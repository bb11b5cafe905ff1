"""`patch(model, method="tome", r=13)`: training-free token reduction for timm ViTs, in place.

The patch swaps the classes of the model's `Block` and `Attention` modules for subclasses that
(1) apply proportional attention (+ log size) once tokens carry sizes, (2) expose the keys averaged
over heads as the matching metric, and (3) after the attention residual, ask the method's selector
for a `MergePlan` and apply it. Weights are untouched; `unpatch` restores the original classes.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block, VisionTransformer

from . import schedule
from .merge import bipartite_plan, merge_source, merge_wavg

METHODS = ("tome",)


class ReductionState:
    """Per-model settings plus the per-forward token state shared by all patched blocks."""

    def __init__(self, method: str, r, keep, layers, prop_attn: bool, trace_source: bool,
                 num_protected: int, num_layers: int):
        self.method, self.r, self.keep, self.layers = method, r, keep, layers
        self.prop_attn, self.trace_source = prop_attn, trace_source
        self.num_protected, self.num_layers = num_protected, num_layers
        self._resolved: dict[int, list[int]] = {}
        self.reset()

    def reset(self) -> None:
        self.size: torch.Tensor | None = None
        self.source: torch.Tensor | None = None
        self.rs: list[int] | None = None

    def schedule_for(self, num_patches: int) -> list[int]:
        """Resolved r per block for this input's patch count (cached: resolution is pure)."""
        if num_patches not in self._resolved:
            self._resolved[num_patches] = schedule.resolve(
                self.num_layers, num_patches, self.r, keep=self.keep, layers=self.layers)
        return self._resolved[num_patches]

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "r": self.r, "keep": self.keep, "layers": self.layers,
                "prop_attn": self.prop_attn}


class ReducingAttention(Attention):
    """timm Attention with proportional attention and the head-averaged keys as a side output."""

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False, size=None):
        if attn_mask is not None or is_causal:
            raise NotImplementedError("token reduction does not support attention masks")
        B, N, C = x.shape
        gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if size is None and self.fused_attn:
            # Sizes are all 1 before the first merge: log 1 = 0, so the fused kernel is exact.
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if size is not None:
                attn = attn + size.log()[:, None, None, :, 0]
            out = self.attn_drop(attn.softmax(dim=-1)) @ v
        out = out.transpose(1, 2).reshape(B, N, -1)
        out = self.norm(out)
        if gate is not None:
            out = out * gate
        out = self.proj_drop(self.proj(out))
        return out, k.mean(1)


class ReducingBlock(Block):
    """timm Block that reduces tokens between attention and MLP (ToMe's placement)."""

    _tokred: ReductionState
    _tokred_layer: int

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        st = self._tokred
        size = st.size if st.prop_attn else None
        x_attn, metric = self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal, size=size)
        x = x + self.drop_path1(self.ls1(x_attn))

        if self._tokred_layer == 0:
            st.rs = st.schedule_for(x.shape[1] - st.num_protected)
        r = st.rs[self._tokred_layer]
        if r > 0:
            plan = bipartite_plan(metric, r, st.num_protected)
            if plan is not None:
                if st.trace_source:
                    st.source = merge_source(plan, st.source, x.shape[1])
                x, st.size = merge_wavg(plan, x, st.size)

        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


def _reducing_model_class(cls: type) -> type:
    if getattr(cls, "_tokred_patched", False):
        return cls

    def forward(self, *args, **kwargs):
        self._tokred.reset()
        return super(new_cls, self).forward(*args, **kwargs)

    new_cls = type(f"Reducing{cls.__name__}", (cls,), {"forward": forward, "_tokred_patched": True,
                                                      "_tokred_base": cls})
    return new_cls


def patch(model: VisionTransformer, method: str = "tome", r=None, *, keep=None, layers=None,
          prop_attn: bool = True, trace_source: bool = False) -> VisionTransformer:
    """Patch a timm VisionTransformer in place for token reduction and return it.

    method: "tome" (bipartite soft matching, size-weighted average; SPEC §2).
    r / keep / layers: the schedule (see `tokred.schedule`); r=0 leaves the network's output unchanged.
    prop_attn: proportional attention (+ log size), as ToMe for off-the-shelf models.
    trace_source: keep `model._tokred.source` [B, tokens, input tokens] for visualisations.
    Calling patch again re-configures; `unpatch` restores the original model.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {METHODS}")
    if r is None and keep is None:
        r = 0
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"patch expects a timm VisionTransformer, got {type(model).__name__}")
    blocks = list(model.blocks)
    for i, b in enumerate(blocks):
        # Exact classes only: a subclass may change forward in ways the patch would silently drop.
        if type(b) not in (Block, ReducingBlock) or type(b.attn) not in (Attention, ReducingAttention):
            raise TypeError(f"patch supports timm Block/Attention only; block {i} is "
                            f"{type(b).__name__}/{type(b.attn).__name__}")
    state = ReductionState(method, r, keep, layers, prop_attn, trace_source,
                           num_protected=model.num_prefix_tokens, num_layers=len(blocks))
    schedule.resolve(len(blocks), model.patch_embed.num_patches, r, keep=keep, layers=layers)  # fail early
    model.__class__ = _reducing_model_class(model.__class__)
    model._tokred = state
    for i, blk in enumerate(blocks):
        blk.__class__ = ReducingBlock
        blk.attn.__class__ = ReducingAttention
        blk._tokred, blk._tokred_layer = state, i
    return model


def unpatch(model: VisionTransformer) -> VisionTransformer:
    """Undo `patch`: restore the original classes and drop the reduction state."""
    if not getattr(type(model), "_tokred_patched", False):
        return model
    model.__class__ = type(model)._tokred_base
    del model._tokred
    for blk in model.blocks:
        blk.__class__ = Block
        blk.attn.__class__ = Attention
        del blk._tokred, blk._tokred_layer
    return model


def is_patched(model) -> bool:
    return getattr(type(model), "_tokred_patched", False)
