"""Unit tests for the synthetic image generator (tokred.data.synthetic)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from tokred.data import synthetic
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tokred.data import synthetic

SMALL = {"img_size": 48, "radius_min": 2.0, "radius_max": 3.0}


def test_shapes_dtypes_and_label_range():
    x, y = synthetic.make_images(SMALL, 40, seed=0)
    assert x.shape == (40, 3, 48, 48) and x.dtype == torch.uint8
    assert y.shape == (40,) and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) < synthetic.num_classes(SMALL)


def test_default_task_geometry():
    x, _ = synthetic.make_images({}, 2, seed=0)
    assert x.shape == (2, 3, 112, 112)
    assert synthetic.num_classes({}) == 5
    assert synthetic.num_classes({"min_count": 1, "max_count": 5}) == 5


def test_same_seed_identical_and_slices_reproducible():
    x1, y1 = synthetic.make_images(SMALL, 12, seed=3)
    x2, y2 = synthetic.make_images(SMALL, 12, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    xs, ys = synthetic.make_images(SMALL, 5, seed=3, start=4)  # global indices 4..8
    assert torch.equal(xs, x1[4:9]) and torch.equal(ys, y1[4:9])


def test_different_seed_or_stream_differs():
    x1, _ = synthetic.make_images(SMALL, 8, seed=0)
    x2, _ = synthetic.make_images(SMALL, 8, seed=1)
    x3, _ = synthetic.make_images(SMALL, 8, seed=0, stream="train")
    assert not torch.equal(x1, x2)
    assert not torch.equal(x1, x3)
    assert all(not torch.equal(a, b) for a, b in zip(x1, x3))


def test_class_balance():
    _, y = synthetic.make_images({**SMALL, "img_size": 32, "radius_min": 1.0, "radius_max": 1.5,
                                  "distractors_min": 0, "distractors_max": 0}, 1000, seed=0)
    counts = np.bincount(y.numpy(), minlength=5)
    assert counts.sum() == 1000 and len(counts) == 5
    assert counts.min() >= 150 and counts.max() <= 250  # uniform: 200 each, ~4.5 sigma bounds


def test_labels_count_target_disks():
    # no distractors, flat background, no noise: the number of strongly red blobs equals min_count + label
    task = {"img_size": 64, "radius_min": 4.0, "radius_max": 4.0, "min_gap": 4.0, "distractors_min": 0,
            "distractors_max": 0, "background": "smooth", "bg_sat": [0.0, 0.0], "noise_std": 0.0,
            "min_count": 1, "max_count": 3}
    x, y = synthetic.make_images(task, 6, seed=0)
    for img, lab in zip(x.numpy().astype(int), y.numpy()):
        red = (img[0] - np.maximum(img[1], img[2])) > 100
        area = red.sum()
        n_disks = round(area / (np.pi * 16))
        assert n_disks == lab + 1


@pytest.mark.parametrize("bad, key", [
    ({"name": "nope"}, "name"),
    ({"max_count": -1}, "max_count"),
    ({"radius_min": 5.0, "radius_max": 2.0}, "radius_max"),
    ({"background": "plaid"}, "background"),
    ({"near_colour_frac": 1.5}, "near_colour_frac"),
    ({"bg_sat": [0.5]}, "bg_sat"),
    ({"not_a_knob": 1}, "not_a_knob"),
])
def test_bad_values_raise_naming_key(bad, key):
    with pytest.raises(ValueError, match=key):
        synthetic.make_images(bad, 1, seed=0)


# sha256 (first 16 hex digits) of images + labels made before the shape-distractor knobs existed:
# adding a knob that is off must leave every existing task's images unchanged, bit for bit.
_FROZEN = {
    "default": ({}, "b5ff984e50597be3"),
    "snapped": ({"snap": 8, "jitter": 2.0, "radius_min": 3.0, "radius_max": 4.0, "cell_min": 3, "cell_max": 6},
                "0ff5cf4c290fc9f4"),
}


@pytest.mark.parametrize("name", sorted(_FROZEN))
@pytest.mark.parametrize("extra", [{}, {"shape_distractor_frac": 0.0, "ring_hole": 0.3}])
def test_shape_distractors_off_leave_images_unchanged(name, extra):
    import hashlib

    task, digest = _FROZEN[name]
    x, y = synthetic.make_images({**task, **extra}, 16, seed=5, start=3)
    assert hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16] == digest


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean image (label propagation), as boolean masks."""
    lab = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    while True:
        p = np.pad(lab, 1)
        nxt = np.where(mask, np.max([lab, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]], axis=0), 0)
        if np.array_equal(nxt, lab):
            return [lab == v for v in np.unique(lab) if v]
        lab = nxt


