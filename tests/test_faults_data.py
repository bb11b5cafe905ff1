"""Labels of ImageNet-format folders and files: class folders are labelled by the wnid's ImageNet-1k
index (timm's bundled synset list), never by folder rank, and a numeric labels file needs a declared
numbering. Tiny folders written by the tests; the pre-flight is run as the Snakefile runs it."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tokred.data import classes, ood_sets
from tokred.study import config as preflight
from tokred.data.imagenet import check_dataset_path, list_samples
from tokred.data.ood_sets import check_ood_paths, list_imagenet_c, list_imagenet_r


ROOT = Path(__file__).resolve().parents[1]
C_CORRUPTIONS = ["gaussian_blur", "gaussian_noise", "jpeg_compression"]
# ILSVRC2012_val_00000001..5: the devkit's ILSVRC2012_IDs and the sorted-wnid indices (timm,
# torchvision) of the same five images, and their wnids.
DEVKIT_IDS = [490, 361, 171, 822, 297]
TRUE_LABELS = [65, 970, 230, 809, 516]
TRUE_WNIDS = ["n01751748", "n09193705", "n02105855", "n04263257", "n03125729"]


def _images(folder: Path, n: int = 1, names=None, size=(8, 8)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for name in names or [f"img_{i}.JPEG" for i in range(n)]:
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / name)


def _imc(root: Path, wnids, corruptions=C_CORRUPTIONS, severities=range(1, 6), size=(8, 8)) -> Path:
    for c in corruptions:
        for s in severities:
            for w in wnids:
                _images(root / c / str(s) / w, size=size)
    return root


def _cfg(**data) -> dict:
    """The paper profile's config as the Snakefile sees it, with `data` keys overridden."""
    cfg = yaml.safe_load((ROOT / "config" / "imagenet.yaml").read_text())
    cfg["data"].update(data)
    return cfg


# ------------------------------------------------------------------------ the class index list
def test_class_index_is_timms_imagenet1k_synset_list():
    from timm.data import ImageNetInfo

    wnids = classes.imagenet1k_wnids()
    assert list(wnids) == list(ImageNetInfo().label_names())
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)
    assert wnids.index("n15075141") == 999
    assert [wnids.index(w) for w in TRUE_WNIDS] == TRUE_LABELS


