"""Token merging as data: a `MergePlan` says which output group every input token joins.

Selectors (`tokred.select`: ToMe's bipartite matching, the head-diversity selector) only decide the plan;
applying it — size-weighted averaging of hidden states, summing sizes, tracing sources — is shared.
That keeps one mechanism for every method (docs/method.md §3: methods differ in how tokens are chosen and
merged, not in copies of the block).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype merge sums accumulate in: float32 for 16-bit floats, else `dtype` itself.

    In float16 a size-weighted sum (x * size, sizes up to N) overflows long before x does (65504 / 37
    = 1770), and in bfloat16 sums of many tokens lose the small terms (8-bit mantissa) and sizes above
    256 are no longer exact integers. For float32/64 inputs nothing is converted or copied.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@dataclass
class MergePlan:
    """`index[b, i]` is the output slot of input token i; slots 0..num_prefix_tokens-1 are the protected
    tokens, which keep their order and never share a slot.

    Rows move as whole rows through flat [B * tokens] indices (`index_add_`, `index_select`): on CPU
    these copy contiguous rows, where `scatter_add_`/`gather` with channel-expanded indices go
    element by element (measured 2.6x and 7x slower on [64, 197, 193]).
    """

    index: torch.Tensor  # int64 [B, N]
    num_out: int
    rep: torch.Tensor | None = None  # int64 [B, num_out]: the input token that stands for each slot

    def __post_init__(self):
        B, N = self.index.shape
        rows = torch.arange(B, device=self.index.device)[:, None]
        self._flat_index = (self.index + rows * self.num_out).reshape(-1)  # input row -> output row
        self._flat_rep = None if self.rep is None else (self.rep + rows * N).reshape(-1)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Broadcast per-slot rows back to the input tokens: [B, num_out, C] -> [B, N, C]."""
        B, N = self.index.shape
        return x.reshape(B * self.num_out, -1).index_select(0, self._flat_index).view(B, N, -1)

    def representatives(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of x [B, N, C] of each slot's representative (kept) token -> [B, num_out, C]."""
        B, N = self.index.shape
        return x.reshape(B * N, -1).index_select(0, self._flat_rep).view(B, self.num_out, -1)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum the rows of x [B, N, C] that share a slot -> [B, num_out, C]."""
        B, N = self.index.shape
        out = x.new_zeros(B * self.num_out, x.shape[-1])
        return out.index_add_(0, self._flat_index, x.reshape(B * N, -1)).view(B, self.num_out, -1)

    def amax(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.num_out, x.shape[-1])
        return out.scatter_reduce_(1, self.index[..., None].expand(-1, -1, x.shape[-1]), x, reduce="amax",
                                   include_self=False)


def check_finite(t: torch.Tensor, what: str) -> None:
    """Raise FloatingPointError if `t` holds NaN or inf: selection on such values is meaningless (NaN
    compares false, so selectors pick garbage or fail on shapes). Skipped while tracing (FLOP
    counting), where it would only add ops to the count.

    Fast path: one sum (NaN or inf in any element makes it non-finite; measured 4-12 us on CPU for
    [1-32, 197, 16], against 23-310 us for isfinite().all()); only a non-finite sum, which finite
    values can also give by overflowing, is checked element by element."""
    if torch.jit.is_tracing() or math.isfinite(t.sum(dtype=accum_dtype(t.dtype)).item()):
        return
    bad = ~torch.isfinite(t)
    if bad.any():
        raise FloatingPointError(
            f"{what} {list(t.shape)} ({t.dtype}) has {int(bad.sum())} non-finite values (NaN/inf): the "
            f"activations overflowed or were already non-finite before this block's token selection; in "
            f"float16, values above 65504 overflow (try bfloat16 or float32), otherwise check the input and "
            f"weights")


def merge_source(plan: MergePlan, source: torch.Tensor | None, num_tokens: int) -> torch.Tensor:
    """Track which input tokens each current token holds: source [B, tokens, input tokens] (0/1)."""
    if source is None:
        b = plan.index.shape[0]
        source = torch.eye(num_tokens, device=plan.index.device)[None].expand(b, -1, -1)
    return plan.amax(source)


def merge_tokens(plan: MergePlan, x: torch.Tensor, size: torch.Tensor | None, method, num_prefix_tokens: int,
                 clip_counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge hidden states with the method's rule (docs/method.md §3.3); sizes always add up as counts.

    x [B, N, C], size [B, N, 1] or None (all ones) -> (merged x [B, num_out, C] in x's dtype, sizes
    [B, num_out, 1] in `accum_dtype(x.dtype)`).
    clip_counts: an int64 tensor [2] to which (merged tokens the L2 clip shortened, merged tokens) are
    added in place when the method clips (`clip_tau`); no host sync, nothing done without a clip.

    The default rule is ToMe's size-weighted average (its `merge_wavg`). Other rules: norm-aware weights,
    push-lite (a kept token moves part-way towards the mean of what it absorbs), eta damping,
    re-centring of the patch tokens' size-weighted mean, and an L2 clip of merged tokens.
    float16/bfloat16 inputs are merged in float32 and the result cast back once (see `accum_dtype`);
    float32/64 inputs are used as they are.
    """
    out_dtype = x.dtype
    x = x.to(accum_dtype(x.dtype))  # no-op (same tensor) for float32/64
    size = x.new_ones(x.shape[0], x.shape[1], 1) if size is None else size.to(x.dtype)
    new_size = plan.sum(size)
    plain_avg = method.push is None and method.eta == 0 and not method.recenter and method.clip_tau is None
    if method.size_mode == "avg" and plain_avg:
        return (plan.sum(x * size) / new_size).to(out_dtype), new_size

    B, N, C = x.shape
    K, p = plan.num_out, num_prefix_tokens
    if method.size_mode == "norm" or method.clip_tau is not None:  # a pass over every token, only when used
        norms = x.norm(dim=-1, keepdim=True)
        mean_norm = norms[:, p:].mean(dim=1, keepdim=True)  # [B, 1, 1]
    if method.size_mode == "avg":
        w = size
    elif method.size_mode == "norm":
        w = size * norms / mean_norm
    else:  # "off": every token counts once, whatever it already holds
        w = torch.ones_like(size)
    out = plan.representatives(x)  # slots that absorbed nothing keep their token exactly

    # Only merged slots change, and they and the tokens they absorb are few (r per image): the rule
    # runs on those rows alone, as flat [rows, C] tensors; per-image quantities go by image id.
    merged = (new_size > plan.representatives(size)).view(-1)
    slots = merged.nonzero()[:, 0]  # flat output rows of merged slots, [M]
    compact = merged.long().cumsum(0) - 1  # flat output row -> position in `slots`
    is_rep = torch.zeros(B * N, dtype=torch.bool, device=x.device).index_fill_(0, plan._flat_rep, 1)
    absorbed = (~is_rep).nonzero()[:, 0]  # flat input rows merged into another token, [R]
    into = compact[plan._flat_index[absorbed]]  # their merged slot, as a position in `slots`
    img = torch.div(slots, K, rounding_mode="floor")  # image of each merged slot

    x_rows, w_rows, s_rows = x.reshape(B * N, C), w.reshape(-1), size.reshape(-1)
    keep_rows = plan._flat_rep[slots]
    x_k, w_k, s_k = x_rows.index_select(0, keep_rows), w_rows[keep_rows, None], s_rows[keep_rows, None]
    s_new = new_size.reshape(-1)[slots, None]
    x_u, w_u = x_rows.index_select(0, absorbed), w_rows[absorbed, None]
    M = slots.shape[0]
    sum_xw_u = x.new_zeros(M, C).index_add_(0, into, x_u * w_u)  # sum over the absorbed set U of w x
    sum_w_u = x.new_zeros(M, 1).index_add_(0, into, w_u)

    if method.push is None:
        y = (w_k * x_k + sum_xw_u) / (w_k + sum_w_u)  # weighted average of the kept token and U
    else:
        # x_k + lam (xbar_U - x_k), lam = min(alpha S_U / s_k, beta_k), beta_k = beta0 (s_k / mean s)^delta
        alpha, beta0, delta = method.push
        mean_s = size[:, p:].mean(dim=1).view(-1)[img, None]
        lam = torch.minimum(alpha * (s_new - s_k) / s_k, beta0 * (s_k / mean_s) ** delta).clamp(0.0, 1.0)
        y = torch.addcmul(x_k, lam, sum_xw_u / sum_w_u.clamp_min(1e-12) - x_k)
    if method.eta:
        y = torch.lerp(y, x_k, method.eta)  # (1 - eta) y + eta x_k
    if method.recenter:
        # Shift merged tokens by the amount that restores the size-weighted mean of the patch tokens:
        # unmerged slots cancel, so the change is sum over merged slots of (s_k x_k + sum_U s x) - s' y.
        sum_xs_u = sum_xw_u if w is size else x.new_zeros(M, C).index_add_(0, into, x_u * s_rows[absorbed, None])
        change = x.new_zeros(B, C).index_add_(0, img, s_k * x_k + sum_xs_u - s_new * y)
        s_merged = x.new_zeros(B, 1).index_add_(0, img, s_new)
        y = y + (change / s_merged.clamp_min(1e-12))[img]
    if method.clip_tau is not None:
        limit = method.clip_tau * mean_norm.view(-1)[img, None]
        n_y = y.norm(dim=-1, keepdim=True)
        over = n_y > limit
        y = y * torch.where(over, limit / n_y.clamp_min(1e-12), torch.ones_like(n_y))
        if clip_counts is not None:
            clip_counts[0] += over.sum()
            clip_counts[1] += M
    out.view(B * K, C).index_copy_(0, slots, y)
    return out.to(out_dtype), new_size
