"""Head-diversity token selection (`hquota_ff`, SPEC §3.1) and assignment of merged tokens.

All steps are batched: the farthest-first loop runs over the K kept tokens, never over images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .merge import MergePlan


def head_inflow(attn: torch.Tensor) -> torch.Tensor:
    """phi [B, N, H]: attention received by each token in each head, summed over all queries."""
    return attn.sum(dim=2).transpose(1, 2)


def hquota_ff_keep(phi: torch.Tensor, size: torch.Tensor | None, keep: int, q: float) -> torch.Tensor:
    """Indices [B, keep] (ascending) of the kept tokens among the candidates of phi [B, n, H].

    Hubs: the top ceil(q*keep) tokens by total inflow x size. Then farthest-first in phi space
    (phi L2-normalised per token): repeatedly add the token farthest (in its minimum distance) from
    the kept set; ties go to the lower index. With q = 0 the top-scored token seeds the set.
    """
    B, n, _ = phi.shape
    if keep >= n:
        return torch.arange(n, device=phi.device).expand(B, n)
    score = phi.sum(-1) * (size[..., 0] if size is not None else 1.0)
    n_hub = min(keep, max(1, math.ceil(q * keep))) if keep > 0 else 0
    hubs = score.topk(n_hub, dim=-1, sorted=True).indices
    u = F.normalize(phi, dim=-1)
    # Squared distances of unit vectors (2 - 2 cos) in one matmul; the diagonal is set to -1 so that
    # a picked token's running distance drops to -1 and it can never be picked again.
    dist = (2 - 2 * u @ u.transpose(1, 2)).clamp_min(0)
    dist = torch.where(torch.eye(n, dtype=torch.bool, device=phi.device), torch.full_like(dist, -1.0), dist)
    # running distance to the kept set = min over the hubs' rows
    d = dist.gather(1, hubs[..., None].expand(-1, -1, n)).amin(1)
    rows = dist.view(B * n, n)
    offset = torch.arange(B, device=phi.device) * n
    for _ in range(keep - n_hub):  # four batched ops per pick; the loop is over picks, not images
        pick = d.argmax(dim=-1)  # first maximal index: ties go to the lower index
        d = torch.minimum(d, rows.index_select(0, pick + offset))  # each image's picked row
    return (d < -0.5).nonzero()[:, 1].view(B, keep)


def assign_plan(match: torch.Tensor, keep_idx: torch.Tensor, num_protected: int, topr: int | None = None
                ) -> MergePlan:
    """Plan that keeps `keep_idx` (patch-token indices, ascending, [B, K]) and sends every other patch
    token to the kept token of highest cosine similarity of `match` [B, N, C].

    Output order: protected tokens, then kept tokens in ascending input order. With `topr`, a kept
    token absorbs at most its topr most similar assigned tokens; the rest go to their next best.
    """
    B, N, _ = match.shape
    p = num_protected
    n = N - p
    K = keep_idx.shape[1]
    dev = match.device
    m = F.normalize(match[:, p:], dim=-1)
    is_kept = torch.zeros(B, n, dtype=torch.bool, device=dev).scatter_(
        1, keep_idx, torch.ones_like(keep_idx, dtype=torch.bool))
    kept_feat = m.gather(1, keep_idx[..., None].expand(-1, -1, m.shape[-1]))
    sim = m @ kept_feat.transpose(1, 2)  # [B, n, K]
    if topr is not None:
        if topr * K < n - K:
            raise ValueError(f"topr={topr}: {K} kept tokens cannot absorb {n - K} tokens")
        sim = _cap_assignment(sim, is_kept, topr)
    target = sim.argmax(-1)  # [B, n] index into kept list
    rank_of = torch.full((B, n), -1, dtype=torch.long, device=dev)
    rank_of.scatter_(1, keep_idx, torch.arange(K, device=dev).expand(B, K))
    slot = torch.where(is_kept, rank_of, target) + p
    index = torch.cat([torch.arange(p, device=dev).expand(B, p), slot], dim=1)
    rep = torch.cat([torch.arange(p, device=dev).expand(B, p), keep_idx + p], dim=1)
    return MergePlan(index=index, num_out=p + K, rep=rep)


def _cap_assignment(sim: torch.Tensor, is_kept: torch.Tensor, topr: int) -> torch.Tensor:
    """Mask similarities so that no kept token receives more than `topr` merged tokens.

    Rounds: every unassigned token proposes to its best remaining kept token; each kept token
    accepts its `topr - already accepted` most similar proposals; rejected tokens lose that option.
    """
    B, n, K = sim.shape
    sim = sim.clone()
    accepted = torch.zeros(B, K, dtype=torch.long, device=sim.device)
    todo = ~is_kept
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
    return torch.where(is_kept[..., None], sim, out)
