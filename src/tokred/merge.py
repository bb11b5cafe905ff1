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
    s_k = plan.representatives(size)
    merged = new_size > s_k  # slots that absorbed something
    sum_xw, sum_w = plan.sum(x * w), plan.sum(w)

    # Every rule below is out = a * x_keep + b * sum_xw with per-slot scalars a, b: the [B, K, C]
    # tensors are touched once (one addcmul) whatever the rule.
    if method.push is None:
        a, b = torch.zeros_like(sum_w), 1.0 / sum_w
    else:
        # x_k + lam (xbar_U - x_k) with xbar_U = (sum_xw - w_k x_k) / w_U and w_U = sum_w - w_k
        alpha, beta0, delta = method.push
        w_u = sum_w - plan.representatives(w)
        mean_s = size[:, p:].mean(dim=1, keepdim=True)
        lam = torch.minimum(alpha * (new_size - s_k) / s_k, beta0 * (s_k / mean_s) ** delta).clamp(0.0, 1.0)
        lam_u = torch.where(merged, lam / w_u.clamp_min(1e-12), torch.zeros_like(lam))
        a, b = 1.0 - lam_u * sum_w, lam_u
    if method.eta:
        eta = torch.where(merged, torch.full_like(a, method.eta), torch.zeros_like(a))
        a, b = (1 - eta) * a + eta, (1 - eta) * b
    a = torch.where(merged, a, torch.ones_like(a))  # untouched slots keep their token exactly
    b = torch.where(merged, b, torch.zeros_like(b))
    out = torch.addcmul(x_keep * a, sum_xw, b)

    if method.recenter:
        # Shift only merged tokens, by the amount that restores the size-weighted mean of the patch
        # tokens: sum_m s_m * shift = S * (mean before - mean after). Weighted sums as matmuls.
        before = size[:, p:].transpose(1, 2) @ x[:, p:]
        after = new_size[:, p:].transpose(1, 2) @ out[:, p:]
        s_merged = (new_size * merged)[:, p:].sum(1, keepdim=True)
        shift = (before - after) / s_merged.clamp_min(1e-12)
        out = torch.addcmul(out, merged.to(out.dtype), shift)
    if method.clip_tau is not None:
        limit = method.clip_tau * norms[:, p:].mean(dim=1, keepdim=True)
        n_out = out.norm(dim=-1, keepdim=True)
        out = out * torch.where(merged & (n_out > limit), limit / n_out.clamp_min(1e-12), torch.ones_like(n_out))
    return out, new_size
