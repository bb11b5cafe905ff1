"""Reduction schedules: how many patch tokens each block removes.

A schedule is resolved once per model into a list `r_l` (one entry per block) by simulating the token
count through the network, so the 50% cap always refers to the patch tokens that actually enter a
block (protected CLS/distill tokens excluded). Forms (SPEC §2, §3.4):

- ``13``                      constant r (ToMe)
- ``(13, -0.5)``              r with inflection, as ToMe's ``parse_r``
- ``[8, 8, 4, ...]``          explicit per-block list, padded with zeros
- ``keep=0.6`` / ``keep=[...]`` per-block keep ratio κ_l: r_l = min(round((1-κ_l)·n_l), n_l // 2)
- ``layers="L0-2"``           restrict any of the above to a layer set (others get r = 0)
- ``tile=8``                  round every kept count (protected tokens included) to a tile multiple
- named keep profiles (``uniform``, ``early``, ``mid``, ``late``): `profile_keep`
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence


def ramp_r(num_layers: int, r: int, inflection: float = 0.0) -> list[int]:
    """ToMe's (r, inflection) schedule: a linear ramp whose mean is r (inflection -1: decreasing)."""
    lo = int(r * (1.0 - inflection))
    hi = 2 * r - lo
    if num_layers == 1:
        return [lo]
    step = (hi - lo) / (num_layers - 1)
    return [int(lo + step * i) for i in range(num_layers)]


def parse_layers(spec: str | Iterable[int] | None, num_layers: int) -> list[int]:
    """'L0', 'L0-2', 'L0,L3', 'all', None (all) or an iterable of block indices -> sorted indices."""
    if spec is None or (isinstance(spec, str) and spec.lower() == "all"):
        return list(range(num_layers))
    if isinstance(spec, str):
        out: set[int] = set()
        for part in spec.replace(" ", "").split(","):
            m = re.fullmatch(r"L?(\d+)(?:-L?(\d+))?", part)
            if not m:
                raise ValueError(f"layer set {spec!r}: cannot parse {part!r} (use e.g. 'L0', 'L0-2', 'all')")
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) is not None else a
            out.update(range(a, b + 1))
        layers = sorted(out)
    else:
        layers = sorted({int(i) for i in spec})
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"layer set {spec!r}: blocks {bad} outside 0..{num_layers - 1}")
    return layers


PROFILES = ("uniform", "early", "late", "early_mid_late")


def profile_keep(name: str, num_layers: int, keep: float, *, early_boost: float = 0.1, late_k: int = 3
                 ) -> list[float]:
    """Per-block keep ratios of the named profiles (SPEC §3.4; summary §1.2 A, §3.3), one free `keep`.

    uniform: `keep` in every block. early ("early boost"): blocks 0-2 keep `keep - early_boost`, the
    rest `keep`. late ("late conservative"): the last `late_k` blocks do not merge, the others keep
    `keep`. early_mid_late (the summary's policy): early boost, `keep` in the middle, no merge in the
    last `late_k` blocks. Ratios apply to the tokens entering each block (the 50% cap still holds).
    """
    if not 0 <= late_k <= num_layers:
        raise ValueError(f"schedule late_k: {late_k} outside 0..{num_layers}")
    early = min(1.0, max(0.0, keep - early_boost))
    late_start = num_layers - late_k
    if name == "uniform":
        return [keep] * num_layers
    if name == "early":
        return [early if i < 3 else keep for i in range(num_layers)]
    if name == "late":
        return [keep if i < late_start else 1.0 for i in range(num_layers)]
    if name == "early_mid_late":
        return [early if i < 3 else keep if i < late_start else 1.0 for i in range(num_layers)]
    raise ValueError(f"schedule profile {name!r}: expected one of {PROFILES}")


