"""Reduction schedules: how many patch tokens each block removes.

A schedule is resolved once per model into a list `r_l` (one entry per block) by simulating the token
count through the network, so the 50% cap always refers to the patch tokens that actually enter a
block (protected CLS/distill tokens excluded). Forms (docs/method.md §2, §3.4):

- ``13``                      constant r (ToMe)
- ``(13, -0.5)``              r with inflection, as ToMe's ``parse_r``
- ``[8, 8, 4, ...]``          explicit per-block list, padded with zeros
- ``keep=0.6`` / ``keep=[...]`` per-block keep ratio κ_l: r_l = min(round((1-κ_l)·n_l), n_l // 2)
- ``layers="L0-2"``           restrict any of the above to a layer set (others get r = 0)
- ``tile=8``                  round every kept count (protected tokens included) to a tile multiple
- named keep shapes (``uniform``, ``early``, ``late``, ``early_mid_late``, ``fixed_early_mid_late``):
  `keep_shape_ratios`

Every number may be a Python, numpy or 0-d torch scalar (``np.int64(13)``, ``torch.tensor(0.7)``);
a list may also be a 1-d array or tensor. Token counts (list entries, ``tile``, layer indices) must be
whole numbers; ``r`` itself may be real, as in ToMe's ``parse_r`` (``13.5`` ramps 13 -> 14).
Anything else (bools, strings, arrays of other shapes, NaN) raises ValueError naming the key.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Iterable, Sequence


def _number(value, key: str, where: str = "schedule") -> int | float:
    """`value` as a Python int or float. Accepts Python/numpy real scalars and 0-d numpy arrays or torch
    tensors (duck-typed through `.ndim`/`.item()`: this module must not import torch). Refuses bools,
    complex numbers, strings, NaN/inf and anything with a dimension, naming `where` and `key`."""
    v = value
    if not isinstance(v, numbers.Number) and hasattr(v, "ndim") and hasattr(v, "item"):
        if v.ndim != 0:
            raise ValueError(f"{where} {key}: expected a number, got an array of shape {tuple(v.shape)}: "
                             f"{value!r}")
        v = v.item()
    # np.bool_ is no numbers.Number and its .item() is a bool, so bools of every kind end here
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{where} {key}: expected a number, got {type(value).__name__} {value!r}")
    if isinstance(v, numbers.Integral):
        return int(v)
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{where} {key}: expected a finite number, got {value!r}")
    return v


def _count(value, key: str, where: str = "schedule") -> int:
    """A whole number (int, numpy integer, 0-d integer tensor, or a real with no fraction such as 8.0)."""
    v = _number(value, key, where)
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"{where} {key}: expected a whole number, got {value!r}")
        v = int(v)
    return v


def _is_scalar(value) -> bool:
    """True for anything `_number` would treat as one number (or refuse as one): not a list form."""
    return isinstance(value, (numbers.Number, str, bytes)) or getattr(value, "ndim", None) == 0


def _entries(value, key: str, where: str = "schedule") -> list:
    """The elements of a list form: a list, range or other sequence, or a 1-d numpy array / torch tensor."""
    if (isinstance(value, (str, bytes)) or getattr(value, "ndim", 1) != 1
            or not (isinstance(value, Sequence) or hasattr(value, "ndim"))):
        raise ValueError(f"{where} {key}: expected a number or a list of numbers, got {type(value).__name__} "
                         f"{value!r}")
    return list(value)


def ramp_r(num_layers: int, r: float, inflection: float = 0.0) -> list[int]:
    """ToMe's (r, inflection) schedule: a linear ramp whose mean is r (inflection -1: decreasing).

    Same arithmetic as ToMe's `parse_r` (tome/utils.py), so a real r ramps between its neighbours."""
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
    elif _is_scalar(spec):
        layers = [_count(spec, "layers")]
    else:
        layers = sorted({_count(i, "layers") for i in _entries(spec, "layers")})
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"layer set {spec!r}: blocks {bad} outside 0..{num_layers - 1}")
    return layers


