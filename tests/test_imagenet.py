"""ImageNet val listing, preprocessing and cache on tiny image folders written by the tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from tokred.data.imagenet import build_eval_cache, build_transform, check_dataset_path, list_samples, resize_size, subset_indices


WNIDS = ["n01440764", "n01443537", "n01484850"]  # ImageNet-1k classes 0, 1, 2
SIZES = [(37, 53), (64, 40), (50, 50), (81, 29)]


def _rand_img(rng, size, mode="RGB"):
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode == "L":
        return img.convert("L")
    if mode == "CMYK":
        return img.convert("CMYK")
    if mode == "RGBA":
        rgba = img.convert("RGBA")
        rgba.putalpha(Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L"))
        return rgba
    return img


@pytest.fixture
def folders(tmp_path):
    """root/<wnid>/*: 3 classes x 4 images, incl. grayscale JPEG, CMYK JPEG, RGBA PNG, odd sizes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "val"
    modes = ["RGB", "L", "CMYK", "RGBA"]
    for c, wnid in enumerate(WNIDS):
        (root / wnid).mkdir(parents=True)
        for i, size in enumerate(SIZES):
            mode = modes[(i + c) % 4]
            img = _rand_img(rng, size, mode)
            if mode == "RGBA":
                img.save(root / wnid / f"img_{c}_{i}.png")
            else:
                img.save(root / wnid / f"img_{c}_{i}.JPEG", quality=90)
    (root / "README.txt").write_text("not an image, not a class")  # ignored
    return root


@pytest.fixture
def flat(tmp_path):
    """Flat root/*.JPEG with 0-based labels; returns (root, labels in sorted-name order)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "flat"
    root.mkdir()
    labels = [2, 0, 1, 1, 0]
    for i, size in enumerate(SIZES + [(33, 33)]):
        _rand_img(rng, size).save(root / f"ILSVRC2012_val_{i + 1:08d}.JPEG")
    return root, labels


def test_resize_size_follows_timm():
    assert resize_size(224, 0.875) == 256
    assert resize_size(224, 0.9) == 248
    assert resize_size(224, 1.0) == 224
    assert resize_size(32, 0.875) == 36


@pytest.mark.parametrize("crop_pct", [0.875, 0.9])
def test_transform_matches_torchvision(crop_pct):
    rng = np.random.default_rng(2)
    img = _rand_img(rng, (333, 287))
    ref = T.Compose([T.Resize(int(224 / crop_pct), interpolation=T.InterpolationMode.BICUBIC),
                     T.CenterCrop(224), T.PILToTensor()])
    out = build_transform(224, crop_pct, "bicubic")(img)
    assert out.dtype == torch.uint8 and out.shape == (3, 224, 224)
    assert torch.equal(out, ref(img))


def test_transform_converts_modes_and_rejects_bad_args():
    rng = np.random.default_rng(3)
    tf = build_transform(16, 0.875)
    for mode in ["L", "CMYK", "RGBA"]:
        img = _rand_img(rng, (40, 25), mode)
        out = tf(img)
        assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
        assert torch.equal(out, tf(img.convert("RGB")))
    with pytest.raises(ValueError, match="interpolation"):
        build_transform(16, 0.875, "cubic")
    with pytest.raises(ValueError, match="crop_pct"):
        build_transform(16, 1.5)


def test_class_folders_labels(folders):
    samples = list_samples(folders)
    assert len(samples) == 12
    for path, label in samples:
        assert path.parent.name == WNIDS[label]
    # deterministic: by class then file name
    assert samples == sorted(samples, key=lambda s: (s[1], s[0].name))


def test_numeric_class_folders(tmp_path):
    rng = np.random.default_rng(4)
    for cls in ["0", "2", "10", "9"]:  # string sort would put "10" before "2"
        (tmp_path / cls).mkdir()
        _rand_img(rng, (20, 20)).save(tmp_path / cls / "a.jpeg")
    samples = list_samples(tmp_path, numeric_classes=True)
    assert [y for _, y in samples] == [0, 2, 9, 10]
    assert all(p.parent.name == str(y) for p, y in samples)
    (tmp_path / "n0001").mkdir()
    with pytest.raises(ValueError, match="numeric"):
        list_samples(tmp_path, numeric_classes=True)


def test_flat_with_bare_labels(flat, tmp_path):
    root, labels = flat
    lf = tmp_path / "labels.txt"
    lf.write_text("# one label per sorted file\n" + "\n".join(map(str, labels)) + "\n\n")
    samples = list_samples(root, lf, labels_convention="sorted_wnid_index")
    assert [y for _, y in samples] == labels
    assert [p.name for p, _ in samples] == sorted(p.name for p in root.iterdir())


def test_flat_with_named_labels_any_order(flat, tmp_path):
    root, labels = flat
    names = sorted(p.name for p in root.iterdir())
    lf = tmp_path / "val.txt"
    lines = [f"val/{n} {y}" for n, y in zip(names, labels)][::-1]  # order and prefix don't matter
    lf.write_text("\n".join(lines))
    samples = list_samples(root, lf, labels_convention="sorted_wnid_index")
    assert [(p.name, y) for p, y in samples] == list(zip(names, labels))
    # a declared 1-based numbering shifts
    lf.write_text("\n".join(f"{n} {y + 1}" for n, y in zip(names, labels)))
    assert [y for _, y in list_samples(root, lf, labels_convention="sorted_wnid_index_1based")] \
        == labels


def test_flat_label_errors(flat, tmp_path):
    root, labels = flat
    lf = tmp_path / "labels.txt"

    lf.write_text("\n".join(map(str, labels[:-1])))
    with pytest.raises(ValueError, match=r"4 labels but .* 5 images") as e:
        list_samples(root, lf)
    assert str(lf) in str(e.value) and str(root) in str(e.value)

    lf.write_text("1\n2\nthree\n0\n1\n")
    with pytest.raises(ValueError, match="line 3") as e:
        list_samples(root, lf)
    assert str(lf) in str(e.value)

    lf.write_text("1\nfoo.JPEG 2\n")
    with pytest.raises(ValueError, match="mixes"):
        list_samples(root, lf)

    lf.write_text("a.JPEG 1\nb.JPEG 0\n")
    with pytest.raises(ValueError, match="does not match"):
        list_samples(root, lf)

    lf.write_text("1\n3\n2\n1\n3\n")  # 1..C declared 0-based: C is out of range, 1-based?
    with pytest.raises(ValueError, match="1-based"):
        list_samples(root, lf, labels_convention="sorted_wnid_index", num_classes=3)
    assert [y for _, y in list_samples(root, lf, labels_convention="sorted_wnid_index_1based",
                                       num_classes=3)] == [0, 2, 1, 0, 2]

    lf.write_text("0\n1\n5\n1\n0\n")
    with pytest.raises(ValueError, match="expected 0..2"):
        list_samples(root, lf, labels_convention="sorted_wnid_index", num_classes=3)

    gt = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("\n".join(map(str, labels)))
    with pytest.raises(ValueError, match="devkit"):
        list_samples(root, gt)

    with pytest.raises(FileNotFoundError, match="missing.txt"):
        list_samples(root, tmp_path / "missing.txt")


def test_folder_errors(tmp_path, flat):
    with pytest.raises(FileNotFoundError, match="nope"):
        list_samples(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        list_samples(empty)
    root, _ = flat
    with pytest.raises(ValueError, match="labels file"):  # flat images but no labels file given
        list_samples(root)
    (empty / "n01440764").mkdir()
    with pytest.raises(ValueError, match="n01440764 contains no images"):
        list_samples(empty)
    lf = tmp_path / "x.txt"
    lf.write_text("1")
    with pytest.raises(ValueError, match="contains no images"):  # flat layout, empty folder
        list_samples(empty / "n01440764", lf)


def test_check_dataset_path_names_key_and_path(folders, tmp_path):
    check_dataset_path("imagenet_val", folders)
    check_dataset_path("imagenet_val", folders, labels_file="")  # empty string == not given
    check_dataset_path("imagenet_val", folders, num_classes=1000)  # a subset of the classes
    with pytest.raises(ValueError, match=r"config key 'imagenet_val': .*n01484850.*num_classes 2"):
        check_dataset_path("imagenet_val", folders, num_classes=2)
    missing = tmp_path / "does_not_exist"
    with pytest.raises(ValueError) as e:
        check_dataset_path("imagenet_val", missing)
    assert "config key 'imagenet_val'" in str(e.value) and str(missing) in str(e.value)
    with pytest.raises(ValueError, match="config key 'imagenet_val': no dataset path"):
        check_dataset_path("imagenet_val", None)
    with pytest.raises(ValueError, match=r"config key 'imagenet_labels': .*missing\.txt"):
        check_dataset_path("imagenet_labels", folders, tmp_path / "missing.txt")


def test_build_eval_cache(folders):
    samples = list_samples(folders)
    tf = build_transform(24, 0.9)
    images, labels = build_eval_cache(samples, tf, progress=False)
    assert images.shape == (12, 3, 24, 24) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == [y for _, y in samples]
    # each row is exactly the transform of that file, converted to RGB
    for k in (0, 5, 11):
        with Image.open(samples[k][0]) as img:
            assert torch.equal(images[k], tf(img))
    # worker processes give the identical, ordered result
    images2, labels2 = build_eval_cache(samples, tf, num_workers=2, progress=False)
    assert torch.equal(images, images2) and torch.equal(labels, labels2)


def test_eval_cache_limit_spreads_over_classes(folders):
    samples = list_samples(folders)
    images, labels = build_eval_cache(samples, build_transform(16), limit=3, progress=False)
    assert images.shape[0] == 3 and sorted(labels.tolist()) == [0, 1, 2]
    assert subset_indices(10, 4) == [0, 2, 5, 7] and subset_indices(3, None) == [0, 1, 2]


def test_eval_cache_names_broken_file(folders):
    bad = folders / WNIDS[0] / "zz_broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(RuntimeError, match="zz_broken.JPEG"):
        build_eval_cache(list_samples(folders), build_transform(16), progress=False)