def test_imagenet_preflight_imports_no_torch(tmp_path):
    """The Snakefile runs check_config while building the DAG: reading timm's synset list must not
    import timm (and with it torch)."""
    val = tmp_path / "val"
    for w in ("n01440764", "n15075141"):
        _images(val / w)
    imc = _imc(tmp_path / "c", ["n01440764", "n15075141"], severities=[1])
    code = (
        "import sys, yaml; sys.path.insert(0, 'src'); from tokred.study import config as preflight; "
        "cfg = yaml.safe_load(open('config/imagenet.yaml')); "
        f"cfg['data'].update(imagenet_val={str(val)!r}, imagenet_c={str(imc)!r}); "
        "cfg['experiments']['ood']['severities'] = [1]; preflight.check_config(cfg); "
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ------------------------------------------------------------------------ fault 3: ImageNet-C
@pytest.mark.parametrize("wnids, labels", [
    (["n01440764", "n01443537", "n15075141"], [0, 1, 999]),   # the folder
    (["n01443537", "n01751748", "n04263257"], [1, 65, 809]),  # no class 0 at all
    (["n09193705"], [970]),                                   # a single class
])
def test_partial_imagenet_c_is_labelled_by_wnid_index(tmp_path, wnids, labels):
    root = _imc(tmp_path / "imagenet-c", wnids)
    # accepted by the pre-flight, exactly as the Snakefile calls it ...
    preflight.check_config(_cfg(imagenet_val=str(_val_folder(tmp_path)), imagenet_c=str(root)))
    # ... and the OOD job's listing (tokred.study.ood calls it this way) labels by the wnid's index
    for c in C_CORRUPTIONS:
        for s in (1, 5):
            samples = list_imagenet_c(root, [c], [s])[(c, s)]
            assert [y for _, y in samples] == labels
            assert [p.parent.name for p, _ in samples] == wnids


def test_ood_job_labels_partial_sets_by_wnid_index(tmp_path):
    """What the OOD job feeds the model (tokred.study.ood.condition_images) for partial C and R sets."""
    import torch

    from tokred.study.ood import condition_images

    imc = _imc(tmp_path / "imagenet-c", ["n01440764", "n01443537", "n15075141"],
               ["gaussian_noise"], [2], size=(224, 224))  # stored 224 px crops, as DeiT-S takes them
    imr = tmp_path / "imagenet-r"
    for w in ("n01443537", "n12267677"):  # ImageNet-R classes 1 and 988
        _images(imr / w)
    es = tmp_path / "eval_set.pt"
    torch.save({"images": torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "labels": torch.zeros(1),
                "mean": (0.5,) * 3, "std": (0.5,) * 3}, es)
    cfg = _cfg(imagenet_val=str(_val_folder(tmp_path)), imagenet_c=str(imc), imagenet_r=str(imr),
               decode_workers=0)
    cond = {"kind": "dataset", "dataset": "imagenet_c", "corruption": "gaussian_noise",
            "severity": 2}
    assert condition_images(cfg, cond, str(es))["labels"].tolist() == [0, 1, 999]
    out = condition_images(cfg, {"kind": "dataset", "dataset": "imagenet_r"}, str(es))
    # scored over ImageNet-R's 200 classes (timm's list), whichever of them the folder holds
    assert out["labels"].tolist() == [1, 988] and out["class_mask"] == list(classes.imagenet_r_classes()[1])


def _val_folder(tmp_path: Path, wnids=("n01440764", "n01443537", "n15075141")) -> Path:
    val = tmp_path / "val"
    for w in wnids:
        _images(val / w)
    return val


def test_imagenet_c_num_classes_bounds_the_wnid_index(tmp_path):
    root = _imc(tmp_path / "c", ["n01440764", "n15075141"], ["gaussian_noise"], [1])
    with pytest.raises(ValueError, match=r"n15075141.*999.*num_classes 3"):
        list_imagenet_c(root, severities=[1], num_classes=3)


@pytest.mark.parametrize("bad", ["dogs", "n00000001", "17", "N01440764"])
def test_unmappable_imagenet_c_folder_fails_in_the_preflight(tmp_path, bad):
    root = _imc(tmp_path / "imagenet-c", ["n01440764", bad])
    with pytest.raises(ValueError) as e:
        preflight.check_config(_cfg(imagenet_val=str(_val_folder(tmp_path)), imagenet_c=str(root)))
    msg = str(e.value)
    assert "config key 'data.imagenet_c'" in msg and bad in msg and "wnid" in msg


# ------------------------------------------------------------------------ fault 3: val, ImageNet-R
@pytest.mark.parametrize("wnids, labels", [
    (["n01440764", "n01443537", "n15075141"], [0, 1, 999]),
    (TRUE_WNIDS, TRUE_LABELS),
])
def test_val_class_folder_subset_is_labelled_by_wnid_index(tmp_path, wnids, labels):
    val = _val_folder(tmp_path, wnids)
    check_dataset_path("data.imagenet_val", val, num_classes=1000)
    assert [y for _, y in list_samples(val, num_classes=1000)] == sorted(labels)
    assert [y for _, y in list_samples(val)] == sorted(labels)


@pytest.mark.parametrize("bad, hint", [
    ("n00000001", "not one of the 1000 ImageNet-1k"),  # wnid form, but no ImageNet-1k class
    ("cats", "not an ImageNet wnid"),
    ("__MACOSX", "not an ImageNet wnid"),
])
def test_val_folder_that_is_no_imagenet_class_fails_naming_key_and_folder(tmp_path, bad, hint):
    val = _val_folder(tmp_path, ["n01440764", bad])
    with pytest.raises(ValueError) as e:
        preflight.check_config(_cfg(imagenet_val=str(val)))
    msg = str(e.value)
    assert "config key 'data.imagenet_val'" in msg and bad in msg and hint in msg


def test_val_with_numeric_folders_is_refused_not_ranked(tmp_path):
    """ImageNet-V2's layout given as val: rank order would put '10' before '2'."""
    val = _val_folder(tmp_path, ["0", "2", "10"])
    with pytest.raises(ValueError, match=r"config key 'data\.imagenet_val'.*'0'.*imagenet_v2"):
        check_dataset_path("data.imagenet_val", val)


def test_imagenet_r_subset_uses_the_wnid_index_whatever_val_holds(tmp_path):
    """ImageNet-R's mask came from the val class folders: a val subset shifted every index."""
    val = _val_folder(tmp_path, ["n01440764", "n01443537", "n15075141"])
    imr = tmp_path / "imagenet-r"
    for w in ("n01443537", "n12267677"):  # ImageNet-R classes 1 and 988
        _images(imr / w, 2)
    preflight.check_config(_cfg(imagenet_val=str(val), imagenet_r=str(imr)))
    assert ood_sets.imagenet_r_mask(imr) == list(classes.imagenet_r_classes()[1])
    assert [y for _, y in list_imagenet_r(imr)] == [1, 1, 988, 988]
    # a flat val set (no wnids of its own) no longer stops ImageNet-R
    flat = tmp_path / "flat"
    _images(flat, names=["a.JPEG"])
    (tmp_path / "l.txt").write_text("a.JPEG n01440764\n")
    check_ood_paths({"imagenet_val": str(flat), "labels_file": str(tmp_path / "l.txt"),
                     "imagenet_r": str(imr)})


# ------------------------------------------------------------------------ fault 6: labels files
@pytest.fixture
def devkit_subset(tmp_path):
    """Flat val holding ILSVRC2012_val_00000001..5 and a labels file of their devkit IDs."""
    root = tmp_path / "val"
    _images(root, names=[f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 6)])
    lf = tmp_path / "val_labels.txt"
    lf.write_text("".join(f"{y}\n" for y in DEVKIT_IDS))
    return root, lf


