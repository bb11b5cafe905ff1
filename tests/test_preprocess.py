"""Preprocessing from timm's pretrained config of model.name (tokred.data.preprocess), the eval set and
paper macros built with it, and ImageNet-R's classes from timm's bundled lists. No weights needed: only
pretrained configs; tiny image folders written by the tests."""
from __future__ import annotations

import copy
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision import transforms as T

from tokred import io
from tokred.data import classes, eval_set, ood_sets
from tokred.data.imagenet import build_transform
from tokred.data.preprocess import data_config, eval_transform

ROOT = Path(__file__).resolve().parents[1]
WNIDS = ["n01440764", "n01443537", "n15075141"]  # ImageNet-1k classes 0, 1, 999


def _cfg(name: str | None = None, **data) -> dict:
    """config/imagenet.yaml as shipped, with model.name and data keys replaced."""
    cfg = yaml.safe_load((ROOT / "config" / "imagenet.yaml").read_text())
    if name is not None:
        cfg["model"]["name"] = name
    cfg["data"].update(data)
    return cfg


def _photo(rng, w: int, h: int) -> Image.Image:
    """Smooth gradients plus noise: resampling differences show up in both."""
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // w, yy * 255 // h, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
    return Image.fromarray(arr)


def _hand_built(size: int, crop_pct: float, interpolation: str):
    """The transform this project built by hand before timm's factory: torchvision Resize of the shorter
    side to floor(size / crop_pct), CenterCrop, PILToTensor."""
    mode = T.InterpolationMode(interpolation)
    return T.Compose([T.Resize(int(size / crop_pct), interpolation=mode), T.CenterCrop(size), T.PILToTensor()])


# ------------------------------------------------------------------------ the data config
def test_deit_s_preprocessing_comes_from_timm():
    dc = data_config(_cfg())
    assert dc == {"input_size": (3, 224, 224), "crop_pct": 0.9, "interpolation": "bicubic",
                  "mean": tuple(IMAGENET_DEFAULT_MEAN), "std": tuple(IMAGENET_DEFAULT_STD), "crop_mode": "center"}


def test_a_384_model_needs_only_its_name():
    dc = data_config(_cfg("vit_base_patch16_384"))
    assert dc["input_size"] == (3, 384, 384) and dc["crop_pct"] == 1.0 and dc["interpolation"] == "bicubic"
    assert dc["mean"] == dc["std"] == (0.5, 0.5, 0.5) and dc["crop_mode"] == "center"
    # DeiT-III small at 384 px: ImageNet mean/std again
    dc = data_config(_cfg("deit3_small_patch16_384"))
    assert dc["input_size"] == (3, 384, 384) and dc["crop_pct"] == 1.0 and dc["mean"] == tuple(IMAGENET_DEFAULT_MEAN)


def test_user_overrides_win_and_only_when_set():
    dc = data_config(_cfg(crop_pct=0.875, interpolation="bilinear"))
    assert dc["crop_pct"] == 0.875 and dc["interpolation"] == "bilinear"
    assert dc["input_size"] == (3, 224, 224) and dc["mean"] == tuple(IMAGENET_DEFAULT_MEAN)
    assert data_config(_cfg(img_size=224)) == data_config(_cfg())  # the model's own size is accepted
    cfg = _cfg()
    for k in ("img_size", "crop_pct", "interpolation"):
        cfg["data"].pop(k)  # absent = null = the model's
    assert data_config(cfg) == data_config(_cfg())


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"config key 'data\.img_size': 384 differs from deit_small_patch16_224"):
        data_config(_cfg(img_size=384))
    with pytest.raises(ValueError, match=r"config key 'model\.name'.*'no_such_vit'"):
        data_config(_cfg("no_such_vit"))
    embedded = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    with pytest.raises(ValueError, match=r"config key 'model\.source'"):
        data_config(embedded)


def test_schema_fills_no_preprocessing_default():
    """Snakemake's validate() writes schema defaults into the config: a crop_pct default of 0.875 there
    overrode DeiT-S's own 0.9 whenever the key was left out."""
    from snakemake.utils import validate

    cfg = _cfg()
    for k in ("img_size", "crop_pct", "interpolation"):
        cfg["data"].pop(k)
    validate(cfg, str(ROOT / "config" / "schema.yaml"))
    assert all(cfg["data"].get(k) is None for k in ("img_size", "crop_pct", "interpolation"))
    assert data_config(cfg)["crop_pct"] == 0.9
    validate(copy.deepcopy(_cfg()), str(ROOT / "config" / "schema.yaml"))  # the shipped nulls are valid
    with pytest.raises(Exception, match="interpolation"):
        validate(_cfg(interpolation="cubic"), str(ROOT / "config" / "schema.yaml"))


