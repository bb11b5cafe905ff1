"""ImageNet-1k validation images, preprocessed the way the evaluated model expects.

Every image is decoded, resized and centre-cropped once into a uint8 cache [N,3,H,W]; the model's
mean/std are applied at evaluation time (`tokred.models.normalize`), so one cache serves every
method and the cache is 4x smaller than float32.

Accepted layouts (`list_samples`):
  (a) class folders, `root/<wnid>/*.JPEG`: labels are the ranks of the folder names sorted as
      strings, which for ImageNet wnids is the standard index order (torchvision ImageFolder, timm).
      With `numeric_classes=True` the folder name itself is the label (ImageNet-V2: 0..999).
  (b) flat, `root/*.JPEG` plus `labels_file`, one of two formats (blank lines and `#` comments
      ignored):
        "<filename> <label>"  labels matched by file name (e.g. caffe's val.txt), every image in
                              root must be listed exactly once;
        "<label>"             one per line, in the order of the sorted file names.
      Labels are 0-based class indices in sorted-wnid order (`label_base=1` for 1-based ones).
      The devkit's ILSVRC2012_validation_ground_truth.txt is refused: its ILSVRC2012_IDs follow the
      devkit's synset order, not sorted wnids, so shifting by one would silently mislabel; convert
      it to class folders (e.g. with the usual valprep.sh) or to a "<filename> <label>" file.

torch/torchvision/PIL are imported lazily: `check_dataset_path` runs while Snakemake builds the DAG.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
DEVKIT_GT_NAME = "ILSVRC2012_validation_ground_truth"


# ---------------------------------------------------------------------------------- transform
class _ToRGB:
    """PIL image -> RGB (grayscale and CMYK JPEGs exist in ImageNet val; PNG alpha is dropped).

    A module-level class rather than a lambda so the transform pickles into DataLoader workers.
    """

    def __call__(self, img):
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def resize_size(img_size: int, crop_pct: float) -> int:
    """Shorter-side resize before the centre crop, timm's eval convention: floor(size / crop_pct)."""
    # The epsilon keeps exact ratios exact despite float error (224 / 0.875 = 256, not 255.99...).
    return int(math.floor(img_size / crop_pct + 1e-6))


def build_transform(img_size: int = 224, crop_pct: float = 0.875, interpolation: str = "bicubic"):
    """PIL image -> uint8 tensor [3, img_size, img_size]: RGB, resize shorter side, centre crop.

    crop_pct 0.875 -> resize 256 (DeiT/ToMe papers), 0.9 -> 248 (timm's DeiT-S config).
    No normalisation: the cache stores uint8.
    """
    from torchvision import transforms as T

    modes = {m.value: m for m in T.InterpolationMode}
    if interpolation not in modes:
        raise ValueError(f"unknown interpolation '{interpolation}' (one of {sorted(modes)})")
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return T.Compose([
        _ToRGB(),
        T.Resize(resize_size(img_size, crop_pct), interpolation=modes[interpolation]),
        T.CenterCrop(img_size),
        T.PILToTensor(),
    ])


# ---------------------------------------------------------------------------------- listing
def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _image_files(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and _is_image(e.name))


