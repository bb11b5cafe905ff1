"""Selectors: which tokens a reducing block keeps and where the others go, as a `MergePlan`.

`SELECTORS` maps each `Method.selector` name to its function; a selector takes a `Selection` (what
the block knows at that point) and returns (plan or None, attention output or None). ToMe's bipartite
soft matching (docs/method.md §2) and the head-diversity selector `hquota_ff` (hub quota +
farthest-first on per-head attention inflow, then assignment, §3.1) are the two.

All steps are batched: the farthest-first loop runs over the K kept tokens, never over images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dataclasses import dataclass
from typing import Callable

from .merge import MergePlan, check_finite


def head_inflow(attn: torch.Tensor) -> torch.Tensor:
    """phi [B, N, H]: attention received by each token in each head, summed over all queries."""
    return attn.sum(dim=2).transpose(1, 2)


def hquota_ff_keep(phi: torch.Tensor, size: torch.Tensor | None, keep: int, q: float) -> torch.Tensor:
    """Indices [B, keep] (ascending) of the kept tokens among the candidates of phi [B, n, H].

    Hubs: the top ceil(q*keep) tokens by total inflow x size. Then farthest-first in phi space
    (phi L2-normalised per token): repeatedly add the token farthest (in its minimum distance) from
    the kept set; ties go to the lower index. With q = 0 the top-scored token seeds the set.
    Raises FloatingPointError if phi holds NaN/inf (NaN compares false: the picks would be garbage).
    """
    B, n, _ = phi.shape
    check_finite(phi, "hquota_ff head inflow phi")
    # Selection is discrete (no gradient), and one memory layout keeps the matmul's rounding (and so
    # near ties) the same for every caller.
    phi = phi.detach().contiguous()
    if keep >= n:
        return torch.arange(n, device=phi.device).expand(B, n)
    score = phi.sum(-1) * (size[..., 0] if size is not None else 1.0)
    n_hub = min(keep, max(1, math.ceil(q * keep))) if keep > 0 else 0
    hubs = score.topk(n_hub, dim=-1, sorted=True).indices
    u = F.normalize(phi, dim=-1)
    # For unit vectors |u_i - u_j|^2 = 2 - 2 cos, so "largest minimum distance to the kept set" is
    # "smallest maximum cosine to it": the loop runs on cosines, one matmul and no extra passes.
    # The diagonal is set to 3 (above any cosine) so a picked token's running value becomes 3 and
    # it is never picked again.
    cos = u @ u.transpose(1, 2)
    cos.diagonal(dim1=1, dim2=2).fill_(3.0)
    rows = cos.view(B * n, n)
    offset = torch.arange(B, device=phi.device) * n
    # running similarity to the kept set = max over the hubs' rows
    d = rows.index_select(0, (hubs + offset[:, None]).view(-1)).view(B, n_hub, n).amax(1)
    _farthest_first(rows, d, offset, keep - n_hub)
    return (d > 2.5).nonzero()[:, 1].view(B, keep)


def _farthest_first(rows: torch.Tensor, d: torch.Tensor, offset: torch.Tensor, picks: int) -> None:
    """`picks` farthest-first rounds, in place on the running similarity d [B, n]: each image picks its
    token of lowest d (first index on ties) and takes the max with that token's row of `rows` [B*n, n].

    Batched over images; the loop is over picks. On CPU the rounds run on numpy views of the same
    memory: each round is three tiny calls, and numpy's per-call cost is a third of torch's (measured
    4.4 vs 12.4 us per round at batch 1); at small batches these rounds are half the selector's time.
    """
    if d.device.type == "cpu" and d.dtype in (torch.float32, torch.float64) and not torch.jit.is_tracing():
        rows_np, d_np, off_np = rows.numpy(), d.numpy(), offset.numpy()
        if d_np.shape[0] == 1:  # latency case: the picked row is a view, no gather (1.0 vs 2.8 us per round)
            d_1 = d_np[0]
            for _ in range(picks):
                np.maximum(d_1, rows_np[d_1.argmin()], out=d_1)  # argmin: first minimum
            return
        for _ in range(picks):
            np.maximum(d_np, rows_np[d_np.argmin(axis=1) + off_np], out=d_np)
        return
    for _ in range(picks):
        d.copy_(torch.maximum(d, rows.index_select(0, d.argmin(dim=-1) + offset)))


def assign_plan(match: torch.Tensor, keep_idx: torch.Tensor, num_prefix_tokens: int, topr: int | None = None
                ) -> MergePlan:
    """Plan that keeps `keep_idx` (patch-token indices, ascending, [B, K]) and sends every other patch
    token to the kept token of highest cosine similarity of `match` [B, N, C].

    Output order: protected tokens, then kept tokens in ascending input order. With `topr`, a kept
    token absorbs at most its topr most similar assigned tokens; the rest go to their next best.
    """
    B, N, _ = match.shape
    p = num_prefix_tokens
    n = N - p
    K = keep_idx.shape[1]
    dev = match.device
    m = F.normalize(match[:, p:], dim=-1)
    is_kept = torch.zeros(B, n, dtype=torch.bool, device=dev).scatter_(
        1, keep_idx, torch.ones_like(keep_idx, dtype=torch.bool))
    # Only the n - K merged tokens need a target: score them alone against the kept ones.
    drop_idx = (~is_kept).nonzero()[:, 1].view(B, n - K)
    rows = torch.arange(B, device=dev)[:, None] * n
    flat = m.reshape(B * n, -1)
    kept_feat = flat.index_select(0, (keep_idx + rows).view(-1)).view(B, K, -1)
    drop_feat = flat.index_select(0, (drop_idx + rows).view(-1)).view(B, n - K, -1)
    sim = drop_feat @ kept_feat.transpose(1, 2)  # [B, n - K, K]
    if topr is not None:
        if topr * K < n - K:
            raise ValueError(f"topr={topr}: {K} kept tokens cannot absorb {n - K} tokens")
        sim = _cap_assignment(sim, topr)
    slot = torch.empty(B, n, dtype=torch.long, device=dev)
    slot.scatter_(1, keep_idx, torch.arange(p, p + K, device=dev).expand(B, K))
    slot.scatter_(1, drop_idx, sim.argmax(-1) + p)  # rank of the best kept token, as a slot
    index = torch.cat([torch.arange(p, device=dev).expand(B, p), slot], dim=1)
    rep = torch.cat([torch.arange(p, device=dev).expand(B, p), keep_idx + p], dim=1)
    return MergePlan(index=index, num_out=p + K, rep=rep)


def _cap_assignment(sim: torch.Tensor, topr: int) -> torch.Tensor:
    """Mask similarities [B, merged, K] so that no kept token receives more than `topr` merged tokens.

    Rounds: every unassigned token proposes to its best remaining kept token; each kept token
    accepts its `topr - already accepted` most similar proposals; rejected tokens lose that option.
    """
    B, n, K = sim.shape
    sim = sim.clone()
    accepted = torch.zeros(B, K, dtype=torch.long, device=sim.device)
    todo = torch.ones(B, n, dtype=torch.bool, device=sim.device)
    final = torch.full((B, n), -1, dtype=torch.long, device=sim.device)
    for _ in range(K + 1):
        if not todo.any():
            break
        best_sim, best = sim.max(-1)
        # order proposals by (kept token, descending similarity); rank them within each kept token
        key = torch.where(todo, best.double() * 4 + (1 - best_sim.double()), math.inf)
        order = key.argsort(dim=-1)
        sb = best.gather(1, order)
        valid = todo.gather(1, order)
        counts = torch.zeros(B, K, dtype=torch.long, device=sim.device).scatter_add_(1, sb, valid.long())
        start = counts.cumsum(-1) - counts
        rank = torch.arange(n, device=sim.device).expand(B, n) - start.gather(1, sb)
        ok_sorted = valid & (rank < (topr - accepted).gather(1, sb))
        ok = torch.zeros_like(todo).scatter_(1, order, ok_sorted)
        final = torch.where(ok, best, final)
        accepted += torch.zeros_like(accepted).scatter_add_(1, best, ok.long())
        rejected = todo & ~ok
        sim[rejected.nonzero(as_tuple=True) + (best[rejected],)] = -math.inf
        todo = rejected
    out = torch.full_like(sim, -math.inf)
    assigned = final >= 0
    out[assigned.nonzero(as_tuple=True) + (final[assigned],)] = 0.0
    return out


def bipartite_plan(metric: torch.Tensor, r: int, num_prefix_tokens: int) -> MergePlan | None:
    """ToMe's bipartite soft matching (docs/method.md §2) expressed as a plan.

    Tokens alternate into sets A (even positions) and B (odd); each A token proposes its most
    cosine-similar B token; the r best-scoring A tokens merge into their B partner. Protected tokens
    (the first `num_prefix_tokens`) are scored -inf so they neither merge nor absorb. Output order is
    [protected, unmerged A (ascending), B] — ToMe's order, which matters because the next block's
    bipartite split is positional.
    """
    B, N, _ = metric.shape
    r = min(r, (N - num_prefix_tokens) // 2)
    if r <= 0:
        return None
    with torch.no_grad():
        check_finite(metric, "bipartite matching metric")
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2], metric[:, 1::2]
        scores = a @ b.transpose(-1, -2)
        n_a, n_b = a.shape[1], b.shape[1]
        prot_a, prot_b = (num_prefix_tokens + 1) // 2, num_prefix_tokens // 2
        if prot_a:
            scores[:, :prot_a, :] = -math.inf
        if prot_b:
            scores[:, :, :prot_b] = -math.inf
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)
        unm_idx, src_idx = edge_idx[:, r:], edge_idx[:, :r]
        if num_prefix_tokens:
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


@dataclass
class Selection:
    """What a reducing block hands its selector.

    x [B, N, C] hidden states entering the block; k [B, H, N, d] its keys; size [B, N, 1] or None;
    r the tokens to remove (before the 50% cap); inflow(need_out) -> (phi [B, N, H], A @ V or None),
    the block's explicit attention, computed only by selectors that need it."""

    x: torch.Tensor
    k: torch.Tensor
    size: torch.Tensor | None
    r: int
    num_prefix_tokens: int
    method: object  # tokred.methods.Method
    inflow: Callable[[bool], tuple[torch.Tensor, torch.Tensor | None]]


