"""ImageNet-1k validation images, preprocessed the way the evaluated model expects.

Every image is decoded, resized and centre-cropped once into a uint8 cache [N,3,H,W]; the model's
mean/std are applied at evaluation time (`tokred.models.normalize`), so one cache serves every
method and the cache is 4x smaller than float32.

Class index order: the ImageNet-1k wnids sorted as strings, read from the list timm ships
(`timm/data/_info/imagenet_synsets.txt`, `timm.data.ImageNetInfo`; torchvision's ImageFolder gives
the same order on the full set). A class folder named by a wnid is labelled by that wnid's index in
this list, never by its rank among the folders present, so a set holding a subset of the classes
(ImageNet-R, a partial ImageNet-C or val) keeps the true labels. A `wnids_file` replaces the list
for models with another class space.

Accepted layouts (`list_samples`):
  (a) class folders, `root/<wnid>/*.JPEG`: label = the wnid's class index; a folder that is not a
      known wnid is an error naming it. With `numeric_classes=True` the folder name itself is the
      label (ImageNet-V2: 0..999).
  (b) flat, `root/*.JPEG` plus `labels_file`, one of two formats (blank lines and `#` comments
      ignored):
        "<filename> <label>"  labels matched by file name (e.g. caffe's val.txt), every image in
                              root must be listed exactly once;
        "<label>"             one per line, in the order of the sorted file names.
      A label is a wnid (self-describing, e.g. "ILSVRC2012_val_00000001.JPEG n01751748") or a
      number. Numbers need their numbering declared (`labels_convention`, config key
      `data.labels_convention`): "sorted_wnid_index" (0-based index in the class order, caffe's
      val.txt) or "sorted_wnid_index_1based". Undeclared numbers are refused: on a subset the
      devkit's ILSVRC2012_IDs (ILSVRC2012_validation_ground_truth.txt, 1..1000 in the devkit's own
      synset order: image 1 has ID 490 but index 65) cannot be told from indices, and no
      devkit-ID -> wnid table ships with timm. Convert such a file to wnids (the devkit's meta.mat
      maps ILSVRC2012_ID -> WNID) or to class folders (the usual valprep.sh).

torch/torchvision/PIL/timm are imported lazily: `check_dataset_path` and `check_ood_paths` run while
Snakemake builds the DAG (timm's synset list is read as a file, without importing timm).

One module (over 300 lines) because the layouts, the label-file conventions and the decoding cache
describe one thing, the validation set, and are checked against each other.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from .classes import DEVKIT_GT_NAME, LABEL_BASE, LABELS_CONVENTIONS, WNID_LABELS, imagenet_wnids, is_wnid, wnid_labels


IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


# ---------------------------------------------------------------------------------- transform
class ToRGB:
    """PIL image -> RGB (grayscale and CMYK JPEGs exist in ImageNet val; PNG alpha is dropped).

    A module-level class rather than a lambda so the transform pickles into DataLoader workers.
    """

    def __call__(self, img):
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def resize_size(img_size: int, crop_pct: float) -> int:
    """Resize before the centre crop, timm's eval convention (`timm.data.transforms_imagenet_eval`):
    floor(size / crop_pct), e.g. 224 / 0.9 -> 248, 224 / 0.875 -> 256."""
    return int(math.floor(img_size / crop_pct))


CROP_MODES = ("center", "squash", "border")  # timm's eval crop modes


def build_transform(img_size: int | tuple[int, int] = 224, crop_pct: float = 0.875,
                    interpolation: str = "bicubic", *, crop_mode: str = "center",
                    mean: tuple[float, ...] | None = None):
    """PIL image -> uint8 tensor [3, H, W]: RGB, then timm's eval transform
    (`timm.data.create_transform(is_training=False, normalize=False)`): with crop_mode 'center',
    shorter side resized to floor(size / crop_pct) (`resize_size`) and a centre crop of `img_size`
    (int or (H, W)); 'squash' and 'border' as timm defines them (`mean` is border's fill colour).

    timm's factory rather than a hand-built copy, so every crop mode and size a pretrained config
    names is done as timm does it; for 'center' it is torchvision's Resize + CenterCrop, pixel for
    pixel what this function built before (tests/test_preprocess.py). No normalisation: the cache
    stores uint8. Raises ValueError for an unknown interpolation or crop mode, or crop_pct outside (0, 1].
    """
    from timm.data import create_transform
    from timm.data.transforms import str_to_interp_mode
    from torchvision import transforms as T

    try:
        str_to_interp_mode(interpolation)
    except KeyError:
        raise ValueError(f"unknown interpolation '{interpolation}' (timm's names: nearest, bilinear, "
                         "bicubic, box, hamming, lanczos)") from None
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if crop_mode not in CROP_MODES:
        raise ValueError(f"unknown crop_mode '{crop_mode}' (one of {list(CROP_MODES)})")
    kw = {} if mean is None else {"mean": tuple(mean)}
    size = tuple(img_size) if isinstance(img_size, (tuple, list)) else (img_size, img_size)
    timm_tf = create_transform(input_size=(3, *size), is_training=False, crop_pct=crop_pct,
                               interpolation=interpolation, crop_mode=crop_mode, normalize=False, **kw)
    return T.Compose([ToRGB(), *timm_tf.transforms])


# ---------------------------------------------------------------------------------- listing
def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def image_files(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and _is_image(e.name))


def list_samples(root: str | Path, labels_file: str | Path | None = None, *,
                 labels_convention: str | None = None, numeric_classes: bool = False,
                 num_classes: int | None = None,
                 class_index_wnids: Sequence[str] | None = None) -> list[tuple[Path, int]]:
    """(image path, label) pairs in a deterministic order; see the module docstring for layouts.

    Without `labels_file`, `root` must hold class folders; with it, images directly in `root`.
    Labels are class indices: a wnid's position in `class_index_wnids` (default: timm's ImageNet-1k
    list, `imagenet1k_wnids`). `labels_convention` (one of LABELS_CONVENTIONS) declares how a labels
    file numbers its classes; numeric labels without it are refused. `num_classes`, if given,
    bounds the labels (a subset of the classes is fine).
    Raises FileNotFoundError / ValueError naming the path, the folder or the line at fault.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset directory {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"dataset path {root} is not a directory")
    if labels_file is None:
        samples = _list_class_folders(root, numeric_classes, num_classes, class_index_wnids)
    else:
        samples = _list_flat(root, Path(labels_file), labels_convention, num_classes,
                             class_index_wnids)
    return samples