def list_samples(root: str | Path, labels_file: str | Path | None = None, *,
                 label_base: int = 0, numeric_classes: bool = False,
                 num_classes: int | None = None) -> list[tuple[Path, int]]:
    """(image path, label) pairs in a deterministic order; see the module docstring for layouts.

    Without `labels_file`, `root` must hold class folders; with it, images directly in `root`.
    `num_classes`, if given, is checked against the number of class folders / the label range.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset directory {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"dataset path {root} is not a directory")
    if labels_file is None:
        samples = _list_class_folders(root, numeric_classes, num_classes)
    else:
        samples = _list_flat(root, Path(labels_file), label_base, num_classes)
    return samples


def _list_class_folders(root: Path, numeric: bool, num_classes: int | None):
    with os.scandir(root) as it:
        classes = [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
    if not classes:
        n_img = len(_image_files(root))
        hint = (f"; it holds {n_img} images directly: pass a labels file for the flat layout"
                if n_img else "")
        raise ValueError(f"dataset directory {root} has no class folders{hint}")
    if numeric:
        bad = [c for c in classes if not c.isdigit()]
        if bad:
            raise ValueError(f"dataset directory {root}: numeric class folders expected, "
                             f"found {bad[:5]}")
        # Sorted numerically ('10' after '9'), and the label is the number itself.
        classes.sort(key=int)
        labels = [int(c) for c in classes]
    else:
        classes.sort()  # string order == ImageNet index order for wnids
        labels = list(range(len(classes)))
    if num_classes is not None:
        if not numeric and len(classes) != num_classes:
            raise ValueError(f"dataset directory {root} has {len(classes)} class folders, "
                             f"expected {num_classes}")
        if numeric and max(labels) >= num_classes:
            raise ValueError(f"dataset directory {root}: class folder {max(labels)} is outside "
                             f"0..{num_classes - 1}")
    samples = []
    for cls, label in zip(classes, labels):
        files = _image_files(root / cls)
        if not files:
            # An empty class folder usually means an interrupted extraction: fail, don't skew.
            raise ValueError(f"class folder {root / cls} contains no images")
        samples += [(root / cls / f, label) for f in files]
    return samples


def _list_flat(root: Path, labels_file: Path, label_base: int, num_classes: int | None):
    if not labels_file.exists():
        raise FileNotFoundError(f"labels file {labels_file} does not exist")
    if DEVKIT_GT_NAME in labels_file.name:
        raise ValueError(
            f"labels file {labels_file} is the ILSVRC2012 devkit ground truth: its 1-based "
            f"ILSVRC2012_IDs follow the devkit synset order, not the sorted-wnid order the models "
            f"use. Convert the val set to class folders, or give '<filename> <label>' lines with "
            f"0-based sorted-wnid labels.")
    files = _image_files(root)
    if not files:
        raise ValueError(f"dataset directory {root} contains no images (flat layout with labels "
                         f"file {labels_file})")

    named: dict[str, int] = {}
    bare: list[int] = []
    for lineno, raw in enumerate(labels_file.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) == 1:
                bare.append(int(parts[0]))
            elif len(parts) == 2:
                name = Path(parts[0]).name  # entries like "val/xxx.JPEG" match by file name
                if name in named:
                    raise ValueError(f"duplicate entry for {name}")
                named[name] = int(parts[1])
            else:
                raise ValueError("expected '<filename> <label>' or '<label>'")
        except ValueError as e:
            raise ValueError(f"labels file {labels_file}, line {lineno}: cannot parse {raw!r}: "
                             f"{e}") from None
        if named and bare:
            raise ValueError(f"labels file {labels_file}, line {lineno}: mixes '<label>' and "
                             f"'<filename> <label>' lines")

    if bare:
        if len(bare) != len(files):
            raise ValueError(f"labels file {labels_file} has {len(bare)} labels but {root} "
                             f"has {len(files)} images")
        raw_labels = bare
    elif named:
        missing = [f for f in files if f not in named]
        extra = [n for n in named if n not in set(files)]
        if missing or extra:
            raise ValueError(
                f"labels file {labels_file} ({len(named)} entries) does not match the "
                f"{len(files)} images in {root}: {len(missing)} images unlisted (e.g. "
                f"{missing[:3]}), {len(extra)} listed files missing (e.g. {extra[:3]})")
        raw_labels = [named[f] for f in files]
    else:
        raise ValueError(f"labels file {labels_file} contains no labels")

    labels = [v - label_base for v in raw_labels]
    if label_base == 0 and 0 not in raw_labels and max(raw_labels) == (num_classes or 1000):
        # Labels 1..C with no 0 are 1-based ids. Shifting is only right if they follow sorted
        # wnids, which we cannot tell, so ask rather than guess.
        raise ValueError(
            f"labels file {labels_file} looks 1-based (labels {min(raw_labels)}.."
            f"{max(raw_labels)}, no 0). If they are sorted-wnid indices, pass label_base=1; "
            f"if they are devkit ILSVRC2012_IDs, convert them first.")
    if min(labels) < 0 or (num_classes is not None and max(labels) >= num_classes):
        bound = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise ValueError(f"labels file {labels_file}: labels (after label_base={label_base}) "
                         f"span {min(labels)}..{max(labels)}, expected {bound}")
    return [(root / f, y) for f, y in zip(files, labels)]


def check_dataset_path(key: str, path, labels_file=None, **kwargs) -> None:
    """Pre-flight check for a configured dataset path (no image decoding; cheap at DAG build).

    Raises ValueError("config key '<key>': ...") naming the path when it is unset, missing,
    empty or its labels are malformed. `kwargs` are passed to `list_samples`.
    """
    if path is None or str(path).strip() == "":
        raise ValueError(f"config key '{key}': no dataset path set")
    if labels_file is not None and str(labels_file).strip() == "":
        labels_file = None
    try:
        list_samples(path, labels_file, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError(f"config key '{key}': {e}") from None


# ---------------------------------------------------------------------------------- cache
def subset_indices(n: int, limit: int | None) -> list[int]:
    """`limit` indices spread evenly over range(n) (all of them if limit is None or >= n).

    Evenly spaced rather than the first `limit`: in the class-folder order the first images are
    all from the first classes, so a prefix would be a biased subset.
    """
    if limit is None or limit >= n:
        return list(range(n))
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return [i * n // limit for i in range(limit)]


class _Decoded:
    """Map-style dataset: decode + transform one image; errors name the file."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                x = self.transform(img)
        except Exception as e:  # noqa: BLE001 - re-raised with the file name attached
            raise RuntimeError(f"could not decode/transform image {path}: {e}") from e
        return x, label


def build_eval_cache(samples, transform, *, limit: int | None = None, num_workers: int = 0,
                     progress: bool = True):
    """Decode every sample once -> (uint8 images [N,3,H,W], int64 labels [N]), in `samples` order.

    `limit` keeps an evenly spaced subset (see `subset_indices`); `num_workers` > 0 decodes in
    DataLoader worker processes (order is preserved).
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    samples = list(samples)
    if not samples:
        raise ValueError("build_eval_cache: no samples")
    samples = [samples[i] for i in subset_indices(len(samples), limit)]
    loader = DataLoader(_Decoded(samples, transform), batch_size=64, shuffle=False,
                        num_workers=num_workers)
    images = None
    labels = torch.empty(len(samples), dtype=torch.int64)
    pos = 0
    with tqdm(total=len(samples), unit="img", desc="decode", disable=not progress) as bar:
        for x, y in loader:
            if x.dtype != torch.uint8:
                raise TypeError(f"transform must return uint8 tensors, got {x.dtype}")
            if images is None:
                # Preallocated: concatenating batches would double peak memory (7.5 GB for val).
                images = torch.empty((len(samples), *x.shape[1:]), dtype=torch.uint8)
            images[pos:pos + len(x)] = x
            labels[pos:pos + len(x)] = y
            pos += len(x)
            bar.update(len(x))
    return images, labels
