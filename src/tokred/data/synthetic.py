"""Deterministic synthetic image-classification sets for the embedded profile.

The embedded benchmark must need no download, yet merging must matter on it as it does on ImageNet.
Tasks whose answer is read from one distinctive object are immune to ToMe (it merges the most
similar tokens first, i.e. background); the default task therefore asks the model to *count*
look-alike objects, which lives in several similar tokens (see benchmarks/CALIBRATION.md and
benchmarks/CALIBRATION.md).

Task ``count_disks``: count the red disks (``min_count``..``max_count``; the label is
``count - min_count``) on a busy mosaic background among distractor disks, part of them in a colour
near the target's (orange / pink), the rest in clearly different colours. Optionally
(``shape_distractor_frac`` > 0) part of the distractors are *rings* in the target's own colour: they
differ from a target only in fine shape (a hole of radius ``ring_hole`` x r), so a target token and a
ring token look alike at the token level and merging them destroys the detail that tells them apart.

Relation variant (``partner_hue`` set): only targets with a *partner* (a disk of ``partner_hue``
touching it; with ``snap``, in a 4-neighbour grid cell, i.e. the adjacent patch) count. ``lone_frac``
of the distractors are lone target-coloured or lone partner-coloured disks, so a target token tells
nothing on its own: the answer needs attention between neighbouring tokens first, then a read-out,
i.e. computation across blocks, after the first merges. Disks of different pairs / singles keep a
rim gap of ``unit_gap`` pixels, so no lone disk ever touches another.

Every image is generated from its own random stream, seeded by ``(seed, stream, global index)``:
image ``i`` of ``make_images(task, n, seed, start)`` depends only on the task, the seed and
``start + i``, so any slice is reproducible and the set can be produced in parallel chunks. The
count is drawn first, so the labels of an index do not depend on the appearance knobs.
The training loop draws from a separate stream (``stream="train"``), so no training image can
coincide with a held-out image, whatever the seeds.

One module (over 300 lines): the task keys, their defaults and the drawing code that reads them
change together.
"""
from __future__ import annotations

import colorsys
import math
from typing import Any

import numpy as np

TASKS = ("count_disks",)

# Every knob of the generator, with its default. The defaults are the calibrated task.
TASK_DEFAULTS: dict[str, Any] = {
    "name": "count_disks",
    "img_size": 112,
    "min_count": 0,  # fewest target disks
    "max_count": 4,  # most target disks; classes = max_count - min_count + 1
    "radius_min": 3.5,  # target and distractor disk radius range, pixels
    "radius_max": 5.5,
    "target_hue": 0.0,  # hue of the target colour in degrees (0 = red)
    "target_sat": [0.75, 0.95],  # saturation / value ranges of target and distractor disks
    "target_val": [0.75, 0.95],
    "distractors_min": 3,  # number of distractor disks
    "distractors_max": 6,
    "near_colour_frac": 0.5,  # probability that a distractor has a near-target hue
    "near_hue": [25.0, 45.0],  # |hue offset| of near-colour distractors, degrees (either side)
    "far_hue_min": 70.0,  # far distractors and background stay at least this far from the target hue
    "shape_distractor_frac": 0.0,  # probability that a distractor is a target-coloured ring instead
    "ring_hole": 0.5,  # hole radius of those rings, as a fraction of the disk radius
    "partner_hue": None,  # if set: a target counts only when a disk of this hue touches it (a pair)
    "lone_frac": 0.5,  # with partner_hue: share of distractors that are lone target / partner disks
    "unit_gap": 6.0,  # with partner_hue: min rim gap between disks of different pairs / singles, pixels
    "min_gap": 1.0,  # minimal gap between the rims of two disks, pixels
    "snap": 0,  # if > 0, disk centres are put at the centres of a snap x snap grid (e.g. patches)
    "jitter": 0.0,  # with snap: centres move by up to +-jitter pixels (uniform, per axis) off the grid
    "background": "busy",  # "busy" (mosaic + gradient) or "smooth" (low-frequency gradient only)
    "cell_min": 4,  # mosaic cell size range of the busy background, pixels
    "cell_max": 14,
    "bg_sat": [0.15, 0.7],
    "bg_val": [0.25, 0.9],
    "bg_contrast": 1.0,  # weight of the mosaic: 0 = gradient only, 1 = half gradient, half mosaic
    "noise_std": 6.0,  # gaussian pixel noise, uint8 units
}