def _match_feature(sel: Selection) -> torch.Tensor:
    """The match feature of docs/method.md §3.1: keys averaged over heads (`k`, ToMe's) or the hidden state."""
    return sel.k.mean(1) if sel.method.match == "k" else sel.x


def bipartite(sel: Selection) -> tuple[MergePlan | None, None]:
    """ToMe's bipartite soft matching on the method's match feature."""
    metric = sel.k.mean(1) if sel.method.match == "k" else F.normalize(sel.x, dim=-1)
    return bipartite_plan(metric, sel.r, sel.num_prefix_tokens), None


def hquota_ff(sel: Selection) -> tuple[MergePlan, torch.Tensor | None]:
    """Hub quota + farthest-first on head inflow (`hquota_ff_keep`), then assignment (`assign_plan`).
    The attention output comes from the same explicit softmax when the merge space is `x`."""
    m, p = sel.method, sel.num_prefix_tokens
    phi, out = sel.inflow(m.space == "x")
    n = sel.x.shape[1] - p
    r = min(sel.r, n // 2)
    keep_idx = hquota_ff_keep(phi[:, p:], sel.size[:, p:] if sel.size is not None else None, n - r, m.q)
    return assign_plan(_match_feature(sel), keep_idx, p, m.topr), out


SELECTORS: dict[str, Callable[[Selection], tuple[MergePlan | None, torch.Tensor | None]]] = {
    "bipartite": bipartite,
    "hquota_ff": hquota_ff,
}