# ------------------------------------------------------------------------ the transform
@pytest.mark.parametrize("size, crop_pct, interpolation", [(224, 0.9, "bicubic"), (224, 0.875, "bicubic"),
                                                           (224, 0.875, "bilinear"), (384, 1.0, "bicubic")])
def test_timm_transform_factory_gives_the_hand_built_pixels(size, crop_pct, interpolation):
    """timm.data.create_transform (what build_transform uses) against the hand-built transform, on
    landscape, portrait, square and small images: the same uint8 pixels."""
    rng = np.random.default_rng(0)
    tf = build_transform(size, crop_pct, interpolation)
    for w, h in [(500, 375), (375, 500), (333, 287), (size, size), (60, 41)]:
        img = _photo(rng, w, h)
        out = tf(img)
        assert out.dtype == torch.uint8 and out.shape == (3, size, size)
        assert torch.equal(out, _hand_built(size, crop_pct, interpolation)(img))


def test_eval_transform_follows_the_data_config_and_pickles():
    import pickle

    rng = np.random.default_rng(1)
    img = _photo(rng, 420, 300).convert("L")  # grayscale JPEGs exist in ImageNet val
    dc = data_config(_cfg("vit_base_patch16_384"))
    tf = pickle.loads(pickle.dumps(eval_transform(dc)))  # DataLoader workers get a pickled copy
    assert torch.equal(tf(img), _hand_built(384, 1.0, "bicubic")(img.convert("RGB")))
    with pytest.raises(ValueError, match="crop_mode"):
        build_transform(224, 0.9, crop_mode="middle")
    # timm's other crop modes, as timm does them: squash keeps no aspect ratio
    sq = build_transform(224, 1.0, crop_mode="squash")(img)
    assert torch.equal(sq, T.Compose([T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC),
                                      T.PILToTensor()])(img.convert("RGB")))