# What the curriculum's "easy" images change (large disks on a smooth background), unless the
# curriculum dict gives its own "easy" overrides.
EASY_OVERRIDES: dict[str, Any] = {"radius_min": 7.0, "radius_max": 9.0, "background": "smooth"}


def easy_task(task: dict, easy: dict | None = None) -> dict:
    """The curriculum's easy variant of `task` (tokred.data.train): `easy` task-key overrides, by default
    EASY_OVERRIDES; validated (ValueError naming the key)."""
    return resolve_task({**task, **(EASY_OVERRIDES if easy is None else easy)})


_STREAMS = {"eval": 0, "train": 1}
_MAX_PLACEMENT_TRIES = 2000


def _range(task: dict, key: str, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    v = task[key]
    if not (isinstance(v, (list, tuple)) and len(v) == 2):
        raise ValueError(f"task key {key!r} must be a [low, high] pair, got {v!r}")
    a, b = float(v[0]), float(v[1])
    if not a <= b or (lo is not None and a < lo) or (hi is not None and b > hi):
        raise ValueError(f"task key {key!r} must satisfy {lo} <= low <= high <= {hi}, got {v!r}")
    return a, b


def resolve_task(task: dict | None) -> dict:
    """Fill defaults and validate; raises ValueError naming the offending key."""
    task = dict(task or {})
    unknown = sorted(set(task) - set(TASK_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown task key(s) {unknown}; known: {sorted(TASK_DEFAULTS)}")
    t = {**TASK_DEFAULTS, **task}
    if t["name"] not in TASKS:
        raise ValueError(f"task key 'name': unknown task {t['name']!r}; known: {list(TASKS)}")

    def _int(key, lo):
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"task key {key!r} must be an integer >= {lo}, got {v!r}")
        t[key] = int(v)

    def _num(key, lo, hi=math.inf):
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not lo <= v <= hi:
            raise ValueError(f"task key {key!r} must be a number in [{lo}, {hi}], got {v!r}")
        t[key] = float(v)

    _int("img_size", 16)
    _int("min_count", 0)
    _int("max_count", 0)
    if t["max_count"] < t["min_count"] or t["max_count"] == t["min_count"]:
        raise ValueError(f"task key 'max_count' must exceed min_count, got {t['max_count']!r}")
    _num("radius_min", 0.5)
    _num("radius_max", 0.5)
    if t["radius_max"] < t["radius_min"]:
        raise ValueError(f"task key 'radius_max' must be >= radius_min, got {t['radius_max']!r}")
    _num("target_hue", 0.0, 360.0)
    _range(t, "target_sat", 0.0, 1.0)
    _range(t, "target_val", 0.0, 1.0)
    _int("distractors_min", 0)
    _int("distractors_max", 0)
    if t["distractors_max"] < t["distractors_min"]:
        raise ValueError(f"task key 'distractors_max' must be >= distractors_min, got {t['distractors_max']!r}")
    _num("near_colour_frac", 0.0, 1.0)
    _range(t, "near_hue", 0.0, 180.0)
    _num("far_hue_min", 0.0, 180.0)
    _num("shape_distractor_frac", 0.0, 1.0)
    _num("ring_hole", 0.0, 0.95)
    if t["partner_hue"] is not None:
        _num("partner_hue", 0.0, 360.0)
    _num("lone_frac", 0.0, 1.0)
    _num("unit_gap", 0.0, 100.0)
    _num("min_gap", -100.0, 100.0)
    _int("snap", 0)
    _num("jitter", 0.0, 100.0)
    if t["background"] not in ("busy", "smooth"):
        raise ValueError(f"task key 'background' must be 'busy' or 'smooth', got {t['background']!r}")
    _int("cell_min", 1)
    _int("cell_max", 1)
    if t["cell_max"] < t["cell_min"]:
        raise ValueError(f"task key 'cell_max' must be >= cell_min, got {t['cell_max']!r}")
    _range(t, "bg_sat", 0.0, 1.0)
    _range(t, "bg_val", 0.0, 1.0)
    _num("bg_contrast", 0.0, 1.0)
    _num("noise_std", 0.0, 255.0)
    n_obj = t["max_count"] + t["distractors_max"]
    if n_obj * (2 * t["radius_max"] + max(t["min_gap"], 0.0)) ** 2 > 0.5 * t["img_size"] ** 2:
        raise ValueError(f"task key 'img_size' ({t['img_size']}) is too small for {n_obj} disks of radius "
                         f"{t['radius_max']}")
    return t


def num_classes(task: dict) -> int:
    t = resolve_task(task)
    return t["max_count"] - t["min_count"] + 1


# ---------------------------------------------------------------------------------------------
# colour helpers (hue in degrees, s and v in 0..1, output float RGB 0..255)

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h % 360.0) / 360.0, s, v), dtype=np.float32) * 255.0


