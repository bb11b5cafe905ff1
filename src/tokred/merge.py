"""Token merging as data: a `MergePlan` says which output group every input token joins.

Selectors (ToMe's bipartite matching here; the head-diversity selector later) only decide the plan;
applying it — size-weighted averaging of hidden states, summing sizes, tracing sources — is shared.
That keeps one mechanism for every method (SPEC §3: methods differ in how tokens are chosen and
merged, not in copies of the block).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class MergePlan:
    """`index[b, i]` is the output slot of input token i; slots 0..num_protected-1 are the protected
    tokens, which keep their order and never share a slot."""

    index: torch.Tensor  # int64 [B, N]
    num_out: int
    rep: torch.Tensor | None = None  # int64 [B, num_out]: the input token that stands for each slot

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Broadcast per-slot rows back to the input tokens: [B, num_out, C] -> [B, N, C]."""
        return x.gather(1, self._expand(x.shape[-1]))

    def representatives(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of x [B, N, C] of each slot's representative (kept) token -> [B, num_out, C]."""
        return x.gather(1, self.rep[..., None].expand(-1, -1, x.shape[-1]))

    def _expand(self, c: int) -> torch.Tensor:
        return self.index[..., None].expand(-1, -1, c)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum the rows of x [B, N, C] that share a slot -> [B, num_out, C]."""
        out = x.new_zeros(x.shape[0], self.num_out, x.shape[-1])
        return out.scatter_add_(1, self._expand(x.shape[-1]), x)

    def amax(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.num_out, x.shape[-1])
        return out.scatter_reduce_(1, self._expand(x.shape[-1]), x, reduce="amax", include_self=False)


def merge_source(plan: MergePlan, source: torch.Tensor | None, num_tokens: int) -> torch.Tensor:
    """Track which input tokens each current token holds: source [B, tokens, input tokens] (0/1)."""
    if source is None:
        b = plan.index.shape[0]
        source = torch.eye(num_tokens, device=plan.index.device)[None].expand(b, -1, -1)
    return plan.amax(source)


def bipartite_plan(metric: torch.Tensor, r: int, num_protected: int) -> MergePlan | None:
    """ToMe's bipartite soft matching (SPEC §2) expressed as a plan.

    Tokens alternate into sets A (even positions) and B (odd); each A token proposes its most
    cosine-similar B token; the r best-scoring A tokens merge into their B partner. Protected tokens
    (the first `num_protected`) are scored -inf so they neither merge nor absorb. Output order is
    [protected, unmerged A (ascending), B] — ToMe's order, which matters because the next block's
    bipartite split is positional.
    """
    B, N, _ = metric.shape
    r = min(r, (N - num_protected) // 2)
    if r <= 0:
        return None
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2], metric[:, 1::2]
        scores = a @ b.transpose(-1, -2)
        n_a, n_b = a.shape[1], b.shape[1]
        prot_a, prot_b = (num_protected + 1) // 2, num_protected // 2
        if prot_a:
            scores[:, :prot_a, :] = -math.inf
        if prot_b:
            scores[:, :, :prot_b] = -math.inf
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)
        unm_idx, src_idx = edge_idx[:, r:], edge_idx[:, :r]
        if num_protected:
            unm_idx = unm_idx.sort(dim=-1).values
        n_unm = n_a - r

        # Output slots: protected (interleaved as they were), then unmerged A, then unprotected B.
        dev = metric.device
        slot_b = torch.empty(n_b, dtype=torch.long, device=dev)
        slot_b[:prot_b] = 2 * torch.arange(prot_b, device=dev) + 1  # protected B tokens sit at odd slots
        slot_b[prot_b:] = n_unm + prot_b + torch.arange(n_b - prot_b, device=dev)
        rank_unm = torch.arange(n_unm, device=dev).expand(B, -1)
        # unmerged A tokens in ascending order: the first prot_a are the protected ones (slot 2k),
        # the rest follow after all protected tokens.
        unm_slot = torch.where(rank_unm < prot_a, 2 * rank_unm, rank_unm + prot_b)
        slot_a = torch.empty(B, n_a, dtype=torch.long, device=dev)
        slot_a.scatter_(1, unm_idx, unm_slot)
        slot_a.scatter_(1, src_idx, slot_b.expand(B, -1).gather(1, node_idx.gather(1, src_idx)))

        index = torch.empty(B, N, dtype=torch.long, device=dev)
        index[:, ::2] = slot_a
        index[:, 1::2] = slot_b
        # Every token but the merged A tokens represents its own slot.
        is_rep = torch.ones(B, N, dtype=torch.bool, device=dev)
        is_rep[:, ::2] = is_rep[:, ::2].scatter(1, src_idx, torch.zeros_like(src_idx, dtype=torch.bool))
        dump = torch.where(is_rep, index, N - r)  # non-representatives land in a spare slot
        rep = torch.zeros(B, N - r + 1, dtype=torch.long, device=dev)
        rep.scatter_(1, dump, torch.arange(N, device=dev).expand(B, N))
    return MergePlan(index=index, num_out=N - r, rep=rep[:, :-1])


def merge_tokens(plan: MergePlan, x: torch.Tensor, size: torch.Tensor | None, method, num_protected: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge hidden states with the method's rule (SPEC §3.3); sizes always add up as counts.

    The default rule is ToMe's size-weighted average (its `merge_wavg`). Other rules: norm-aware weights,
    push-lite (a kept token moves part-way towards the mean of what it absorbs), eta damping,
    re-centring of the patch tokens' size-weighted mean, and an L2 clip of merged tokens.
    """
    if size is None:
        size = x.new_ones(x.shape[0], x.shape[1], 1)
    new_size = plan.sum(size)
    plain_avg = method.push is None and method.eta == 0 and not method.recenter and method.clip_tau is None
    if method.size_mode == "avg" and plain_avg:
        return plan.sum(x * size) / new_size, new_size

    p = num_protected
    norms = x.norm(dim=-1, keepdim=True)
    if method.size_mode == "avg":
        w = size
    elif method.size_mode == "norm":
        w = size * norms / norms[:, p:].mean(dim=1, keepdim=True)
    else:  # "off": every token counts once, whatever it already holds
        w = torch.ones_like(size)
    x_keep = plan.representatives(x)
    merged = plan.sum(size) > plan.representatives(size)  # slots that absorbed something

    if method.push is None:
        out = plan.sum(x * w) / plan.sum(w)
    else:
        alpha, beta0, delta = method.push
        s_k = plan.representatives(size)
        w_k = plan.representatives(w)
        w_u = plan.sum(w) - w_k  # weight of what each slot absorbs
        x_u = (plan.sum(x * w) - x_keep * w_k) / w_u.clamp_min(1e-12)
        s_u = new_size - s_k
        mean_s = size[:, p:].mean(dim=1, keepdim=True)
        beta = beta0 * (s_k / mean_s) ** delta
        lam = torch.minimum(alpha * s_u / s_k, beta).clamp(0.0, 1.0)
        out = torch.where(merged, x_keep + lam * (x_u - x_keep), x_keep)
    if method.eta:
        out = torch.where(merged, (1 - method.eta) * out + method.eta * x_keep, out)
    if method.recenter:
        before = (x[:, p:] * size[:, p:]).sum(1, keepdim=True) / size[:, p:].sum(1, keepdim=True)
        after = (out[:, p:] * new_size[:, p:]).sum(1, keepdim=True) / new_size[:, p:].sum(1, keepdim=True)
        # Shift only merged tokens, by the amount that restores the mean: sum s_m * shift = S * delta
        s_merged = (new_size * merged)[:, p:].sum(1, keepdim=True)
        shift = (before - after) * new_size[:, p:].sum(1, keepdim=True) / s_merged.clamp_min(1e-12)
        out = torch.where(merged, out + shift, out)
    if method.clip_tau is not None:
        limit = method.clip_tau * norms[:, p:].mean(dim=1, keepdim=True)
        n_out = out.norm(dim=-1, keepdim=True)
        scale = torch.where(merged & (n_out > limit), limit / n_out.clamp_min(1e-12), torch.ones_like(n_out))
        out = out * scale
    return out, new_size
