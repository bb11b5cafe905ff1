"""ImageNet-1k class index: wnid -> class number, from the list timm ships; label conventions.

Class index order: the ImageNet-1k wnids sorted as strings, read from timm's bundled list
(`timm/data/_info/imagenet_synsets.txt`, as `timm.data.ImageNetInfo` reads it) as a file, so the
Snakefile's pre-flight needs no torch. A `wnids_file` replaces the list for models with another class
space. Wnid folders are labelled by the wnid's index, never by their rank among the folders present.
ImageNet-R's 200 classes come from timm's bundled lists too (`imagenet_r_classes`).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Sequence


DEVKIT_GT_NAME = "ILSVRC2012_validation_ground_truth"


# Values of `labels_convention` (config key data.labels_convention): the numbering of a labels
# file's numeric labels (-> the number of the first class), or "wnid" (labels are wnids; these need
# no declaration).
LABEL_BASE = {"sorted_wnid_index": 0, "sorted_wnid_index_1based": 1}


WNID_LABELS = "wnid"


LABELS_CONVENTIONS = (*LABEL_BASE, WNID_LABELS)


_WNID_CHARS = set("0123456789")


# ---------------------------------------------------------------------------------- class index
def is_wnid(name: str) -> bool:
    """'n' + 8 digits, the WordNet id form of ImageNet class folders."""
    return len(name) == 9 and name[0] == "n" and set(name[1:]) <= _WNID_CHARS


def _timm_info_text(name: str) -> str:
    """The text of timm's bundled `timm/data/_info/<name>`, read as a file without importing timm
    (which imports torch): the Snakefile's pre-flight reads these lists. Raises RuntimeError if timm
    or the file is missing."""
    spec = importlib.util.find_spec("timm")  # locates the package without executing it
    if spec is None:
        raise RuntimeError(f"timm is not installed: it provides the ImageNet class lists "
                           f"(timm/data/_info/{name})")
    for loc in spec.submodule_search_locations or ():
        f = Path(loc) / "data" / "_info" / name
        if f.is_file():
            return f.read_text()
    # e.g. timm inside a zip: let timm's own loader find it
    import pkgutil

    data = pkgutil.get_data("timm.data", f"_info/{name}")
    if data is None:
        raise RuntimeError(f"timm ({spec.origin}) has no data/_info/{name}: reinstall timm")
    return data.decode()


@functools.lru_cache(maxsize=1)
def imagenet1k_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class index order (sorted), from the list timm ships.

    Source: `timm/data/_info/imagenet_synsets.txt`, the file `timm.data.ImageNetInfo` reads. Read
    from timm's install folder without importing timm (which imports torch): this runs while
    Snakemake builds the DAG. Raises RuntimeError if timm or the file is missing or malformed.
    """
    wnids = tuple(_timm_info_text("imagenet_synsets.txt").split())
    if len(wnids) != 1000 or list(wnids) != sorted(set(wnids)) or not all(map(is_wnid, wnids)):
        raise RuntimeError(f"timm's ImageNet-1k class list (imagenet_synsets.txt) is not 1000 sorted "
                           f"wnids ({len(wnids)} entries): reinstall timm")
    return wnids


@functools.lru_cache(maxsize=1)
def imagenet_r_classes() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """ImageNet-R's 200 classes (Hendrycks et al., "The Many Faces of Robustness", ICCV 2021): their
    wnids (sorted) and their ImageNet-1k class indices (increasing), from the lists timm ships
    (`timm/data/_info/imagenet_r_synsets.txt`, `imagenet_r_indices.txt`), read as files (no torch).

    Raises RuntimeError if the files are missing, or the indices are not the wnids' positions in
    `imagenet1k_wnids` (the two lists disagree).
    """
    wnids = tuple(_timm_info_text("imagenet_r_synsets.txt").split())
    indices = tuple(int(v) for v in _timm_info_text("imagenet_r_indices.txt").split())
    index = {w: i for i, w in enumerate(imagenet1k_wnids())}
    if (len(wnids) != 200 or list(wnids) != sorted(set(wnids))
            or [index.get(w) for w in wnids] != list(indices)):
        raise RuntimeError("timm's ImageNet-R lists (imagenet_r_synsets.txt, imagenet_r_indices.txt) are not "
                           "200 sorted ImageNet-1k wnids and their class indices: reinstall timm")
    return wnids, indices


def _class_index(class_index_wnids: Sequence[str] | None) -> dict[str, int]:
    wnids = imagenet1k_wnids() if class_index_wnids is None else class_index_wnids
    return {w: i for i, w in enumerate(wnids)}


def _unknown_class(name: str, index: dict[str, int], where: str) -> str:
    """Why `name` (a class folder or label) has no class index, for an error message."""
    space = ("the 1000 ImageNet-1k classes (timm's imagenet_synsets.txt)"
             if len(index) == 1000 else f"the {len(index)} classes of the wnid list")
    if is_wnid(name):
        return f"{where} {name!r} is a wnid but not one of {space}"
    hint = ""
    if name.isdigit():
        hint = ("; numeric class folders are ImageNet-V2's layout: give that set as "
                "data.imagenet_v2")
    return (f"{where} {name!r} is not an ImageNet wnid ('n' + 8 digits, one of {space}): rename "
            f"or remove it{hint}")


def wnid_labels(names: Sequence[str], *, class_index_wnids: Sequence[str] | None = None,
                num_classes: int | None = None, where: str = "class folder") -> list[int]:
    """Class index of each wnid in `names` (the position in `class_index_wnids`, default timm's
    ImageNet-1k list `imagenet1k_wnids`): n01440764 -> 0, n15075141 -> 999.

    Raises ValueError naming the first name that is not a wnid of the list, or whose index is
    >= `num_classes` (the model's classes) when that is given.
    """
    index = _class_index(class_index_wnids)
    labels = []
    for name in names:
        if name not in index:
            raise ValueError(_unknown_class(name, index, where))
        y = index[name]
        if num_classes is not None and y >= num_classes:
            raise ValueError(f"{where} {name!r} has class index {y}, outside the model's "
                             f"num_classes {num_classes} (0..{num_classes - 1})")
        labels.append(y)
    return labels


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


def check_class_wnids(wnids: Sequence[str], source: str, num_classes: int | None) -> list[str]:
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


def imagenet_wnids(wnids_file=None, *, num_classes: int | None = None) -> list[str]:
    """The class wnids in class index order (sorted): `wnids_file` if given (see
    `read_wnids_file`; checked sorted, unique and, with `num_classes`, that many), else timm's
    ImageNet-1k list (`imagenet1k_wnids`, 1000 wnids).

    Raises FileNotFoundError / ValueError naming the wnid list file.
    """
    if wnids_file is not None and str(wnids_file).strip() != "":
        return check_class_wnids(read_wnids_file(wnids_file), f"wnid list file {wnids_file}",
                                  num_classes)
    return list(imagenet1k_wnids())