def _hsv_many(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB for arrays of equal shape; returns [..., 3] float32 0..255."""
    h = (np.asarray(h, dtype=np.float64) % 360.0) / 60.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return (np.stack([r, g, b], axis=-1) * 255.0).astype(np.float32)


def _far_hue(rng: np.random.Generator, target: float, min_dist: float, size=None) -> np.ndarray:
    """Hue at circular distance >= min_dist from target, uniform over the allowed arc."""
    span = 360.0 - 2.0 * min_dist
    return (target + min_dist + rng.uniform(0.0, span, size=size)) % 360.0


# ---------------------------------------------------------------------------------------------
# one image

def _avoid_partner(t: dict, hues: np.ndarray) -> np.ndarray:
    """Relation variant: background hues within 30 deg of the partner's move 60 deg away from it."""
    if t["partner_hue"] is None:
        return hues
    off = (hues - t["partner_hue"] + 180.0) % 360.0 - 180.0
    return np.where(np.abs(off) < 30.0, hues + np.where(off < 0, -60.0, 60.0), hues) % 360.0


def _background(t: dict, rng: np.random.Generator) -> np.ndarray:
    H = t["img_size"]
    # low-frequency gradient: a 3x3 colour grid, bilinearly upsampled
    k = 3
    hues = _avoid_partner(t, _far_hue(rng, t["target_hue"], t["far_hue_min"], size=(k, k)))
    sats = rng.uniform(*t["bg_sat"], size=(k, k))
    vals = rng.uniform(*t["bg_val"], size=(k, k))
    grid = _hsv_many(hues, sats, vals)  # [k,k,3]
    pos = np.linspace(0.0, k - 1.0, H)
    i0 = np.minimum(np.floor(pos).astype(int), k - 2)
    w = (pos - i0)[:, None]
    rows = grid[i0] * (1 - w[..., None]) + grid[i0 + 1] * w[..., None]  # [H,k,3]
    img = rows[:, i0] * (1 - w[None, :, :]) + rows[:, i0 + 1] * w[None, :, :]  # [H,H,3]
    if t["background"] == "busy" and t["bg_contrast"] > 0:
        cell = int(rng.integers(t["cell_min"], t["cell_max"] + 1))
        n = H // cell + 2
        mh = _avoid_partner(t, _far_hue(rng, t["target_hue"], t["far_hue_min"], size=(n, n)))
        mosaic = _hsv_many(mh, rng.uniform(*t["bg_sat"], size=(n, n)), rng.uniform(*t["bg_val"], size=(n, n)))
        mosaic = np.repeat(np.repeat(mosaic, cell, axis=0), cell, axis=1)
        oy, ox = rng.integers(0, cell, size=2)
        mosaic = mosaic[oy:oy + H, ox:ox + H]
        c = 0.5 * t["bg_contrast"]
        img = (1 - c) * img + c * mosaic
    return img.astype(np.float32)


def _place(t: dict, rng: np.random.Generator, radii: np.ndarray) -> np.ndarray:
    """Non-overlapping centres for disks of the given radii (deterministic given rng)."""
    H = t["img_size"]
    snap = t["snap"]
    centres = np.zeros((len(radii), 2))
    for j, r in enumerate(radii):
        for _ in range(_MAX_PLACEMENT_TRIES):
            if snap:
                lo = math.ceil((r - snap / 2) / snap) if r > snap / 2 else 0
                hi = H // snap - 1 - lo
                c = (rng.integers(lo, hi + 1, size=2) + 0.5) * snap
                if t["jitter"] > 0:
                    c = np.clip(c + rng.uniform(-t["jitter"], t["jitter"], size=2), r + 0.5, H - r - 0.5)
            else:
                c = rng.uniform(r + 0.5, H - r - 0.5, size=2)
            if j == 0 or np.all(np.hypot(*(centres[:j] - c).T) >= radii[:j] + r + t["min_gap"]):
                centres[j] = c
                break
        else:
            raise ValueError(f"task key 'img_size': could not place {len(radii)} disks without overlap")
    return centres


def _place_units(t: dict, rng: np.random.Generator, radii: np.ndarray, paired: np.ndarray) -> np.ndarray:
    """Centres for the relation variant: disk j with paired[j] is followed by its partner (j+1),
    placed touching it (the adjacent grid cell with snap); different units keep `unit_gap` apart."""
    H, snap = t["img_size"], t["snap"]
    centres = np.zeros((len(radii), 2))
    j = 0
    while j < len(radii):
        members = [j, j + 1] if paired[j] else [j]
        for _ in range(_MAX_PLACEMENT_TRIES):
            r0 = radii[j]
            if snap:
                lo = math.ceil((r0 - snap / 2) / snap) if r0 > snap / 2 else 0
                c0 = (rng.integers(lo, H // snap - lo, size=2) + 0.5) * snap
            else:
                c0 = rng.uniform(r0 + 0.5, H - r0 - 0.5, size=2)
            cs = [c0]
            if paired[j]:
                if snap:
                    step = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)][int(rng.integers(4))]) * snap
                else:
                    a = rng.uniform(0, 2 * math.pi)
                    step = (radii[j] + radii[j + 1] + t["min_gap"]) * np.array([math.sin(a), math.cos(a)])
                cs.append(c0 + step)
            ok = all(radii[m] + 0.5 <= c[0] <= H - radii[m] - 0.5 and radii[m] + 0.5 <= c[1] <= H - radii[m] - 0.5
                     for m, c in zip(members, cs))
            if ok and j > 0:
                ok = all(np.all(np.hypot(*(centres[:j] - c).T) >= radii[:j] + radii[m] + t["unit_gap"])
                         for m, c in zip(members, cs))
            if ok:
                centres[members] = cs
                break
        else:
            raise ValueError(f"task key 'img_size': could not place {len(radii) - int(paired.sum())} disk groups apart")
        j += len(members)
    return centres