def test_shape_distractors_are_target_coloured_rings():
    # flat grey background, no noise, every distractor a ring: red blobs = targets + rings, and every
    # ring encloses one hole through which the grey background shows
    task = {"img_size": 64, "radius_min": 6.0, "radius_max": 6.0, "min_gap": 4.0, "background": "smooth",
            "bg_sat": [0.0, 0.0], "bg_val": [0.5, 0.5], "noise_std": 0.0, "min_count": 0, "max_count": 2,
            "distractors_min": 3, "distractors_max": 3, "shape_distractor_frac": 1.0, "ring_hole": 0.5}
    x, y = synthetic.make_images(task, 6, seed=0)
    for img, lab in zip(x.numpy().astype(int), y.numpy()):
        red = (img[0] - np.maximum(img[1], img[2])) > 100  # the target colour (hue 0 +- 6 degrees)
        assert len(_components(red)) == lab + 3
        holes = [c for c in _components(~red) if not (c[0].any() or c[-1].any() or c[:, 0].any() or c[:, -1].any())]
        assert len(holes) == 3
        for h in holes:  # radius 3 hole: background grey inside its anti-aliased rim
            assert h.sum() <= 40 and (np.abs(img[:, h] - 128) <= 2).all(0).sum() >= 9
    # off: the same task has no holes at all
    x0, _ = synthetic.make_images({**task, "shape_distractor_frac": 0.0, "near_colour_frac": 0.0}, 6, seed=0)
    for img in x0.numpy().astype(int):
        red = (img[0] - np.maximum(img[1], img[2])) > 100
        assert len(_components(~red)) == 1


def test_shape_distractor_knobs_validated():
    with pytest.raises(ValueError, match="shape_distractor_frac"):
        synthetic.resolve_task({"shape_distractor_frac": 1.5})
    with pytest.raises(ValueError, match="ring_hole"):
        synthetic.resolve_task({"ring_hole": 1.0})


def test_relation_variant_label_is_the_number_of_touching_target_partner_pairs():
    # snap 8: every disk sits at a patch centre; read colours at the centres and count red patches
    # with a cyan 4-neighbour patch; lone red / cyan disks must not count
    task = {"partner_hue": 180.0, "snap": 8, "radius_min": 3.0, "radius_max": 3.5, "noise_std": 0.0,
            "background": "smooth", "near_colour_frac": 0.0, "lone_frac": 1.0,
            "distractors_min": 4, "distractors_max": 4}
    x, y = synthetic.make_images(task, 40, seed=3)
    c = x[:, :, 4::8, 4::8].permute(0, 2, 3, 1).float()  # [n, 14, 14, 3] patch-centre colours
    r, g, b = c.unbind(-1)
    red = (r > 150) & (g < 80) & (b < 80)
    cyan = (r < 80) & (g > 150) & (b > 150)
    nb = torch.zeros_like(cyan)
    nb[:, 1:] |= cyan[:, :-1]
    nb[:, :-1] |= cyan[:, 1:]
    nb[:, :, 1:] |= cyan[:, :, :-1]
    nb[:, :, :-1] |= cyan[:, :, 1:]
    assert ((red & nb).sum((1, 2)) == y).all()
    lone_red = (red & ~nb).sum((1, 2))
    assert lone_red.sum() > 10  # the distractors include lone targets (a red token alone says nothing)
    assert y.unique().numel() == 5


def test_relation_variant_leaves_the_default_task_untouched():
    x0, y0 = synthetic.make_images({}, 4, seed=0)
    x1, y1 = synthetic.make_images({"partner_hue": None, "lone_frac": 0.9, "unit_gap": 2.0}, 4, seed=0)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    with pytest.raises(ValueError, match="partner_hue"):
        synthetic.resolve_task({"partner_hue": 400.0})
