"""OOD datasets (ImageNet-V2, -R, -C): listing, masks, pre-flight, on tiny test folders."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tokred.data.classes import imagenet_wnids, read_wnids_file
from tokred.data.imagenet import list_samples
from tokred.data.ood_sets import build_center_crop_transform, check_ood_paths, imagenet_r_mask, list_imagenet_c, list_imagenet_r, list_imagenet_v2


# A pretend 6-class "ImageNet": sorted wnids are the class index order.
ALL_WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]
R_WNIDS = ["n01443537", "n01484850", "n01494475"]  # classes 1, 2, 4: ImageNet-R classes
C_CORRUPTIONS = ["gaussian_blur", "gaussian_noise", "jpeg_compression"]


def _write_images(folder: Path, n: int, rng, size=(12, 10), ext="JPEG"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i}.{ext}", quality=90)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def val(tmp_path, rng):
    root = tmp_path / "val"
    for w in ALL_WNIDS:
        _write_images(root / w, 1, rng)
    return root


@pytest.fixture
def v2(tmp_path, rng):
    """Class folders '0', '2', '10' with 1, 2, 3 images: string order would put '10' before '2'."""
    root = tmp_path / "v2"
    for name, n in [("0", 1), ("2", 2), ("10", 3)]:
        _write_images(root / name, n, rng, ext="jpeg")
    return root


@pytest.fixture
def imr(tmp_path, rng):
    root = tmp_path / "imagenet-r"
    for k, w in enumerate(R_WNIDS):
        _write_images(root / w, k + 1, rng, ext="jpg")
    return root


@pytest.fixture
def imc(tmp_path, rng):
    root = tmp_path / "imagenet-c"
    for c in C_CORRUPTIONS:
        for s in range(1, 6):
            for w in ALL_WNIDS[:3]:
                _write_images(root / c / str(s) / w, 1, rng)
    return root


# ---------------------------------------------------------------------------------- V2
def test_v2_labels_are_the_integer_folder_names(v2):
    samples = list_imagenet_v2(v2)
    assert [y for _, y in samples] == [0, 2, 2, 10, 10, 10]
    assert [p.parent.name for p, _ in samples] == ["0", "2", "2", "10", "10", "10"]
    assert list_samples(v2, numeric_classes=True) == samples
    # without numeric_classes they are refused, not ranked as strings ('10' -> 1, '2' -> 2)
    with pytest.raises(ValueError, match="'0' is not an ImageNet wnid.*imagenet_v2"):
        list_samples(v2)


def test_v2_rejects_non_numeric_and_out_of_range_folders(v2, rng):
    with pytest.raises(ValueError, match="outside 0..9"):
        list_imagenet_v2(v2, num_classes=10)
    _write_images(v2 / "n01440764", 1, rng)
    with pytest.raises(ValueError, match="numeric class folders expected.*n01440764"):
        list_imagenet_v2(v2)


# ---------------------------------------------------------------------------------- R
def test_wnids_from_timm_or_file(tmp_path):
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[:6] == ALL_WNIDS and wnids[-1] == "n15075141"
    f = tmp_path / "LOC_synset_mapping.txt"
    f.write_text("# comment\n" + "".join(f"{w} some name, other\n" for w in ALL_WNIDS) + "\n")
    assert read_wnids_file(f) == ALL_WNIDS
    assert imagenet_wnids(f, num_classes=6) == ALL_WNIDS
    with pytest.raises(ValueError, match="6 wnids, expected 1000"):
        imagenet_wnids(f, num_classes=1000)
    f.write_text("\n".join(reversed(ALL_WNIDS)))
    with pytest.raises(ValueError, match="sorted order"):
        imagenet_wnids(f)


def test_r_mask_and_labels_index_the_full_class_space(imr):
    mask = imagenet_r_mask(imr, ALL_WNIDS)
    assert mask == [1, 2, 4]
    samples = list_imagenet_r(imr, ALL_WNIDS)
    assert [y for _, y in samples] == [1, 2, 2, 4, 4, 4]
    assert all(ALL_WNIDS[y] == p.parent.name for p, y in samples)


def test_r_errors(imr, rng):
    with pytest.raises(ValueError, match="n01484850.*not one of the 2 classes"):
        imagenet_r_mask(imr, ALL_WNIDS[:2])
    with pytest.raises(ValueError, match="sorted order"):
        imagenet_r_mask(imr, list(reversed(ALL_WNIDS)))
    (imr / "n01494475" / "img_0.jpg").unlink()
    for f in (imr / "n01494475").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="n01494475 contains no images"):
        list_imagenet_r(imr, ALL_WNIDS)
    _write_images(imr / "dogs", 1, rng)
    with pytest.raises(ValueError, match="'dogs' is not an ImageNet wnid"):
        imagenet_r_mask(imr, ALL_WNIDS)


# ---------------------------------------------------------------------------------- C
def test_c_listing(imc):
    out = list_imagenet_c(imc)
    assert sorted(out) == [(c, s) for c in C_CORRUPTIONS for s in range(1, 6)]
    samples = out[("gaussian_noise", 3)]
    assert [y for _, y in samples] == [0, 1, 2]
    assert all(p.parts[-4:-1] == ("gaussian_noise", "3", ALL_WNIDS[y]) for p, y in samples)
    sub = list_imagenet_c(imc, ["jpeg_compression"], severities=[2, 5])
    assert sorted(sub) == [("jpeg_compression", 2), ("jpeg_compression", 5)]
    # labels through the full class list
    full = list_imagenet_c(imc, "gaussian_blur", [1], class_index_wnids=ALL_WNIDS)
    assert [y for _, y in full[("gaussian_blur", 1)]] == [0, 1, 2]
    assert list_imagenet_c(imc, num_classes=1000) == out  # a subset of the classes
    with pytest.raises(ValueError, match="n01484850' has class index 2, outside.*num_classes 2"):
        list_imagenet_c(imc, num_classes=2)


def test_c_labels_use_the_wnid_index_when_classes_are_missing(imc):
    shutil.rmtree(imc / "gaussian_blur" / "2" / ALL_WNIDS[0])
    with pytest.raises(ValueError, match="class folders differ"):
        list_imagenet_c(imc, "gaussian_blur")
    out = list_imagenet_c(imc, "gaussian_blur", [2], class_index_wnids=ALL_WNIDS)
    assert [y for _, y in out[("gaussian_blur", 2)]] == [1, 2]


def test_c_missing_severity_or_corruption_is_named(imc):
    shutil.rmtree(imc / "gaussian_noise" / "3")
    with pytest.raises(ValueError, match=r"missing severity folder .*gaussian_noise[/\\]3 "
                                         r"\(corruption 'gaussian_noise', severity 3\)"):
        list_imagenet_c(imc)
    assert len(list_imagenet_c(imc, ["gaussian_noise"], [1, 2, 4, 5])) == 4
    with pytest.raises(ValueError, match="missing corruption folder .*'motion_blur'"):
        list_imagenet_c(imc, ["motion_blur"])


def test_center_crop_transform(tmp_path, rng):
    arr = rng.integers(0, 256, (230, 240, 3), dtype=np.uint8)  # H=230, W=240
    img = Image.fromarray(arr)
    out = build_center_crop_transform(224)(img)
    assert out.dtype == torch.uint8 and out.shape == (3, 224, 224)
    top, left = (230 - 224) // 2, (240 - 224) // 2
    assert torch.equal(out, torch.from_numpy(arr[top:top + 224, left:left + 224]).permute(2, 0, 1))
    sq = Image.fromarray(arr[:224, :224])
    assert torch.equal(build_center_crop_transform(224)(sq),
                       torch.from_numpy(arr[:224, :224]).permute(2, 0, 1))
    gray = build_center_crop_transform(224)(img.convert("L"))
    assert gray.shape == (3, 224, 224) and torch.equal(gray[0], gray[2])
    with pytest.raises(ValueError, match="smaller than the 224 centre crop"):
        build_center_crop_transform(224)(Image.fromarray(arr[:200]))


# ---------------------------------------------------------------------------------- pre-flight
def test_check_ood_paths_accepts_absent_and_valid(val, v2, imr, imc):
    check_ood_paths({})
    check_ood_paths({"imagenet_val": str(val), "imagenet_v2": None, "imagenet_r": "",
                     "imagenet_c": None})
    check_ood_paths({"imagenet_val": str(val), "num_classes": 6, "imagenet_r": str(imr),
                     "imagenet_c": str(imc)})
    check_ood_paths({"imagenet_val": str(val), "imagenet_v2": str(v2)})  # num_classes 1000


@pytest.mark.parametrize("key", ["imagenet_v2", "imagenet_r", "imagenet_c"])
def test_check_ood_paths_missing_or_empty(tmp_path, val, key):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=rf"config key 'data\.{key}'.*{missing.name}"):
        check_ood_paths({"imagenet_val": str(val), "num_classes": 6, key: str(missing)})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=rf"config key 'data\.{key}'.*{empty.name}"):
        check_ood_paths({"imagenet_val": str(val), "num_classes": 6, key: str(empty)})


def test_check_ood_paths_wrong_layouts(tmp_path, val, v2, imr, imc, rng):
    # V2 given wnid folders
    with pytest.raises(ValueError, match=rf"config key 'data\.imagenet_v2'.*{imr.name}"):
        check_ood_paths({"imagenet_v2": str(imr)})
    # R given numeric folders
    with pytest.raises(ValueError, match=rf"config key 'data\.imagenet_r'.*{v2.name}.*wnid"):
        check_ood_paths({"imagenet_val": str(val), "num_classes": 6, "imagenet_r": str(v2)})
    # R with a flat val set: the class index comes from timm's list, or a wnid list file
    flat = tmp_path / "flat"
    _write_images(flat, 2, rng)
    check_ood_paths({"imagenet_val": str(flat), "labels_file": str(tmp_path / "l.txt"),
                     "imagenet_r": str(imr)})
    wf = tmp_path / "wnids.txt"
    wf.write_text("\n".join(ALL_WNIDS))
    check_ood_paths({"imagenet_val": str(flat), "labels_file": "l.txt", "wnids_file": str(wf),
                     "num_classes": 6, "imagenet_r": str(imr)})
    # C missing a severity, or given the R folder
    shutil.rmtree(imc / "gaussian_blur" / "4")
    with pytest.raises(ValueError, match=rf"config key 'data\.imagenet_c'.*{imc.name}.*"
                                         r"severity 4"):
        check_ood_paths({"imagenet_c": str(imc)})
    with pytest.raises(ValueError, match=r"config key 'data\.imagenet_c'.*missing corruption "
                                         r"folder.*'gaussian_noise'"):
        check_ood_paths({"imagenet_c": str(imr)})
    # C with an empty class folder at the edge of the class list
    for f in (imc / "gaussian_noise" / "1" / ALL_WNIDS[2]).iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=rf"config key 'data\.imagenet_c'.*{ALL_WNIDS[2]} "
                                         r"contains no images"):
        check_ood_paths({"imagenet_c": str(imc)}, imagenet_c_severities=[1])