# ------------------------------------------------------------------------ eval set and paper text
@pytest.fixture
def val(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "val"
    for c, w in enumerate(WNIDS):
        (root / w).mkdir(parents=True)
        _photo(rng, 90 + 7 * c, 60).save(root / w / f"img_{c}.JPEG", quality=95)
    return root


@pytest.mark.parametrize("name, size, crop_pct, mean", [
    ("deit_small_patch16_224", 224, 0.9, tuple(IMAGENET_DEFAULT_MEAN)),
    ("vit_base_patch16_384", 384, 1.0, (0.5, 0.5, 0.5)),
])
def test_eval_set_uses_the_models_preprocessing(val, tmp_path, name, size, crop_pct, mean):
    cfg = _cfg(name, imagenet_val=str(val), decode_workers=0, limit=None)
    out = tmp_path / "eval_set.pt"
    assert eval_set.build_eval_set(cfg, str(out)) == 3
    es = io.load_eval_set(str(out))
    assert tuple(es["images"].shape) == (3, 3, size, size) and es["labels"].tolist() == [0, 1, 999]
    assert tuple(es["mean"]) == mean and es["preprocess"] == data_config(cfg)
    for i, w in enumerate(WNIDS):
        with Image.open(next((val / w).iterdir())) as img:
            assert torch.equal(es["images"][i], _hand_built(size, crop_pct, "bicubic")(img.convert("RGB")))


def test_paper_states_the_preprocessing_the_eval_set_used(tmp_path):
    from tokred.report.macros import write_macros

    prov = {"torch": "2", "timm": "1", "device_name": "cpu", "device": "cpu", "config_hash": "abc"}
    row = {"run": "base", "r": float("nan"), "n_images": 3, "provenance": prov,
           **{k: 1.0 for k in ("top1", "top1_lo", "top1_hi", "drop_pp", "drop_se_pp", "kl", "delta_margin",
                               "agreement", "gflops", "rel_cost", "mcnemar_p")}}
    df = pd.DataFrame([row])
    for name, want in [("deit_small_patch16_224", {"imgsize": "224", "croppct": "0.9", "resize": "248",
                                                    "interpolation": "bicubic", "mean": "0.485, 0.456, 0.406",
                                                    "data": "ImageNet-1k validation, shorter side resized to 248 px and "
                                                            "centre-cropped to 224 px (crop fraction 0.9), bicubic "
                                                            "interpolation"}),
                       ("vit_base_patch16_384", {"imgsize": "384", "croppct": "1", "resize": "384",
                                                 "mean": "0.5, 0.5, 0.5", "std": "0.5, 0.5, 0.5"})]:
        cfg = _cfg(name)
        path = tmp_path / f"{name}.tex"
        write_macros(df, str(path), profile="imagenet", model=cfg["model"], data=cfg["data"], train=None, task=None,
                     weights="", preprocess=data_config(cfg))
        text = path.read_text()
        for key, value in want.items():
            assert f"setup@{key}\\endcsname{{{value}}}" in text, (key, value, text)
    with pytest.raises(ValueError, match="preprocess"):
        write_macros(df, str(tmp_path / "x.tex"), profile="imagenet", model=cfg["model"], data=cfg["data"],
                     train=None, task=None, weights="")


def test_ood_job_refuses_an_eval_set_preprocessed_otherwise(val, tmp_path):
    from tokred.study.ood import condition_images

    v2 = tmp_path / "v2"
    (v2 / "7").mkdir(parents=True)
    _photo(np.random.default_rng(3), 300, 200).save(v2 / "7" / "a.jpeg")
    cfg = _cfg(imagenet_val=str(val), imagenet_v2=str(v2), decode_workers=0)
    es = tmp_path / "eval_set.pt"
    eval_set.build_eval_set(cfg, str(es))
    out = condition_images(cfg, {"kind": "dataset", "dataset": "imagenet_v2"}, str(es))
    with Image.open(v2 / "7" / "a.jpeg") as img:
        assert torch.equal(out["images"][0], _hand_built(224, 0.9, "bicubic")(img.convert("RGB")))
    with pytest.raises(ValueError, match=r"eval set .* preprocessed with .*rebuild the eval set"):
        condition_images({**cfg, "data": {**cfg["data"], "crop_pct": 0.875}},
                         {"kind": "dataset", "dataset": "imagenet_v2"}, str(es))


# ------------------------------------------------------------------------ ImageNet-R from timm's list
def _timm_list(name: str) -> list[str]:
    return pkgutil.get_data("timm.data", f"_info/{name}").decode().split()


def _folders(root: Path, wnids) -> Path:
    arr = np.full((8, 8, 3), 128, np.uint8)
    for w in wnids:
        (root / w).mkdir(parents=True)
        Image.fromarray(arr).save(root / w / "a.jpg")
    return root


def test_imagenet_r_mask_is_timms_list(tmp_path):
    r_wnids = _timm_list("imagenet_r_synsets.txt")
    r_indices = [int(v) for v in _timm_list("imagenet_r_indices.txt")]
    assert len(r_wnids) == 200
    imr = _folders(tmp_path / "imagenet-r", r_wnids)
    assert ood_sets.imagenet_r_mask(imr) == r_indices
    assert ood_sets.imagenet_r_mask(imr, classes.imagenet_wnids(), num_classes=1000) == r_indices
    assert [y for _, y in ood_sets.list_imagenet_r(imr)] == r_indices
    # a partial set is scored over the same 200 classes
    partial = _folders(tmp_path / "partial", r_wnids[::50])
    assert ood_sets.imagenet_r_mask(partial) == r_indices
    assert [y for _, y in ood_sets.list_imagenet_r(partial)] == r_indices[::50]
    # the OOD job keeps those 200 logits; a model with fewer classes is refused, not mis-indexed
    from tokred.study.ood import restrict_to_mask

    logits, labels = restrict_to_mask(torch.arange(1000.0).repeat(2, 1), torch.tensor([1, 988]), r_indices)
    assert logits[0].tolist() == [float(i) for i in r_indices] and labels.tolist() == [0, 199]
    with pytest.raises(ValueError, match="class index 988, but the model has 100 logits"):
        restrict_to_mask(torch.zeros(2, 100), torch.tensor([1, 2]), r_indices)


def test_imagenet_r_folder_outside_its_classes_is_named(tmp_path):
    imr = _folders(tmp_path / "imagenet-r", ["n01443537", "n09193705"])  # goldfish (R), alp (not R)
    for f in (ood_sets.imagenet_r_mask, ood_sets.list_imagenet_r):
        with pytest.raises(ValueError, match=r"imagenet-r: class folder 'n09193705' is an ImageNet-1k wnid but "
                                             r"not one of ImageNet-R's 200 classes"):
            f(imr)
    with pytest.raises(ValueError, match=r"config key 'data\.imagenet_r'.*'n09193705'"):
        ood_sets.check_ood_paths({"imagenet_r": str(imr)})


def test_imagenet_r_preflight_reads_timms_lists_without_torch(tmp_path):
    """The Snakefile's pre-flight checks the R folders against timm's list as files: no torch, no timm."""
    imr = _folders(tmp_path / "imagenet-r", ["n01443537", "n09193705"])
    code = ("import sys; sys.path.insert(0, 'src'); from tokred.data.ood_sets import check_ood_paths\n"
            f"try: check_ood_paths({{'imagenet_r': {str(imr)!r}}})\n"
            "except ValueError as e: assert 'n09193705' in str(e), e\n"
            "else: raise AssertionError('accepted')\n"
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
