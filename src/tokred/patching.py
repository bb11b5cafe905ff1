"""`patch(model, method="tome", r=13)`: training-free token reduction for timm ViTs, in place.

The patch swaps the classes of the model's `Block` and `Attention` modules for subclasses that
(1) apply proportional attention once tokens carry sizes, (2) ask the method's selector for a
`MergePlan` in every block that reduces, (3) run attention in the method's merge space and
(4) merge the hidden states with the method's rule before the MLP (ToMe's placement). Weights are
untouched; `unpatch` restores the original classes. ToMe and ours share every step: a method is
data (`tokred.methods.Method`), not a copy of the block.

The model's pooling is patched too, so that a read-out of merged tokens counts each token as the
patches it holds (see `patch` for what each of timm's poolings becomes).

One module (over 300 lines): the block, its attention and the pooling are subclasses swapped in
together by `patch`, sharing one per-forward state.
"""
from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F
from timm.layers import AttentionPoolLatent
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Attention, Block, VisionTransformer

from . import schedule
from .merge import MergePlan, accum_dtype, merge_source, merge_tokens
from .methods import Method, resolve_method
from .select import SELECTORS, Selection, head_inflow

# On CPU the selector's explicit attention runs a few images at a time so that each chunk's score
# matrices stay in the per-core cache (here 1 MiB of L2): the softmax and column sums then cost
# about 0.8x one fused attention call, where the whole batch at once is memory-bound (~5x slower).
# (Column sums from fused kernels take two calls: one for the row log-sum-exps, one transposed.)
_CPU_CHUNK_BYTES = 1 << 20


class ReductionState:
    """Per-model settings plus the per-forward token state shared by all patched blocks."""

    def __init__(self, method: Method, r, keep, layers, tile, trace_source: bool, num_prefix_tokens: int,
                 num_layers: int):
        self.method, self.r, self.keep, self.layers, self.tile = method, r, keep, layers, tile
        self.trace_source = trace_source
        self.num_prefix_tokens, self.num_layers = num_prefix_tokens, num_layers
        self.track_slots = False  # keep `slots` (set per forward from the model's pooling)
        self._resolved: dict[int, list[int]] = {}
        # Per block (L2 clips, merged tokens) summed over forwards since `track_clips` turned counting on;
        # a device tensor, so counting never syncs. Off by default: timing measures the method alone.
        self.count_clips = False
        self.clip_counts: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        self.size: torch.Tensor | None = None
        self.source: torch.Tensor | None = None
        self.slots: torch.Tensor | None = None  # int64 [B, input tokens]: current token holding each input token
        self.rs: list[int] | None = None

    def clip_counter(self, layer: int, device: torch.device) -> torch.Tensor | None:
        """The [2] int64 counter (clipped, merged) of block `layer`, or None when nothing is counted: counting
        is off, the method does not clip, or the model is being traced (FLOP counting runs it once more)."""
        if not self.count_clips or self.method.clip_tau is None or torch.jit.is_tracing():
            return None
        if self.clip_counts is None or self.clip_counts.device != device:
            prev = self.clip_counts
            self.clip_counts = torch.zeros(self.num_layers, 2, dtype=torch.int64, device=device)
            if prev is not None:
                self.clip_counts += prev.to(device)
        return self.clip_counts[layer]

    def unmerge(self, x: torch.Tensor) -> torch.Tensor:
        """Current tokens [B, N, C] back at their input positions -> [B, input tokens, C]: each input token
        gets the token it was merged into (identity when nothing merged)."""
        if self.slots is None:
            return x
        B, N, C = x.shape
        flat = (self.slots + torch.arange(B, device=x.device)[:, None] * N).view(-1)
        return x.reshape(B * N, C).index_select(0, flat).view(B, -1, C)

    def schedule_for(self, num_patches: int) -> list[int]:
        """Resolved r per block for this input's patch count (cached: resolution is pure)."""
        if num_patches not in self._resolved:
            self._resolved[num_patches] = schedule.resolve(
                self.num_layers, num_patches, self.r, keep=self.keep, layers=self.layers, tile=self.tile,
                num_prefix_tokens=self.num_prefix_tokens)
        return self._resolved[num_patches]


