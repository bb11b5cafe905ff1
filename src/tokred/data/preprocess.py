"""Evaluation preprocessing of a hub model, read from timm's pretrained config of `model.name`.

Image size, crop fraction, interpolation, crop mode and mean/std are what timm's pretrained config
of the model says (`timm.data.resolve_model_data_config`, the values its own validation script
`timm/validate.py` uses), so a 384 px model needs nothing but its `model.name`. The config keys
`data.img_size`, `data.crop_pct` and `data.interpolation` override a value only when set (null or
absent: the model's). The embedded model has no pretrained config: it keeps its own constants
(`tokred.models.EMBEDDED_MEAN` / `EMBEDDED_STD`, `task.img_size`).

Resolved inside the jobs (eval set, OOD, report), never while Snakemake builds the DAG: timm
imports torch, and the pre-flight (`tokred.study.config`) stays torch-free.
"""
from __future__ import annotations

# keys under `data` that override the model's value when set; timm's resolve_data_config takes them by these names
OVERRIDES = ("img_size", "crop_pct", "interpolation")


def data_config(cfg: dict) -> dict:
    """The eval preprocessing of the config's hub model:
    {"input_size": (3, H, W) ints, "crop_pct": float, "interpolation": str, "mean": (3 floats),
    "std": (3 floats), "crop_mode": str ('center', 'squash' or 'border', timm's names)}.

    From `timm.data.resolve_model_data_config` on the pretrained config of `cfg["model"]["name"]`
    (a name or "name.tag", as `timm.models.get_pretrained_cfg` takes it); `cfg["data"]` keys
    img_size / crop_pct / interpolation replace the model's value when set (not None). The test-time
    size of a pretrained config (`test_input_size`) is not used: the model is built at its
    `input_size` (`tokred.data.weights.load_pretrained`).

    Raises ValueError naming 'model.source' for the embedded model (no timm config), 'model.name'
    for a name without a timm pretrained config, and 'data.img_size' for a size other than the
    model's (the model is built at its own size, so other inputs would not fit its position
    embedding).
    """
    m = cfg["model"]
    if m.get("source") != "hub":
        raise ValueError(f"config key 'model.source': {m.get('source')!r} has no timm pretrained config; "
                         "the embedded model's preprocessing is tokred.models.EMBEDDED_MEAN/STD at task.img_size")
    from timm.data import resolve_model_data_config
    from timm.models import get_pretrained_cfg

    name = m["name"]
    pretrained = get_pretrained_cfg(name)
    if pretrained is None:
        raise ValueError(f"config key 'model.name': timm has no pretrained config for {name!r} "
                         "(timm.models.get_pretrained_cfg), so its preprocessing is unknown")
    d = cfg.get("data") or {}
    args = {key: d[key] for key in OVERRIDES if d.get(key) is not None}
    native = tuple(int(v) for v in pretrained.input_size)
    if "img_size" in args and native[1:] != (args["img_size"],) * 2:
        raise ValueError(f"config key 'data.img_size': {args['img_size']} differs from {name}'s input size "
                         f"{native[1]}x{native[2]} (timm pretrained_cfg); the model is built at its own size: "
                         "leave data.img_size unset (null) or choose a model of that size")
    res = resolve_model_data_config(None, args=args, pretrained_cfg=pretrained.to_dict())
    return {"input_size": tuple(int(v) for v in res["input_size"]), "crop_pct": float(res["crop_pct"]),
            "interpolation": str(res["interpolation"]), "mean": tuple(float(v) for v in res["mean"]),
            "std": tuple(float(v) for v in res["std"]), "crop_mode": str(res["crop_mode"])}


def eval_transform(dc: dict):
    """PIL image -> uint8 tensor [3, H, W] for a data config of `data_config`: RGB, then timm's
    eval transform (resize, crop per crop_mode) without normalisation (`tokred.data.imagenet.
    build_transform`). Raises ValueError for an unknown interpolation or a crop_pct outside (0, 1]."""
    from .imagenet import build_transform

    return build_transform(tuple(dc["input_size"][1:]), dc["crop_pct"], dc["interpolation"],
                           crop_mode=dc["crop_mode"], mean=dc["mean"])


def describe(dc: dict) -> str:
    """One line for the paper's setup: what the images went through, in words."""
    from .imagenet import resize_size

    h, w = dc["input_size"][1:]
    crop = f"{h} px" if h == w else f"{h}x{w} px"
    rh, rw = resize_size(h, dc["crop_pct"]), resize_size(w, dc["crop_pct"])
    if dc["crop_mode"] == "center":
        how = (f"shorter side resized to {rh} px and centre-cropped to {crop}" if h == w else
               f"resized to cover {rh}x{rw} px and centre-cropped to {crop}")
    elif dc["crop_mode"] == "squash":
        how = f"resized to {rh}x{rw} px (aspect ratio not kept) and centre-cropped to {crop}"
    else:  # border
        how = f"longer side resized to {max(rh, rw)} px, padded and centre-cropped to {crop}"
    return f"{how} (crop fraction {dc['crop_pct']:g}), {dc['interpolation']} interpolation"