def _list_class_folders(root: Path, numeric: bool, num_classes: int | None, class_index_wnids):
    with os.scandir(root) as it:
        classes = [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
    if not classes:
        n_img = len(image_files(root))
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
        if num_classes is not None and max(labels) >= num_classes:
            raise ValueError(f"dataset directory {root}: class folder {max(labels)} is outside "
                             f"0..{num_classes - 1}")
    else:
        classes.sort()  # sorted wnids: increasing class index
        # Never folder ranks: with any class missing they would shift every later label.
        labels = wnid_labels(classes, class_index_wnids=class_index_wnids,
                             num_classes=num_classes,
                             where=f"dataset directory {root}: class folder")
    return folder_samples(root, classes, labels)


def _list_flat(root: Path, labels_file: Path, convention: str | None, num_classes: int | None,
               class_index_wnids):
    if not labels_file.exists():
        raise FileNotFoundError(f"labels file {labels_file} does not exist")
    if convention is not None and convention not in LABELS_CONVENTIONS:
        raise ValueError(f"labels_convention {convention!r} (config key data.labels_convention) "
                         f"is not one of {list(LABELS_CONVENTIONS)}")
    if DEVKIT_GT_NAME in labels_file.name:
        raise ValueError(
            f"labels file {labels_file} is the ILSVRC2012 devkit ground truth: its 1-based "
            f"ILSVRC2012_IDs follow the devkit synset order, not the sorted-wnid order the models "
            f"use. Convert the val set to class folders, or give '<filename> <wnid>' lines.")
    files = image_files(root)
    if not files:
        raise ValueError(f"dataset directory {root} contains no images (flat layout with labels "
                         f"file {labels_file})")

    named: dict[str, str] = {}
    bare: list[str] = []
    for lineno, raw in enumerate(labels_file.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            if not (is_wnid(parts[-1]) or parts[-1].lstrip("-").isdigit()):
                raise ValueError("the label is neither a wnid nor an integer")
            if len(parts) == 1:
                bare.append(parts[0])
            elif len(parts) == 2:
                name = Path(parts[0]).name  # entries like "val/xxx.JPEG" match by file name
                if name in named:
                    raise ValueError(f"duplicate entry for {name}")
                named[name] = parts[1]
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
    labels = _file_labels(raw_labels, labels_file, convention, num_classes, class_index_wnids)
    return [(root / f, y) for f, y in zip(files, labels)]


def _file_labels(raw: list[str], labels_file: Path, convention: str | None,
                 num_classes: int | None, class_index_wnids) -> list[int]:
    """Class indices of the file's labels: all wnids, or all numbers in a declared numbering."""
    wnid = [is_wnid(v) for v in raw]
    if any(wnid) and not all(wnid):
        raise ValueError(f"labels file {labels_file} mixes wnid and numeric labels (e.g. "
                         f"{raw[wnid.index(True)]!r} and {raw[wnid.index(False)]!r})")
    if all(wnid):
        if convention not in (None, WNID_LABELS):
            raise ValueError(f"labels file {labels_file} holds wnids (e.g. {raw[0]!r}), but "
                             f"labels_convention (config key data.labels_convention) is "
                             f"{convention!r}: set it to {WNID_LABELS!r} or leave it unset")
        return wnid_labels(raw, class_index_wnids=class_index_wnids, num_classes=num_classes,
                           where=f"labels file {labels_file}: label")
    if convention not in LABEL_BASE:
        sample = " ".join(raw[:5])
        declared = ("numbers are not wnids" if convention == WNID_LABELS
                    else "their numbering cannot be established from the file")
        raise ValueError(
            f"labels file {labels_file} holds numeric labels ({sample} ...), and {declared}: "
            f"labels_convention is {convention!r} (config key data.labels_convention). "
            f"0-based class indices in sorted-wnid order (caffe's val.txt, timm, torchvision) and "
            f"the ILSVRC2012 devkit's IDs (1..1000 in the devkit's synset order: "
            f"ILSVRC2012_val_00000001 is ID 490 but index 65) look alike on a subset. Declare "
            f"data.labels_convention: 'sorted_wnid_index' (0-based) or 'sorted_wnid_index_1based'; "
            f"devkit IDs are not supported: write '<filename> <wnid>' lines instead (the devkit's "
            f"meta.mat maps ILSVRC2012_ID to WNID).")
    base = LABEL_BASE[convention]
    values = [int(v) for v in raw]
    labels = [v - base for v in values]
    lo, hi = min(labels), max(labels)
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        bound = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        hint = ""
        if base == 0 and min(values) >= 1 and num_classes is not None and hi == num_classes:
            hint = " (1..num_classes: 1-based? declare 'sorted_wnid_index_1based')"
        raise ValueError(f"labels file {labels_file}: labels (labels_convention {convention!r}) "
                         f"span {lo}..{hi} as class indices, expected {bound}{hint}")
    return labels


def check_dataset_path(key: str, path, labels_file=None, *, wnids_file=None, **kwargs) -> None:
    """Pre-flight check for a configured dataset path (no image decoding; cheap at DAG build).

    Raises ValueError("config key '<key>': ...") naming the path when it is unset, missing,
    empty, holds a class folder that is not a known wnid, or its labels are malformed or of
    undeclared numbering. `wnids_file` replaces timm's ImageNet-1k class list (errors name
    'data.wnids_file'). `kwargs` are passed to `list_samples`.
    """
    if path is None or str(path).strip() == "":
        raise ValueError(f"config key '{key}': no dataset path set")
    if labels_file is not None and str(labels_file).strip() == "":
        labels_file = None
    if wnids_file is not None and str(wnids_file).strip() != "":
        try:
            kwargs["class_index_wnids"] = imagenet_wnids(wnids_file,
                                                         num_classes=kwargs.get("num_classes"))
        except (OSError, ValueError) as e:
            raise ValueError(f"config key 'data.wnids_file': {e}") from None
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



def folder_samples(root: Path, folders: list[str], labels: list[int]):
    """(path, label) of every image in each class folder, in folder then file order."""
    samples = []
    for folder, label in zip(folders, labels):
        files = image_files(root / folder)
        if not files:
            # An empty class folder usually means an interrupted extraction: fail, don't skew.
            raise ValueError(f"class folder {root / folder} contains no images")
        samples += [(root / folder / f, label) for f in files]
    return samples

