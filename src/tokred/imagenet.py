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
    return _folder_samples(root, classes, labels)


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


# ---------------------------------------------------------------------------------- OOD sets
# ImageNet-V2:  root/<0..999>/*.jpeg, the folder name is the label (`list_imagenet_v2`).
# ImageNet-R:   root/<wnid>/*.jpg, 200 of the 1000 classes. Labels are indices into the 1000-class
#               space; the model's logits are restricted to the 200 classes (`imagenet_r_mask`,
#               `masked_predictions`). Sorted, the 1000 wnids are the class index order; they
#               come from the class folders of imagenet_val or a wnid list file (`imagenet_wnids`).
# ImageNet-C:   root/<corruption>/<severity 1-5>/<wnid>/*.JPEG, already 224 centre crops
#               (`list_imagenet_c`, `build_center_crop_transform`).
OOD_KEYS = ("imagenet_v2", "imagenet_r", "imagenet_c")
IMAGENET_C_SEVERITIES = (1, 2, 3, 4, 5)
_WNID_CHARS = set("0123456789")


def is_wnid(name: str) -> bool:
    """'n' + 8 digits, the WordNet id form of ImageNet class folders."""
    return len(name) == 9 and name[0] == "n" and set(name[1:]) <= _WNID_CHARS


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