class ReducingAttention(Attention):
    """timm Attention split into steps so a block can select and merge between them."""

    def heads(self, x: torch.Tensor):
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        return self.q_norm(q), self.k_norm(k), v

    def bias(self, size: torch.Tensor | None, temperature: float | None):
        """Proportional attention: +log s (ToMe) or n*log(s / mean s) with temperature n."""
        if size is None:
            return None
        if temperature is None:
            return size.log()[:, None, None, :, 0]
        return (temperature * (size / size.mean(dim=1, keepdim=True)).log())[:, None, None, :, 0]

    def _flat(self, q, k, bias):
        """Heads folded into the batch: q [B*H, N, d], k^T [B*H, d, Nk] and the bias [B*H, 1, Nk] or None.

        k^T is copied once: bmm on the strided view of the qkv output was measured ~25% slower on CPU."""
        B, H, N, d = q.shape
        nk = k.shape[2]
        # sizes (and so the bias) are kept in float32 under 16-bit activations: cast like `attend` does
        bf = None if bias is None else bias.expand(B, H, 1, nk).reshape(B * H, 1, nk).to(q.dtype)
        return q.reshape(B * H, N, d), k.transpose(-2, -1).reshape(B * H, d, nk), bf

    def _softmax(self, qf, kt, bf) -> torch.Tensor:
        """softmax(q k^T * scale + bias) on flat heads [b, N, Nk]; the bias is folded into the matmul."""
        scores = torch.bmm(qf * self.scale, kt) if bf is None else torch.baddbmm(bf, qf, kt, alpha=self.scale)
        return scores.softmax(dim=-1)

    def probs(self, q, k, bias) -> torch.Tensor:
        """Explicit attention matrix [B, H, N, Nk]."""
        B, H, N, _ = q.shape
        return self.attn_drop(self._softmax(*self._flat(q, k, bias)).view(B, H, N, -1))

    def inflow(self, q, k, v, bias, need_out: bool = True):
        """(phi [B, N, H], A @ V or None): attention received by each token per head (docs/method.md §3.1) and,
        when `need_out`, the attention output from the same explicit softmax.

        On CPU the softmax runs in image chunks sized to the cache (see `_CPU_CHUNK_BYTES`); FLOP
        counting (tracing), training and other devices take the whole batch at once. Per image the
        arithmetic is the same either way, so results do not depend on the batch size.
        """
        B, H, N, d = q.shape
        step = B
        if q.device.type == "cpu" and not torch.jit.is_tracing():
            step = max(1, _CPU_CHUNK_BYTES // (H * N * N * q.element_size()))
        if step >= B or self.training:
            probs = self.probs(q, k, bias)
            return head_inflow(probs), probs @ v if need_out else None
        # Flat inputs made once, sliced per chunk, outputs written in place: few calls per chunk.
        qf, kt, bf = self._flat(q, k, bias)
        phi = q.new_empty(B, H, N)
        out = q.new_empty(B, H, N, d) if need_out else None
        vf = v.reshape(B * H, N, d) if need_out else None
        for i in range(0, B, step):
            lo, hi = i * H, min(B, i + step) * H
            probs = self._softmax(qf[lo:hi], kt[lo:hi], None if bf is None else bf[lo:hi])
            torch.sum(probs.view(-1, H, N, N), dim=2, out=phi[i:i + step])
            if need_out:
                torch.bmm(probs, vf[lo:hi], out=out.view(B * H, N, d)[lo:hi])
        return phi.transpose(1, 2), out

    def attend(self, q, k, v, bias) -> torch.Tensor:
        if self.fused_attn:
            # The fused kernel takes proportional attention as an additive mask: same result, and on
            # CPU much faster than materialising the softmax (timm's fused_attn setting is honoured).
            return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype),
                                                  dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.probs(q, k, bias) @ v

    def project(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, _, N, _ = out.shape
        out = self.norm(out.transpose(1, 2).reshape(B, N, -1))
        if getattr(self, "gate", None) is not None:
            out = out * self.gate(x).sigmoid()
        return self.proj_drop(self.proj(out))

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False, size=None):
        if attn_mask is not None or is_causal:
            raise NotImplementedError("token reduction does not support attention masks")
        q, k, v = self.heads(x)
        return self.project(self.attend(q, k, v, self.bias(size, None)), x)


