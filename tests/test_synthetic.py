"""Unit tests for the synthetic image generator (tokred.synthetic)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from tokred import synthetic
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tokred import synthetic

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