KEEP_SHAPES = ("uniform", "early", "late", "early_mid_late", "fixed_early_mid_late")
EARLY_KEEP_OF = ("input", "block")


def keep_shape_ratios(name: str, num_layers: int, keep: float, *, early_boost: float = 0.1, late_k: int = 3,
                      early_keep: float = 0.67, early_keep_of: str = "input") -> list[float]:
    """Per-block keep ratios of the named keep shapes, one free `keep`.

    uniform: `keep` in every block. early ("early boost"): blocks 0-2 keep `keep - early_boost`, the
    rest `keep`. late ("late conservative"): the last `late_k` blocks do not merge, the others keep
    `keep`. early_mid_late: early boost, `keep` in the middle, no merge in the last `late_k` blocks.
    fixed_early_mid_late (the research notes' policy, docs/method.md §3.4): blocks 0-2 at a *fixed*
    `early_keep` that FLOPs matching does not move, the free `keep` in the middle, no merge in the last
    `late_k` blocks. `early_keep_of` says what early_keep is a share of (*interpretation*): "input"
    (default) = of the input patch tokens left after block 2, i.e. each of blocks 0-2 keeps
    early_keep ** (1/3) of the tokens entering it; "block" = each of blocks 0-2 keeps early_keep of the
    tokens entering it (0.67 leaves 0.67^3 = 30% after block 2, cheaper than ToMe r=13 on DeiT-S's
    geometry whatever the rest does, so it cannot be FLOPs-matched to it).
    Ratios apply to the tokens entering each block (the 50% cap still holds). Raises ValueError for an
    unknown shape, late_k outside 0..num_layers, early_keep outside [0, 1] or an unknown early_keep_of.
    """
    keep, early_boost = _number(keep, "keep"), _number(early_boost, "early_boost")
    late_k = _count(late_k, "late_k")
    if not 0 <= late_k <= num_layers:
        raise ValueError(f"schedule late_k: {late_k} outside 0..{num_layers}")
    early = min(1.0, max(0.0, keep - early_boost))
    if name == "fixed_early_mid_late":
        early_keep = _number(early_keep, "early_keep")
        if not 0.0 <= early_keep <= 1.0:
            raise ValueError(f"schedule early_keep: {early_keep} outside [0, 1]")
        if early_keep_of not in EARLY_KEEP_OF:
            raise ValueError(f"schedule early_keep_of: {early_keep_of!r}, expected one of {EARLY_KEEP_OF}")
        early = early_keep ** (1 / 3) if early_keep_of == "input" else early_keep
    late_start = num_layers - late_k
    if name == "uniform":
        return [keep] * num_layers
    if name == "early":
        return [early if i < 3 else keep for i in range(num_layers)]
    if name == "late":
        return [keep if i < late_start else 1.0 for i in range(num_layers)]
    if name in ("early_mid_late", "fixed_early_mid_late"):
        return [early if i < 3 else keep if i < late_start else 1.0 for i in range(num_layers)]
    raise ValueError(f"schedule keep_shape {name!r}: expected one of {KEEP_SHAPES}")


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


def _apply_tile(rs: list[int], num_patches: int, tile: int, num_prefix_tokens: int) -> list[int]:
    out, n, n_plain = [], num_patches, num_patches
    for ri in rs:
        n_plain -= ri  # patch tokens the unrounded schedule keeps after this block
        r = 0
        if ri > 0:
            cap = n // 2
            r = _tile_r(n_plain + num_prefix_tokens, n + num_prefix_tokens, cap, tile)
            if r is None:
                r = min(max(n - n_plain, 0), cap)
        out.append(r)
        n -= r
    return out