def _group_mean(plan: MergePlan, size: torch.Tensor, *ts: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Size-weighted means per slot of per-head tensors [B, H, N, d] -> [B, H, num_out, d] each, and the
    slot sizes [B, num_out, 1]. (q, k, v are views of the qkv output: token-major rows without a copy.)

    Sums accumulate in `accum_dtype` (float32 for 16-bit inputs: x * size overflows float16) and the
    means are cast back to the input dtype; float32/64 inputs are not converted."""
    B, H, N, d = ts[0].shape
    acc = accum_dtype(ts[0].dtype)
    size = size.to(acc)
    s_group = plan.sum(size)
    inv = 1.0 / s_group
    means = [plan.sum(t.transpose(1, 2).reshape(B, N, H * d).to(acc) * size).mul_(inv).to(t.dtype) for t in ts]
    return [m.view(B, plan.num_out, H, d).transpose(1, 2) for m in means], s_group


def _ones_size(x: torch.Tensor) -> torch.Tensor:
    """Sizes [B, N, 1] of unmerged tokens, in the dtype merges accumulate in."""
    return torch.ones(x.shape[0], x.shape[1], 1, dtype=accum_dtype(x.dtype), device=x.device)


class ReducingBlock(Block):
    """timm Block that reduces tokens between attention and MLP."""

    _tokred: ReductionState
    _tokred_layer: int

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise NotImplementedError("token reduction does not support attention masks")
        st, meth = self._tokred, self._tokred.method
        if self._tokred_layer == 0:  # a new input: here, not in model.forward, so forward_features resets too
            st.reset()
            st.rs = st.schedule_for(int(x.shape[1]) - st.num_prefix_tokens)
        r = st.rs[self._tokred_layer]
        attn = self.attn
        # The sizes the method sees: None (every token one patch) when it ignores sizes (`sizes=False`);
        # st.size keeps the true counts for the pooling's shape checks and token map either way.
        size = st.size if meth.sizes else None
        xn = self.norm1(x)
        q, k, v = attn.heads(xn)
        bias = attn.bias(size if meth.prop_attn else None, meth.temperature)

        plan, out = None, None
        if r > 0:
            sel = Selection(x=x, k=k, size=size, r=r, num_prefix_tokens=st.num_prefix_tokens, method=meth,
                            inflow=lambda need_out: attn.inflow(q, k, v, bias, need_out=need_out))
            try:
                plan, out = SELECTORS[meth.selector](sel)
            except FloatingPointError as e:  # say where: the selectors do not know the block
                raise FloatingPointError(f"block {self._tokred_layer} ({meth.name}, r={r}): {e}") from None

        if plan is None or meth.space == "x":
            out = out if out is not None else attn.attend(q, k, v, bias)
        elif meth.space == "v":  # each token's value replaced by its group's size-weighted mean
            s = size if size is not None else _ones_size(x)
            (v_g,), _ = _group_mean(plan, s, v)
            B, H, _, d = v.shape
            v_rep = plan.gather(v_g.transpose(1, 2).reshape(B, plan.num_out, H * d)).view(B, -1, H, d).transpose(1, 2)
            out = attn.attend(q, k, v_rep, bias)
        else:  # kv, kv_only: attend over merged keys/values, one output row per query
            s = size if size is not None else _ones_size(x)
            (k_g, v_g), s_group = _group_mean(plan, s, k, v)
            # without sizes a group counts as one token: no proportional attention over groups either
            prop = meth.prop_attn and meth.sizes
            out = attn.attend(q, k_g, v_g, attn.bias(s_group, meth.temperature) if prop else None)
        x = x + self.drop_path1(self.ls1(attn.project(out, xn)))

        if plan is not None and meth.space != "kv_only":  # kv_only: every token stays, sizes unchanged
            if st.trace_source:
                st.source = merge_source(plan, st.source, x.shape[1])
            if st.track_slots:
                st.slots = plan.index if st.slots is None else plan.index.gather(1, st.slots)
            counts = None if meth.sizes else plan.sum(st.size if st.size is not None else _ones_size(x))
            x, st.size = merge_tokens(plan, x, size, meth, st.num_prefix_tokens,
                                      st.clip_counter(self._tokred_layer, x.device))
            if counts is not None:
                st.size = counts

        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


@functools.lru_cache(maxsize=None)
def _takes_attn_mask(forward) -> bool:
    return "attn_mask" in inspect.signature(forward).parameters


def _latent_pool_takes_bias(attn_pool) -> bool:
    """timm's AttentionPoolLatent, without a per-position embedding, whose forward takes `attn_mask`:
    proportional attention (+log size on the keys) can then be passed in as the additive mask."""
    return (type(attn_pool) is AttentionPoolLatent and attn_pool.pos_embed is None
            and _takes_attn_mask(type(attn_pool).forward))


def _needs_token_map(model) -> bool:
    """Whether the model's pooling reads merged tokens back at their input positions (`unmerge`): no
    pooling ('', one output per input token) and attention pools that cannot take a size bias."""
    if isinstance(model, VisionTransformerDistilled):
        return False
    if model.attn_pool is not None:
        return not _latent_pool_takes_bias(model.attn_pool)
    return not model.global_pool


def _check_head(model, base: type) -> None:
    """Refuse heads whose read-out of merged tokens cannot be made exact (see `patch`)."""
    if issubclass(base, VisionTransformerDistilled) and base.forward_head is VisionTransformerDistilled.forward_head:
        return  # reads the class and distillation tokens, which are never merged
    if not hasattr(VisionTransformer, "pool"):
        if model.global_pool != "token":
            raise TypeError(f"patch: model.global_pool={model.global_pool!r} needs a timm whose VisionTransformer "
                            f"has `pool` (to weight merged tokens by size); upgrade timm or use 'token'")
    elif base.forward_head is not VisionTransformer.forward_head or base.pool is not VisionTransformer.pool:
        raise TypeError(f"patch: {base.__name__} overrides forward_head/pool (model.global_pool="
                        f"{model.global_pool!r}); tokred cannot tell how it reads merged tokens, so its "
                        f"logits could silently change. Patch a timm VisionTransformer(Distilled) instead")


def _pool(self, x: torch.Tensor, pool_type: str | None = None) -> torch.Tensor:
    """timm's `VisionTransformer.pool` for merged tokens x [B, N, C] carrying sizes [B, N, 1] (`patch`)."""
    base, st = type(self)._tokred_base, self._tokred
    size = st.size
    if size is None:  # nothing merged in the last forward: timm's pooling is exact
        return base.pool(self, x, pool_type)
    if x.shape[:2] != size.shape[:2]:
        raise ValueError(f"pool: got tokens {list(x.shape[:2])} but the last forward of the patched model left "
                         f"{list(size.shape[:2])} merged tokens; pool the output of forward_features of the same "
                         f"input")
    if not st.method.sizes:  # the method counts every token as one patch: so does the read-out
        size = torch.ones_like(size)
    p = self.num_prefix_tokens
    pool_type = self.global_pool if pool_type is None else pool_type
    if self.attn_pool is not None or not pool_type:
        if self.attn_pool is not None and _latent_pool_takes_bias(self.attn_pool):
            if not self.pool_include_prefix:
                x, size = x[:, p:], size[:, p:]
            # proportional attention: a token holding s patches weighs as its s copies would
            return self.attn_pool(x, attn_mask=size.log().to(x.dtype)[:, None, None, :, 0])
        if st.slots is None:
            raise ValueError(f"pool: pool_type={pool_type!r} / model.attn_pool needs the map from input tokens to "
                             f"merged tokens, which the last forward did not keep; set model.global_pool before "
                             f"calling the model")
        # one row per input token again: exact for any pooling when the merged tokens were identical
        return base.pool(self, st.unmerge(x), pool_type)
    if pool_type not in ("avg", "max", "avgmax"):
        return base.pool(self, x, pool_type)  # 'token' reads the (protected) class token; timm refuses others
    if not self.pool_include_prefix:
        x, size = x[:, p:], size[:, p:]
    w = size.to(accum_dtype(x.dtype))
    out = None
    if pool_type != "max":  # size-weighted mean, as the official ToMe's MAE patch (tome/patch/mae.py)
        out = ((x.to(w.dtype) * w).sum(dim=1) / w.sum(dim=1)).to(x.dtype)
    if pool_type != "avg":  # the max over copies of a token is that token: max needs no weights
        mx = x.amax(dim=1)
        out = mx if out is None else 0.5 * (mx + out)
    return out


def _forward(self, *args, **kwargs):
    # The pooling (and so whether blocks keep the token map) may change after patching (reset_classifier).
    self._tokred.track_slots = _needs_token_map(self)
    return type(self)._tokred_base.forward(self, *args, **kwargs)


def _reducing_model_class(cls: type) -> type:
    if getattr(cls, "_tokred_patched", False):
        return cls
    return type(f"Reducing{cls.__name__}", (cls,), {"forward": _forward, "pool": _pool, "_tokred_patched": True,
                                                   "_tokred_base": cls})


def patch(model: VisionTransformer, method: str | Method = "tome", r=None, *, keep=None, layers=None,
          tile: int | None = None, trace_source: bool = False, **method_overrides) -> VisionTransformer:
    """Patch a timm VisionTransformer in place for token reduction and return it.

    method: a preset name ("tome", "hquota_ff", "ours_size_norm", "ours") or a `Method`; keyword
        overrides set single knobs (e.g. q=0.4, space="v", prop_attn=False), see `tokred.methods`.
    r / keep / layers: the schedule (see `tokred.schedule`); r=0 leaves the output unchanged.
        Numbers may be Python, numpy or 0-d torch scalars.
    tile: round every block's kept token count (CLS included) to a multiple of `tile` (hardware tiles).
    trace_source: keep `model._tokred.source` [B, tokens, input tokens] for visualisations.
    Calling patch again re-configures; `unpatch` restores the original model.

    Pooling (`model.global_pool`, with or without class / register tokens): a merged token counts as
    the patches it holds, so merging identical tokens leaves the logits unchanged.
      'token'            the class token (never merged): unchanged.
      'avg'              size-weighted mean (as the official ToMe's MAE patch, tome/patch/mae.py).
      'max'              unchanged: the max over copies of a token is that token.
      'avgmax'           0.5 * (max + size-weighted mean).
      'map'              timm's AttentionPoolLatent with proportional attention (+log size on the keys,
                         ToMe's rule); with a per-position embedding (`attn_pool.pos_embed`) as for
                         'prr' below.
      'prr', ''          tokens are put back at their input positions (each input token gets the token
                         it was merged into) and timm's own pooling runs on them; with '' the output
                         has one row per input token, as unpatched. The same for any other attn_pool.
    VisionTransformerDistilled reads its class and distillation tokens (never merged). A subclass
    with its own forward_head/pool raises TypeError (its read-out of merged tokens is unknown).
    Under float16/bfloat16 merges accumulate in float32 (`tokred.merge.accum_dtype`); NaN/inf
    reaching a selector raise FloatingPointError.
    """
    meth = resolve_method(method, **method_overrides)
    if r is None and keep is None:
        r = 0
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"patch expects a timm VisionTransformer, got {type(model).__name__}")
    _check_head(model, getattr(type(model), "_tokred_base", type(model)))
    blocks = list(model.blocks)
    for i, b in enumerate(blocks):
        # Exact classes only: a subclass may change forward in ways the patch would silently drop.
        if type(b) not in (Block, ReducingBlock) or type(b.attn) not in (Attention, ReducingAttention):
            raise TypeError(f"patch supports timm Block/Attention only; block {i} is "
                            f"{type(b).__name__}/{type(b.attn).__name__}")
    schedule.resolve(len(blocks), model.patch_embed.num_patches, r, keep=keep, layers=layers, tile=tile,
                     num_prefix_tokens=model.num_prefix_tokens)  # fail early
    state = ReductionState(meth, r, keep, layers, tile, trace_source, num_prefix_tokens=model.num_prefix_tokens,
                           num_layers=len(blocks))
    state.track_slots = _needs_token_map(model)
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


