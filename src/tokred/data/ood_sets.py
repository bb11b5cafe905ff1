"""ImageNet OOD sets: ImageNet-V2, ImageNet-R and ImageNet-C folder layouts, checked and listed.

ImageNet-V2:  root/<0..999>/*.jpeg, the folder name is the label (`list_imagenet_v2`).
ImageNet-R:   root/<wnid>/*.jpg, 200 of the 1000 classes; labels are indices in the 1000-class space,
              and the logits are restricted to the 200 classes of timm's bundled list
              (`imagenet_r_mask`); a folder outside them is an error naming it.
ImageNet-C:   root/<corruption>/<severity 1-5>/<wnid>/*.JPEG, already 224 px centre crops
              (`list_imagenet_c`, `build_center_crop_transform`).
Wnid folders are labelled by the wnid's class index (`tokred.data.classes`), so a set holding any
subset of the classes is labelled right; a folder that is no known wnid fails naming the config key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .classes import check_class_wnids, imagenet1k_wnids, imagenet_r_classes, imagenet_wnids, wnid_labels
from .imagenet import ToRGB, folder_samples, image_files, list_samples


OOD_KEYS = ("imagenet_v2", "imagenet_r", "imagenet_c")


IMAGENET_C_SEVERITIES = (1, 2, 3, 4, 5)


def list_imagenet_v2(root: str | Path, num_classes: int = 1000) -> list[tuple[Path, int]]:
    """ImageNet-V2 samples: class folders '0'..'999', label = the folder's integer (not its rank in
    string order, where '10' < '2')."""
    return list_samples(root, numeric_classes=True, num_classes=num_classes)


def _subdirs(root: Path) -> list[str]:
    with os.scandir(root) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _check_dir(root: Path, what: str) -> None:
    if not root.exists():
        raise FileNotFoundError(f"{what} directory {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{what} path {root} is not a directory")


def _wnid_folders(root: Path, what: str, class_index_wnids: Sequence[str] | None = None,
                  num_classes: int | None = None) -> tuple[list[str], list[int]]:
    """The sorted wnid class folders of `root` and their class indices (see `wnid_labels`)."""
    _check_dir(root, what)
    names = _subdirs(root)
    if not names:
        raise ValueError(f"{what} directory {root} has no class folders")
    labels = wnid_labels(names, class_index_wnids=class_index_wnids, num_classes=num_classes,
                         where=f"{what} directory {root}: class folder")
    return names, labels


def _is_imagenet1k(class_index_wnids: Sequence[str] | None) -> bool:
    return class_index_wnids is None or tuple(class_index_wnids) == imagenet1k_wnids()


def _imagenet_r_folders(root: Path, class_index_wnids: Sequence[str] | None,
                        num_classes: int | None) -> tuple[list[str], list[int]]:
    """ImageNet-R's class folders and their class indices; in ImageNet-1k's class space each folder
    must be one of ImageNet-R's 200 classes (timm's list, `imagenet_r_classes`)."""
    if class_index_wnids is not None:
        class_index_wnids = check_class_wnids(class_index_wnids, "class_index_wnids", None)
    names, labels = _wnid_folders(root, "ImageNet-R", class_index_wnids, num_classes)
    if _is_imagenet1k(class_index_wnids):
        r_wnids = set(imagenet_r_classes()[0])
        for name in names:
            if name not in r_wnids:
                raise ValueError(f"ImageNet-R directory {root}: class folder {name!r} is an ImageNet-1k wnid "
                                 f"but not one of ImageNet-R's 200 classes (timm's imagenet_r_synsets.txt)")
    return names, labels


def imagenet_r_mask(root: str | Path, class_index_wnids: Sequence[str] | None = None, *,
                    num_classes: int | None = None) -> list[int]:
    """Class indices (in the full class space) ImageNet-R's logits are restricted to, increasing.

    In ImageNet-1k's class space (`class_index_wnids` None or timm's ImageNet-1k list): the 200
    ImageNet-R classes of timm's bundled list (`imagenet_r_indices.txt`), whichever of them the
    folder holds, as the benchmark scores (Hendrycks et al., ICCV 2021), so a partial set is scored
    over the same 200 classes. Every class folder must be one of them. With another class list (a
    `wnids_file`, where timm's indices do not apply): the indices of the class folders present.
    Raises ValueError naming a folder that is no ImageNet-R class or has no index (or an index
    >= `num_classes`); the mask's indices are checked against the logits by `restrict_to_mask`.
    """
    root = Path(root)
    _, labels = _imagenet_r_folders(root, class_index_wnids, num_classes)
    if not _is_imagenet1k(class_index_wnids):
        return labels
    return list(imagenet_r_classes()[1])


def list_imagenet_r(root: str | Path, class_index_wnids: Sequence[str] | None = None, *,
                    num_classes: int | None = None) -> list[tuple[Path, int]]:
    """ImageNet-R samples; the label is the index into the full class space (not 0..199), so it
    compares directly with the logits restricted by `tokred.study.ood.restrict_to_mask`. Class folders
    are checked as in `imagenet_r_mask` (ValueError naming the folder)."""
    root = Path(root)
    wnids, labels = _imagenet_r_folders(root, class_index_wnids, num_classes)
    return folder_samples(root, wnids, labels)


def _imagenet_c_dirs(root: Path, corruptions, severities) -> list[tuple[str, int, Path]]:
    _check_dir(root, "ImageNet-C")
    present = _subdirs(root)
    if corruptions is None:
        corruptions = present
        if not corruptions:
            raise ValueError(f"ImageNet-C directory {root} has no corruption folders")
    elif isinstance(corruptions, str):
        corruptions = [corruptions]
    out = []
    for c in corruptions:
        if not (root / c).is_dir():
            raise ValueError(f"ImageNet-C directory {root}: missing corruption folder {root / c} "
                             f"(corruption '{c}'; found {present[:20]})")
        for s in severities:
            d = root / c / str(int(s))
            if not d.is_dir():
                raise ValueError(f"ImageNet-C directory {root}: missing severity folder {d} "
                                 f"(corruption '{c}', severity {s})")
            out.append((c, int(s), d))
    return out


def list_imagenet_c(root: str | Path, corruptions: Sequence[str] | str | None = None,
                    severities: Sequence[int] = IMAGENET_C_SEVERITIES, *,
                    class_index_wnids: Sequence[str] | None = None,
                    num_classes: int | None = None) -> dict[tuple[str, int], list]:
    """Pre-rendered ImageNet-C (Hendrycks & Dietterich, ICLR 2019):
    {(corruption, severity): [(path, label), ...]}.

    Layout root/<corruption>/<severity>/<wnid>/*.JPEG. `corruptions` None = every corruption
    folder in root. Label = the wnid's class index (`wnid_labels`: in `class_index_wnids`, default
    timm's ImageNet-1k list; < `num_classes` if given), so a partial set (any subset of the
    classes) keeps its true labels. The listed conditions must hold the same class folders (else
    they would not be comparable). Raises ValueError naming the folder at fault.
    """
    root = Path(root)
    if class_index_wnids is not None:
        class_index_wnids = check_class_wnids(class_index_wnids, "class_index_wnids", None)
    return {(c, s): folder_samples(d, wnids, labels)
            for c, s, d, wnids, labels in _imagenet_c_classes(root, corruptions, severities, class_index_wnids,
                                                              num_classes)}


def _imagenet_c_classes(root, corruptions, severities, class_index_wnids, num_classes):
    """(corruption, severity, folder, wnids, labels) of every condition; every condition must hold the same
    class folders (else they would not be comparable). Raises ValueError naming the folder at fault."""
    ref = None
    for c, s, d in _imagenet_c_dirs(Path(root), corruptions, severities):
        wnids, labels = _wnid_folders(d, f"ImageNet-C ({c}, severity {s})", class_index_wnids, num_classes)
        if ref is None:
            ref = (d, wnids)
        elif wnids != ref[1]:
            raise ValueError(f"ImageNet-C directory {d}: its {len(wnids)} class folders differ from the "
                             f"{len(ref[1])} of {ref[0]}; the conditions would not be comparable")
        yield c, s, d, wnids, labels


class _RequireSize:
    """Refuse images smaller than the crop (CenterCrop would silently pad them with black)."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)  # (H, W)

    def __call__(self, img):
        w, h = img.size
        if h < self.size[0] or w < self.size[1]:
            crop = str(self.size[0]) if self.size[0] == self.size[1] else f"{self.size[1]}x{self.size[0]}"
            raise ValueError(f"image is {w}x{h}, smaller than the {crop} centre crop")
        return img

    def __repr__(self) -> str:
        return f"RequireSize({self.size})"


def build_center_crop_transform(img_size: int | tuple[int, int] = 224):
    """PIL image -> uint8 tensor [3, H, W]: RGB, centre crop only (no resize) of `img_size` (int or (H, W)).

    For sets stored as 224 centre crops (ImageNet-C). With img_size < 224 this keeps the central
    region, a different field of view than the resize + crop of `build_transform`; a model larger
    than the stored images fails on the first image, naming it.
    """
    from torchvision import transforms as T

    size = tuple(img_size) if isinstance(img_size, (tuple, list)) else img_size
    return T.Compose([ToRGB(), _RequireSize(img_size), T.CenterCrop(size), T.PILToTensor()])


def _check_imagenet_c_shallow(root, corruptions, severities, class_index_wnids=None,
                              num_classes=None) -> None:
    """Every (corruption, severity) folder exists and holds the same class folders, each a wnid
    with a class index; the first and last class folders of each hold images. No full file
    listing (750k files)."""
    for _, _, d, wnids, _ in _imagenet_c_classes(root, corruptions, severities, class_index_wnids, num_classes):
        for w in {wnids[0], wnids[-1]}:
            if not image_files(d / w):
                raise ValueError(f"class folder {d / w} contains no images")


def check_ood_paths(cfg_data: dict, *, imagenet_c_corruptions: Sequence[str] | None = None,
                    imagenet_c_severities: Sequence[int] = IMAGENET_C_SEVERITIES) -> None:
    """Pre-flight check of the optional OOD dataset paths in the `data` config section.

    Keys `imagenet_v2`, `imagenet_r`, `imagenet_c` may be absent or null (skipped). A set path
    that is missing, empty or in the wrong layout, or a class folder without a class index (not a
    wnid of timm's ImageNet-1k list, or of `wnids_file` if set), raises
    ValueError("config key 'data.<key>': ...") naming the path and the folder. No image decoding.
    ImageNet-C is checked shallowly (folders, not every file); `imagenet_c_corruptions` None = the
    corruptions in `tokred.data.corruptions`.
    """
    num_classes = cfg_data.get("num_classes") or 1000

    def given(key):
        v = cfg_data.get(key)
        return None if v is None or str(v).strip() == "" else v

    if given("imagenet_v2") is not None:
        try:
            list_imagenet_v2(cfg_data["imagenet_v2"], num_classes=num_classes)
        except (OSError, ValueError) as e:
            raise ValueError(f"config key 'data.imagenet_v2': {e}") from None

    wnids = None  # timm's ImageNet-1k list
    if given("wnids_file") is not None and (given("imagenet_r") or given("imagenet_c")):
        try:
            wnids = imagenet_wnids(cfg_data["wnids_file"], num_classes=num_classes)
        except (OSError, ValueError) as e:
            raise ValueError(f"config key 'data.wnids_file': {e}") from None

    if given("imagenet_r") is not None:
        try:
            list_imagenet_r(cfg_data["imagenet_r"], wnids, num_classes=num_classes)
        except (OSError, ValueError) as e:
            raise ValueError(f"config key 'data.imagenet_r': {e}") from None

    if given("imagenet_c") is not None:
        if imagenet_c_corruptions is None:
            from .corruptions import CORRUPTIONS
            imagenet_c_corruptions = list(CORRUPTIONS)
        try:
            _check_imagenet_c_shallow(cfg_data["imagenet_c"], imagenet_c_corruptions,
                                      imagenet_c_severities, wnids, num_classes)
        except (OSError, ValueError) as e:
            raise ValueError(f"config key 'data.imagenet_c': {e}") from None