def read_wnids_file(path: str | Path) -> list[str]:
    """Class wnids, one per line, first token (so LOC_synset_mapping.txt-style
    'n01440764 tench, Tinca tinca' lines work); blank lines and '#' comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"wnid list file {path} does not exist")
    wnids = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        w = line.split()[0]
        if not is_wnid(w):
            raise ValueError(f"wnid list file {path}, line {lineno}: {w!r} is not a wnid "
                             f"(expected 'n' + 8 digits)")
        wnids.append(w)
    if not wnids:
        raise ValueError(f"wnid list file {path} contains no wnids")
    return wnids


def _check_class_wnids(wnids: Sequence[str], source: str, num_classes: int | None) -> list[str]:
    wnids = list(wnids)
    bad = [w for w in wnids if not is_wnid(w)]
    if bad:
        raise ValueError(f"{source}: not wnids: {bad[:5]}")
    if len(set(wnids)) != len(wnids):
        raise ValueError(f"{source}: duplicate wnids")
    if wnids != sorted(wnids):
        # The models' class index order is the sorted wnids; any other order would mislabel.
        raise ValueError(f"{source}: wnids must be in sorted order (the class index order)")
    if num_classes is not None and len(wnids) != num_classes:
        raise ValueError(f"{source}: {len(wnids)} wnids, expected {num_classes}")
    return wnids


def imagenet_wnids(val_root: str | Path | None = None, labels_file=None, wnids_file=None, *,
                   num_classes: int | None = 1000) -> list[str]:
    """The class wnids in class index order (sorted), needed to place ImageNet-R's classes.

    From `wnids_file` if given (see `read_wnids_file`), else from the class folders of
    `val_root`. The flat val layout (`labels_file` set) has no wnids: that is an error.
    """
    if wnids_file is not None and str(wnids_file).strip() != "":
        return _check_class_wnids(read_wnids_file(wnids_file), f"wnid list file {wnids_file}",
                                  num_classes)
    if labels_file is not None and str(labels_file).strip() != "":
        raise ValueError(
            "ImageNet-R needs the class wnids: the flat imagenet_val layout (labels file "
            f"{labels_file}) has none. Use the class-folder layout of imagenet_val "
            "(root/<wnid>/*.JPEG) or give an explicit wnid list file (1000 sorted wnids).")
    if val_root is None or str(val_root).strip() == "":
        raise ValueError("ImageNet-R needs the class wnids: give the class-folder imagenet_val "
                         "root or an explicit wnid list file")
    val_root = Path(val_root)
    _check_dir(val_root, "imagenet_val")
    names = _subdirs(val_root)
    if not names:
        raise ValueError(
            f"ImageNet-R needs the class wnids, but imagenet_val {val_root} has no class folders "
            f"(flat layout?): use the class-folder layout or an explicit wnid list file")
    return _check_class_wnids(names, f"imagenet_val class folders in {val_root}", num_classes)


def _wnid_folders(root: Path, what: str) -> list[str]:
    _check_dir(root, what)
    names = _subdirs(root)
    if not names:
        raise ValueError(f"{what} directory {root} has no class folders")
    bad = [n for n in names if not is_wnid(n)]
    if bad:
        raise ValueError(f"{what} directory {root}: class folders must be wnids, found {bad[:5]}")
    return names


def _index_of(wnids: list[str], class_index_wnids: Sequence[str], root: Path,
              what: str) -> list[int]:
    pos = {w: i for i, w in enumerate(class_index_wnids)}
    unknown = [w for w in wnids if w not in pos]
    if unknown:
        raise ValueError(f"{what} directory {root}: {len(unknown)} class folders are not among "
                         f"the {len(pos)} classes (e.g. {unknown[:5]})")
    return [pos[w] for w in wnids]


def imagenet_r_mask(root: str | Path, class_index_wnids: Sequence[str]) -> list[int]:
    """Indices into the full class space (`class_index_wnids`: all wnids, sorted) of ImageNet-R's
    class folders, in sorted-wnid order (so increasing): one per folder (200 for ImageNet-R)."""
    root = Path(root)
    class_index_wnids = _check_class_wnids(class_index_wnids, "class_index_wnids", None)
    return _index_of(_wnid_folders(root, "ImageNet-R"), class_index_wnids, root, "ImageNet-R")


def _folder_samples(root: Path, folders: list[str], labels: list[int]):
    """(path, label) of every image in each class folder, in folder then file order."""
    samples = []
    for folder, label in zip(folders, labels):
        files = _image_files(root / folder)
        if not files:
            # An empty class folder usually means an interrupted extraction: fail, don't skew.
            raise ValueError(f"class folder {root / folder} contains no images")
        samples += [(root / folder / f, label) for f in files]
    return samples


def list_imagenet_r(root: str | Path,
                    class_index_wnids: Sequence[str]) -> list[tuple[Path, int]]:
    """ImageNet-R samples; the label is the index into the full class space (not 0..199), so it
    compares directly with `masked_predictions(logits, imagenet_r_mask(...))`."""
    root = Path(root)
    wnids = _wnid_folders(root, "ImageNet-R")
    labels = imagenet_r_mask(root, class_index_wnids)
    return _folder_samples(root, wnids, labels)


def masked_predictions(logits, class_indices):
    """Predictions in the full class space restricted to `class_indices`:
    class_indices[argmax(logits[:, class_indices])]. logits [N, C] torch tensor -> int64 [N]."""
    import torch

    idx = torch.as_tensor(list(class_indices), dtype=torch.long, device=logits.device)
    if idx.numel() == 0:
        raise ValueError("masked_predictions: empty class mask")
    if logits.ndim != 2 or int(idx.max()) >= logits.shape[1] or int(idx.min()) < 0:
        raise ValueError(f"masked_predictions: class indices {int(idx.min())}..{int(idx.max())} "
                         f"do not fit logits of shape {tuple(logits.shape)}")
    return idx[logits.index_select(1, idx).argmax(dim=1)]


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
    """Pre-rendered ImageNet-C: {(corruption, severity): [(path, label), ...]}.

    Layout root/<corruption>/<severity>/<wnid>/*.JPEG. `corruptions` None = every corruption
    folder in root. Labels: with `class_index_wnids` (all wnids, sorted) the wnid's index there;
    without, the rank of the wnid among the folder's class folders (right only when all classes
    are present: every (corruption, severity) folder must then hold the same class folders, and
    `num_classes`, if given, is checked).
    """
    root = Path(root)
    if class_index_wnids is not None:
        class_index_wnids = _check_class_wnids(class_index_wnids, "class_index_wnids",
                                               num_classes)
    out: dict[tuple[str, int], list] = {}
    classes0 = None
    for c, s, d in _imagenet_c_dirs(root, corruptions, severities):
        what = f"ImageNet-C ({c}, severity {s})"
        wnids = _wnid_folders(d, what)
        if class_index_wnids is not None:
            labels = _index_of(wnids, class_index_wnids, d, what)
        else:
            if classes0 is None:
                classes0 = (d, wnids)
                if num_classes is not None and len(wnids) != num_classes:
                    raise ValueError(f"{what} directory {d} has {len(wnids)} class folders, "
                                     f"expected {num_classes}")
            elif wnids != classes0[1]:
                raise ValueError(f"{what} directory {d}: class folders differ from those of "
                                 f"{classes0[0]}; labels by rank would disagree")
            labels = list(range(len(wnids)))
        out[(c, s)] = _folder_samples(d, wnids, labels)
    return out


class _RequireSize:
    """Refuse images smaller than the crop (CenterCrop would silently pad them with black)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img):
        w, h = img.size
        if w < self.size or h < self.size:
            raise ValueError(f"image is {w}x{h}, smaller than the {self.size} centre crop")
        return img

    def __repr__(self) -> str:
        return f"RequireSize({self.size})"


def build_center_crop_transform(img_size: int = 224):
    """PIL image -> uint8 tensor [3, img_size, img_size]: RGB, centre crop only (no resize).

    For sets stored as 224 centre crops (ImageNet-C). With img_size < 224 this keeps the central
    region, a different field of view than the resize + crop of `build_transform`.
    """
    from torchvision import transforms as T

    return T.Compose([_ToRGB(), _RequireSize(img_size), T.CenterCrop(img_size), T.PILToTensor()])


def _check_imagenet_c_shallow(root, corruptions, severities) -> None:
    """Every (corruption, severity) folder exists and holds the same wnid class folders; the first
    and last class folders of each hold images. No full file listing (750k files)."""
    root = Path(root)
    ref = None
    for c, s, d in _imagenet_c_dirs(root, corruptions, severities):
        wnids = _wnid_folders(d, f"ImageNet-C ({c}, severity {s})")
        if ref is None:
            ref = (d, wnids)
        elif wnids != ref[1]:
            raise ValueError(f"ImageNet-C directory {d}: {len(wnids)} class folders, differing "
                             f"from the {len(ref[1])} of {ref[0]}")
        for w in {wnids[0], wnids[-1]}:
            if not _image_files(d / w):
                raise ValueError(f"class folder {d / w} contains no images")


def check_ood_paths(cfg_data: dict, *, imagenet_c_corruptions: Sequence[str] | None = None,
                    imagenet_c_severities: Sequence[int] = IMAGENET_C_SEVERITIES) -> None:
    """Pre-flight check of the optional OOD dataset paths in the `data` config section.

    Keys `imagenet_v2`, `imagenet_r`, `imagenet_c` may be absent or null (skipped). A set path
    that is missing, empty or in the wrong layout raises ValueError("config key 'data.<key>': ...")
    naming the path. No image decoding. ImageNet-R also needs the class wnids: from the class
    folders of `imagenet_val`, or `wnids_file` if set. ImageNet-C is checked shallowly (folders,
    not every file); `imagenet_c_corruptions` None = the corruptions in `tokred.corruptions`.
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

    if given("imagenet_r") is not None:
        path = cfg_data["imagenet_r"]
        try:
            wnids = imagenet_wnids(given("imagenet_val"), given("labels_file"),
                                   given("wnids_file"), num_classes=num_classes)
        except (OSError, ValueError) as e:
            raise ValueError(f"config key 'data.imagenet_r' ({path}): {e}") from None
        try:
            list_imagenet_r(path, wnids)
        except (OSError, ValueError) as e:
            raise ValueError(f"config key 'data.imagenet_r': {e}") from None

    if given("imagenet_c") is not None:
        if imagenet_c_corruptions is None:
            from .corruptions import CORRUPTIONS
            imagenet_c_corruptions = list(CORRUPTIONS)
        try:
            _check_imagenet_c_shallow(cfg_data["imagenet_c"], imagenet_c_corruptions,
                                      imagenet_c_severities)
        except (OSError, ValueError) as e:
            raise ValueError(f"config key 'data.imagenet_c': {e}") from None