def _draw_disk(img: np.ndarray, cy: float, cx: float, r: float, rgb: np.ndarray, hole: float = 0.0) -> None:
    """Anti-aliased disk of radius r; with hole > 0 a ring (the background shows through the hole)."""
    H, W = img.shape[:2]
    y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), H)
    x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), W)
    yy = np.arange(y0, y1)[:, None] + 0.5
    xx = np.arange(x0, x1)[None, :] + 0.5
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    a = np.clip(r + 0.5 - d, 0.0, 1.0)  # anti-aliased rim
    if hole > 0:
        a = a - np.clip(hole + 0.5 - d, 0.0, 1.0)  # anti-aliased inner rim (hole < r)
    a = a[..., None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + rgb * a


def _one_image(t: dict, seed: int, stream: int, index: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), stream, int(index)]))
    count = int(rng.integers(t["min_count"], t["max_count"] + 1))  # drawn first: labels are stable
    n_dis = int(rng.integers(t["distractors_min"], t["distractors_max"] + 1))
    img = _background(t, rng)
    if t["partner_hue"] is not None:
        return _finish(t, rng, _draw_pairs(t, rng, img, count, n_dis)), count - t["min_count"]
    n = count + n_dis
    radii = rng.uniform(t["radius_min"], t["radius_max"], size=n)
    centres = _place(t, rng, radii)
    th = t["target_hue"]
    ring_frac = t["shape_distractor_frac"]
    for j in range(n):
        s = rng.uniform(*t["target_sat"])
        v = rng.uniform(*t["target_val"])
        hole = 0.0
        if j < count:
            h = th + rng.uniform(-6.0, 6.0)
        # the ring draw is skipped when the knob is off, so the default stream (and images) stay as they were
        elif ring_frac > 0 and rng.random() < ring_frac:
            h = th + rng.uniform(-6.0, 6.0)  # target colour, ring shape
            hole = t["ring_hole"] * radii[j]
        elif rng.random() < t["near_colour_frac"]:
            h = th + rng.choice([-1.0, 1.0]) * rng.uniform(*t["near_hue"])
        else:
            h = float(_far_hue(rng, th, t["far_hue_min"]))
        _draw_disk(img, centres[j, 0], centres[j, 1], radii[j], _hsv(h, s, v), hole)
    return _finish(t, rng, img), count - t["min_count"]