def test_numeric_labels_file_without_declared_numbering_is_refused(devkit_subset):
    root, lf = devkit_subset
    with pytest.raises(ValueError) as e:
        preflight.check_config(_cfg(imagenet_val=str(root), labels_file=str(lf)))
    msg = str(e.value)
    assert "config key 'data.imagenet_val'" in msg and str(lf) in msg
    assert "data.labels_convention" in msg and "devkit" in msg
    # the same for '<filename> <label>' lines, and for the library call
    names = sorted(p.name for p in root.iterdir())
    lf.write_text("".join(f"{n} {y}\n" for n, y in zip(names, DEVKIT_IDS)))
    with pytest.raises(ValueError, match="labels_convention"):
        list_samples(root, lf)


def test_wnid_labels_need_no_declaration(devkit_subset, tmp_path):
    root, _ = devkit_subset
    names = sorted(p.name for p in root.iterdir())
    lf = tmp_path / "val_wnids.txt"
    lf.write_text("".join(f"val/{n} {w}\n" for n, w in reversed(list(zip(names, TRUE_WNIDS)))))
    preflight.check_config(_cfg(imagenet_val=str(root), labels_file=str(lf)))
    assert [y for _, y in list_samples(root, lf)] == TRUE_LABELS
    lf.write_text("\n".join(TRUE_WNIDS))  # bare wnids, in sorted file-name order
    assert [y for _, y in list_samples(root, lf, labels_convention="wnid")] == TRUE_LABELS
    lf.write_text("\n".join(TRUE_WNIDS[:4] + ["n00000001"]))
    with pytest.raises(ValueError, match=r"n00000001.*not one of the 1000 ImageNet-1k"):
        list_samples(root, lf)


def test_declared_numbering_is_applied(devkit_subset):
    root, lf = devkit_subset
    lf.write_text("\n".join(map(str, TRUE_LABELS)))
    assert [y for _, y in list_samples(root, lf, labels_convention="sorted_wnid_index")] \
        == TRUE_LABELS
    lf.write_text("\n".join(str(y + 1) for y in TRUE_LABELS))
    assert [y for _, y in list_samples(root, lf, labels_convention="sorted_wnid_index_1based")] \
        == TRUE_LABELS
    preflight.check_config(_cfg(imagenet_val=str(root), labels_file=str(lf),
                                labels_convention="sorted_wnid_index_1based"))


def test_labels_convention_errors(devkit_subset):
    root, lf = devkit_subset
    with pytest.raises(ValueError, match=r"labels_convention 'devkit'.*sorted_wnid_index"):
        list_samples(root, lf, labels_convention="devkit")
    lf.write_text("\n".join(TRUE_WNIDS))  # wnids, but numbers declared
    with pytest.raises(ValueError, match="holds wnids.*sorted_wnid_index"):
        list_samples(root, lf, labels_convention="sorted_wnid_index")
    lf.write_text("\n".join(map(str, TRUE_LABELS)))  # numbers, but wnids declared
    with pytest.raises(ValueError, match="numeric labels.*'wnid'"):
        list_samples(root, lf, labels_convention="wnid")
    lf.write_text("\n".join(TRUE_WNIDS[:2] + ["3", "4", "5"]))
    with pytest.raises(ValueError, match="mixes wnid and numeric"):
        list_samples(root, lf, labels_convention="sorted_wnid_index")
    # 1..1000 declared 0-based: 1000 is out of range, and the message suggests 1-based
    lf.write_text("\n".join(["1", "1000", "3", "4", "5"]))
    with pytest.raises(ValueError, match="sorted_wnid_index_1based"):
        list_samples(root, lf, labels_convention="sorted_wnid_index", num_classes=1000)


def test_labels_convention_is_a_config_key():
    from snakemake.utils import validate

    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    prop = schema["properties"]["data"]["properties"]["labels_convention"]
    assert set(prop["enum"]) - {None} == set(classes.LABELS_CONVENTIONS)
    cfg = _cfg(labels_file="/x/val.txt", labels_convention="sorted_wnid_index")
    validate(copy.deepcopy(cfg), str(ROOT / "config" / "schema.yaml"))
    cfg["data"]["labels_convention"] = "devkit"
    with pytest.raises(Exception, match="labels_convention|devkit"):
        validate(cfg, str(ROOT / "config" / "schema.yaml"))
    assert "labels_convention" in (ROOT / "config" / "README.md").read_text()


def test_eval_set_job_applies_the_declared_numbering(devkit_subset, tmp_path):
    """The eval-set job lists val as the pre-flight does (same keys), not with its own defaults."""
    import torch

    from tokred.data import eval_set

    root, lf = devkit_subset
    lf.write_text("\n".join(str(y + 1) for y in TRUE_LABELS))
    cfg = _cfg(imagenet_val=str(root), labels_file=str(lf), decode_workers=0,
               labels_convention="sorted_wnid_index_1based")
    out = tmp_path / "eval_set.pt"
    assert eval_set.build_eval_set(cfg, str(out)) == 5
    assert torch.load(out, weights_only=False)["labels"].tolist() == TRUE_LABELS