def track_clips(model, enable: bool = True) -> None:
    """Start (or stop) counting, per block, how many merged tokens the L2 clip (`Method.clip_tau`,
    docs/method.md §3.3) shortens; starting zeroes the counts. `clip_stats` reads them. Off after `patch`:
    counting adds three small ops per reducing block, which timing runs should not measure.
    Raises ValueError for a model that `patch` has not patched."""
    if not is_patched(model):
        raise ValueError("track_clips: the model is not patched (tokred.patch)")
    model._tokred.count_clips, model._tokred.clip_counts = bool(enable), None


def clip_stats(model) -> dict | None:
    """How often the L2 clip shortened a merged token, per block, over every forward since `track_clips`
    (FLOP-counting traces excluded).

    Returns None when the patched method does not clip (no clip_tau, or space kv_only, which merges no
    hidden states), else {"clipped": [int] * blocks, "merged": [int] * blocks, "fraction": [clipped /
    merged, or None where the block merged nothing]}. "merged" counts output tokens that absorbed at
    least one other (summed over images). Raises ValueError for a model that `patch` has not patched or
    on which `track_clips` was not called."""
    if not is_patched(model):
        raise ValueError("clip_stats: the model is not patched (tokred.patch)")
    st = model._tokred
    if st.method.clip_tau is None or st.method.space == "kv_only":
        return None
    if not st.count_clips:
        raise ValueError("clip_stats: clip counting is off; call tokred.patching.track_clips(model) before the "
                         "forwards to count")
    counts = st.clip_counts.tolist() if st.clip_counts is not None else [[0, 0]] * st.num_layers
    return {"clipped": [c for c, _ in counts], "merged": [m for _, m in counts],
            "fraction": [c / m if m else None for c, m in counts]}


def is_patched(model) -> bool:
    return getattr(type(model), "_tokred_patched", False)