def _finish(t: dict, rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Pixel noise, rounding, CHW uint8."""
    if t["noise_std"] > 0:
        img = img + rng.normal(0.0, t["noise_std"], size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _draw_pairs(t: dict, rng: np.random.Generator, img: np.ndarray, count: int, n_dis: int) -> np.ndarray:
    """Relation variant: `count` target + partner pairs, then `n_dis` distractors (lone targets, lone
    partners or other-colour disks), every unit apart from the others."""
    th, ph = t["target_hue"], t["partner_hue"]
    kinds = ["target", "partner"] * count  # a target is always followed by its partner
    for _ in range(n_dis):
        if rng.random() < t["lone_frac"]:
            kinds.append("target" if rng.random() < 0.5 else "partner")
        else:
            kinds.append("other")
    paired = np.array([j < 2 * count and j % 2 == 0 for j in range(len(kinds))])
    radii = rng.uniform(t["radius_min"], t["radius_max"], size=len(kinds))
    centres = _place_units(t, rng, radii, paired)
    for j, kind in enumerate(kinds):
        s, v = rng.uniform(*t["target_sat"]), rng.uniform(*t["target_val"])
        if kind == "target":
            h = th + rng.uniform(-6.0, 6.0)
        elif kind == "partner":
            h = ph + rng.uniform(-6.0, 6.0)
        elif rng.random() < t["near_colour_frac"]:
            h = th + rng.choice([-1.0, 1.0]) * rng.uniform(*t["near_hue"])
        else:  # far from the target and from the partner
            h = float(_far_hue(rng, th, t["far_hue_min"]))
            while abs((h - ph + 180.0) % 360.0 - 180.0) < 30.0:
                h = float(_far_hue(rng, th, t["far_hue_min"]))
        _draw_disk(img, centres[j, 0], centres[j, 1], radii[j], _hsv(h, s, v))
    return img


def make_images(task: dict, n: int, seed: int, start: int = 0, *, stream: str = "eval"
                ) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Images uint8 [n, 3, H, W] and labels int64 [n] for global indices start .. start+n-1.

    Image ``start+i`` depends only on (task, seed, stream, start+i). ``stream`` is "eval" for
    held-out sets (the default) and "train" for the training loop's batches.
    """
    t = resolve_task(task)
    if stream not in _STREAMS:
        raise ValueError(f"stream must be one of {list(_STREAMS)}, got {stream!r}")
    if int(n) < 0 or int(start) < 0 or int(seed) < 0:
        raise ValueError(f"n, start and seed must be >= 0, got n={n}, start={start}, seed={seed}")
    H = t["img_size"]
    images = np.empty((int(n), 3, H, H), dtype=np.uint8)
    labels = np.empty(int(n), dtype=np.int64)
    for i in range(int(n)):
        images[i], labels[i] = _one_image(t, seed, _STREAMS[stream], int(start) + i)
    import torch  # here, not at import: the Snakefile validates tasks without loading torch

    return torch.from_numpy(images), torch.from_numpy(labels)