def resolve(num_layers: int, num_patches: int, r=None, *, keep=None, layers=None, tile: int | None = None,
            num_prefix_tokens: int = 1) -> list[int]:
    """Resolve a schedule to the r actually applied in each block (caps included).

    `num_patches` is the number of non-protected tokens entering block 0.

    Tile rounding (`tile`, default None: off). Every reducing block's r is adjusted so that the
    tokens kept after it, counting the `num_prefix_tokens` CLS/distill tokens, are the multiple of `tile`
    nearest to what the *unrounded* schedule keeps after that block (ties: keep more), among the
    counts reachable with 0 <= r <= (patch tokens entering the block) // 2. Rounding errors therefore
    do not accumulate: the schedule (and its GFLOPs) tracks the unrounded one within half a tile per
    block. If no multiple is reachable, the block removes what the unrounded schedule would (within
    the cap). Blocks with r = 0 before rounding stay 0.
    """
    if tile is not None:
        tile = _count(tile, "tile")
        if tile < 1:
            raise ValueError(f"schedule tile: expected a positive int or None, got {tile!r}")
    num_prefix_tokens = _count(num_prefix_tokens, "num_prefix_tokens")
    if num_prefix_tokens < 0:
        raise ValueError(f"schedule num_prefix_tokens: expected an int >= 0, got {num_prefix_tokens!r}")
    if (r is None) == (keep is None):
        raise ValueError("schedule: give exactly one of r or keep")
    if keep is not None:
        if _is_scalar(keep):
            keeps = [float(_number(keep, "keep"))] * num_layers
        else:
            keeps = [float(_number(k, "keep")) for k in _entries(keep, "keep")]
        if len(keeps) > num_layers:
            raise ValueError(f"schedule keep: {len(keeps)} ratios for {num_layers} blocks")
        keeps += [1.0] * (num_layers - len(keeps))
        bad = [k for k in keeps if not 0.0 <= k <= 1.0]
        if bad:
            raise ValueError(f"schedule keep: ratios must lie in [0, 1], got {bad}")
        wanted = None
    else:
        if isinstance(r, tuple):  # ToMe's (r, inflection); a list is per block
            if len(r) != 2:
                raise ValueError(f"schedule r: a tuple must be (r, inflection), got {r!r}")
            rr, inflection = _number(r[0], "r"), _number(r[1], "r inflection")
            if rr < 0:
                raise ValueError(f"schedule r: negative r in {r!r}")
            wanted = ramp_r(num_layers, rr, inflection)
        elif _is_scalar(r):
            rr = _number(r, "r")
            if rr < 0:
                raise ValueError(f"schedule r: negative r {r!r}")
            wanted = ramp_r(num_layers, rr, 0.0)
        else:
            wanted = [_count(v, "r") for v in _entries(r, "r")]
            if len(wanted) > num_layers:
                raise ValueError(f"schedule r: {len(wanted)} entries for {num_layers} blocks")
            wanted += [0] * (num_layers - len(wanted))
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
        out = _apply_tile(out, num_patches, tile, num_prefix_tokens)
    return out


def token_counts(num_patches: int, rs: Sequence[int]) -> list[int]:
    """Patch tokens entering each block under a resolved schedule, plus the final count."""
    counts = [num_patches]
    for ri in rs:
        counts.append(counts[-1] - ri)
    return counts


def approx_block_flops(num_patches: int, rs: Sequence[int], dim: int, num_prefix_tokens: int = 1) -> float:
    """Multiply-adds of the transformer blocks under a resolved schedule, from token counts alone (no
    model, no torch): per block, qkv and projection (4 C^2 N) and the two attention products (2 N^2 C)
    on the N tokens entering it, the MLP (8 C^2 N') on the N' tokens left after its merge. The selector's
    extra work, merges and the patch embedding are left out: good for telling a reachable FLOPs target
    from a clearly unreachable one, not for reporting (use `tokred.flops.count_flops`)."""
    total, n = 0.0, num_patches
    for r in rs:
        n_in, n_out = n + num_prefix_tokens, n - r + num_prefix_tokens
        total += 4 * dim * dim * n_in + 2 * n_in * n_in * dim + 8 * dim * dim * n_out
        n -= r
    return total