def _tile_r(target_total: int, total_in: int, cap: int, tile: int) -> int | None:
    """r giving the tile multiple nearest `target_total` (ties: the larger) among totals reachable with
    0 <= r <= cap from `total_in` tokens; None when no multiple is reachable."""
    lo = (target_total // tile) * tile
    hi = lo if lo == target_total else lo + tile
    # The reachable totals form an interval around target_total, so if lo (hi) is out of reach every
    # smaller (larger) multiple is too: lo and hi are the only candidates.
    for total in sorted({lo, hi}, key=lambda t: (abs(t - target_total), -t)):
        if 0 <= total_in - total <= cap:
            return total_in - total
    return None


def _apply_tile(rs: list[int], num_patches: int, tile: int, num_protected: int) -> list[int]:
    out, n, n_plain = [], num_patches, num_patches
    for ri in rs:
        n_plain -= ri  # patch tokens the unrounded schedule keeps after this block
        r = 0
        if ri > 0:
            cap = n // 2
            r = _tile_r(n_plain + num_protected, n + num_protected, cap, tile)
            if r is None:
                r = min(max(n - n_plain, 0), cap)
        out.append(r)
        n -= r
    return out


def resolve(num_layers: int, num_patches: int, r=None, *, keep=None, layers=None, tile: int | None = None,
            num_protected: int = 1) -> list[int]:
    """Resolve a schedule to the r actually applied in each block (caps included).

    `num_patches` is the number of non-protected tokens entering block 0.

    Tile rounding (`tile`, default None: off). Every reducing block's r is adjusted so that the
    tokens kept after it, counting the `num_protected` CLS/distill tokens, are the multiple of `tile`
    nearest to what the *unrounded* schedule keeps after that block (ties: keep more), among the
    counts reachable with 0 <= r <= (patch tokens entering the block) // 2. Rounding errors therefore
    do not accumulate: the schedule (and its GFLOPs) tracks the unrounded one within half a tile per
    block. If no multiple is reachable, the block removes what the unrounded schedule would (within
    the cap). Blocks with r = 0 before rounding stay 0.
    """
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"schedule tile: expected a positive int or None, got {tile!r}")
    if isinstance(num_protected, bool) or not isinstance(num_protected, int) or num_protected < 0:
        raise ValueError(f"schedule num_protected: expected an int >= 0, got {num_protected!r}")
    if (r is None) == (keep is None):
        raise ValueError("schedule: give exactly one of r or keep")
    if keep is not None:
        keeps = [float(keep)] * num_layers if isinstance(keep, (int, float)) else [float(k) for k in keep]
        if len(keeps) > num_layers:
            raise ValueError(f"schedule keep: {len(keeps)} ratios for {num_layers} blocks")
        keeps += [1.0] * (num_layers - len(keeps))
        bad = [k for k in keeps if not 0.0 <= k <= 1.0]
        if bad:
            raise ValueError(f"schedule keep: ratios must lie in [0, 1], got {bad}")
        wanted = None
    else:
        if isinstance(r, bool):
            raise ValueError(f"schedule r: expected int, (r, inflection) or list, got {r!r}")
        if isinstance(r, int):
            wanted = ramp_r(num_layers, r, 0.0)
        elif isinstance(r, tuple):
            if len(r) != 2:
                raise ValueError(f"schedule r: a tuple must be (r, inflection), got {r!r}")
            wanted = ramp_r(num_layers, int(r[0]), float(r[1]))
        elif isinstance(r, (list, Sequence)):
            wanted = [int(v) for v in r]
            if len(wanted) > num_layers:
                raise ValueError(f"schedule r: {len(wanted)} entries for {num_layers} blocks")
            wanted += [0] * (num_layers - len(wanted))
        else:
            raise ValueError(f"schedule r: expected int, (r, inflection) or list, got {r!r}")
        if any(v < 0 for v in wanted):
            raise ValueError(f"schedule r: negative entries in {wanted}")
    active = set(parse_layers(layers, num_layers))

    out, n = [], num_patches
    for i in range(num_layers):
        if i not in active:
            ri = 0
        elif wanted is not None:
            ri = wanted[i]
        else:
            ri = int(round((1.0 - keeps[i]) * n))
        ri = min(ri, n // 2)
        out.append(ri)
        n -= ri
    if tile is not None:
        out = _apply_tile(out, num_patches, tile, num_protected)
    return out


def token_counts(num_patches: int, rs: Sequence[int]) -> list[int]:
    """Patch tokens entering each block under a resolved schedule, plus the final count."""
    counts = [num_patches]
    for ri in rs:
        counts.append(counts[-1] - ri)
    return counts
