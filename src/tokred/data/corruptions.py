"""ImageNet-C corruptions (Hendrycks & Dietterich 2019) applied to the cached uint8 eval set.

Three corruptions, severities 1-5, written from the ImageNet-C definitions (docs/method.md §6):

  gaussian_noise    x/255 + N(0, sigma), sigma = .08/.12/.18/.26/.38, clipped to [0, 1], *255
  gaussian_blur     gaussian filter of x/255 per channel (not across channels), sigma = 1/2/3/4/6
                    pixels, border mode 'nearest', kernel truncated at 4 sigma (the
                    skimage/scipy.ndimage defaults ImageNet-C used), clipped to [0, 1], *255
  jpeg_compression  PIL JPEG encode + decode at quality 25/18/15/10/7

The saved ImageNet-C sets were JPEG-encoded at quality 85 after every corruption, jpeg_compression
included (hendrycks/robustness, ImageNet-C/create_c/make_imagenet_c.py: the corrupted image goes
through `np.uint8` and `Image.save(path, quality=85, optimize=True)`; for jpeg_compression that is a
second JPEG after the one at the severity's quality). `corrupt` does the same for all three
(`reencode_quality=85`, None skips it). `optimize=True` only recomputes the Huffman tables: the
decoded pixels equal those of a save without it.

Float results are rounded to the nearest uint8 level. (The reference casts with np.uint8, which
truncates: that shifts every pixel down by half a level on average and turns float round-off such
as 127.99999 into 127, so a blurred constant image would not stay constant.)

Noise is deterministic: image i draws from numpy's default_rng seeded with the entropy list
[seed, crc32(name), severity, start + i], so its output depends only on those, never on how the
set is split into batches or chunks. Blur and JPEG are deterministic per image anyway.

Input and output: uint8 torch tensors [N, 3, H, W] (the pipeline's eval cache, already resized and
centre-cropped). Only numpy and PIL do the work; the blur is a separable convolution written here
(scipy is not a dependency), identical to scipy.ndimage.gaussian_filter(mode='nearest',
truncate=4.0) up to float round-off.
"""
from __future__ import annotations

import io
import zlib

import numpy as np

CORRUPTIONS: dict[str, tuple] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # std of the noise on the [0, 1] scale
    "gaussian_blur": (1, 2, 3, 4, 6),                  # std of the filter in pixels
    "jpeg_compression": (25, 18, 15, 10, 7),           # PIL JPEG quality
}
SEVERITIES = (1, 2, 3, 4, 5)
IMAGENET_C_SIDE = 224  # ImageNet-C corrupts 224 px centre crops: the side its blur sigmas are defined at
SAVED_QUALITY = 85   # JPEG quality of the saved ImageNet-C sets
BLUR_TRUNCATE = 4.0  # scipy.ndimage / skimage default
_CHUNK = 128         # images per vectorised chunk (bounds float64 temporaries)


def severity_param(name: str, severity: int):
    """The parameter of `name` at `severity` (1-5): noise sigma, blur sigma or JPEG quality."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r} (valid: {', '.join(CORRUPTIONS)})")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) \
            or severity not in SEVERITIES:
        raise ValueError(f"corruption {name!r}: severity {severity!r} is invalid "
                         f"(valid: {', '.join(map(str, SEVERITIES))})")
    return CORRUPTIONS[name][int(severity) - 1]


def scaled_param(name: str, severity: int, side: int | None = None):
    """The parameter `corrupt` applies at `severity` on images `side` px wide: `severity_param`, with the blur
    sigma scaled by side / 224 (`IMAGENET_C_SIDE`), so a blur covers the same fraction of the image as in
    ImageNet-C (sigma 6 px at 224 px is 3 px at 112 px). Noise (per pixel) and JPEG quality do not scale.
    `side` None: the 224 px value. Raises ValueError as `severity_param`, or for side < 1."""
    param = severity_param(name, severity)
    if side is None or name != "gaussian_blur":
        return param
    if int(side) < 1:
        raise ValueError(f"corruption {name!r}: image side must be >= 1 px, got {side!r}")
    return param * int(side) / IMAGENET_C_SIDE


# ---------------------------------------------------------------------------------- kernels
def gaussian_kernel1d(sigma: float, truncate: float = BLUR_TRUNCATE) -> np.ndarray:
    """Normalised 1-D gaussian, radius int(truncate * sigma + 0.5) (scipy.ndimage's definition)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x * x / (float(sigma) ** 2))
    return phi / phi.sum()


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """[n, n] matrix B with (B @ v)[i] = sum_k w[k] v[clip(i + k - r, 0, n - 1)]: 1-D gaussian
    filtering with 'nearest' borders (edge values repeated), as one matrix product."""
    w = gaussian_kernel1d(sigma)
    r = len(w) // 2
    rows = np.repeat(np.arange(n), len(w))
    cols = np.clip(np.arange(n)[:, None] + np.arange(-r, r + 1)[None, :], 0, n - 1).ravel()
    b = np.zeros((n, n), dtype=np.float64)
    np.add.at(b, (rows, cols), np.tile(w, n))
    return b


def gaussian_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter over the last two axes of float x [..., H, W]: per channel, separable,
    borders 'nearest', truncate 4.0 (scipy.ndimage.gaussian_filter with sigma (0,.., s, s)).

    Each axis is one large 2-D matrix product (stacked/broadcast matmuls are several times
    slower in numpy).
    """
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    bwt = np.ascontiguousarray(_blur_matrix(w, sigma).T)
    bht = np.ascontiguousarray(_blur_matrix(h, sigma).T)
    y = np.ascontiguousarray(x).reshape(-1, w) @ bwt                        # along W
    y = np.ascontiguousarray(y.reshape(*lead, h, w).swapaxes(-1, -2))       # [..., W, H]
    y = y.reshape(-1, h) @ bht                                             # along H
    return np.ascontiguousarray(y.reshape(*lead, w, h).swapaxes(-1, -2))


# ---------------------------------------------------------------------------------- per chunk
def _to_uint8(x01: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x01, 0.0, 1.0) * 255.0).astype(np.uint8)


def _noise_chunk(x: np.ndarray, sigma: float, seed: int, name: str, severity: int,
                 first: int) -> np.ndarray:
    code = zlib.crc32(name.encode())
    noise = np.empty(x.shape, dtype=np.float64)
    for j in range(len(x)):
        rng = np.random.default_rng([seed, code, severity, first + j])
        noise[j] = rng.normal(0.0, sigma, size=x.shape[1:])
    return _to_uint8(x / 255.0 + noise)


def _blur_chunk(x: np.ndarray, sigma: float) -> np.ndarray:
    return _to_uint8(gaussian_filter(x / 255.0, sigma))


def jpeg_roundtrip(img_chw: np.ndarray, quality: int, optimize: bool = False) -> np.ndarray:
    """PIL JPEG encode + decode of one uint8 image [3, H, W] -> uint8 [3, H, W] at `quality`
    (1-100), PIL defaults otherwise: ImageNet-C's `x.save(output, 'JPEG', quality=c)` for the
    corruption, and with `optimize=True` its final `save(..., quality=85, optimize=True)`."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img_chw.transpose(1, 2, 0)), "RGB").save(
        buf, "JPEG", quality=int(quality), optimize=bool(optimize))
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("RGB"))
    return out.transpose(2, 0, 1)


def _jpeg_chunk(x: np.ndarray, quality: int, optimize: bool = False) -> np.ndarray:
    return np.stack([jpeg_roundtrip(img, quality, optimize) for img in x])


# ---------------------------------------------------------------------------------- public
def corrupt(images, name: str, severity: int, *, seed: int = 0, start: int = 0,
            reencode_quality: int | None = SAVED_QUALITY, progress: bool = False, scale_to_size: bool = False):
    """Corrupt uint8 images [N, 3, H, W] with ImageNet-C `name` at `severity` (1-5).

    `scale_to_size`: scale the blur sigma to the image side (min(H, W) / 224, `scaled_param`); off, the
    sigmas are ImageNet-C's pixel values whatever the image size.
    `start` is the global index of images[0] in the eval set (noise seeding; see module doc).
    `reencode_quality`: JPEG quality of the re-encode after every corruption, jpeg_compression
    included (85 with optimize=True, as make_imagenet_c.py saved ImageNet-C), None to skip.
    Returns a new uint8 tensor of the same shape (on the CPU). Raises ValueError for an unknown
    name, a severity outside 1-5, non-uint8 or non-[N, 3, H, W] input, or a bad seed / start /
    reencode_quality; TypeError when `images` is not a tensor.
    """
    import torch
    from tqdm.auto import tqdm

    param = severity_param(name, severity)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"corrupt: expected a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"corrupt: expected uint8 images [N, 3, H, W], got {images.dtype} "
                         f"{tuple(images.shape)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"corrupt: seed must be a non-negative int, got {seed!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"corrupt: start must be a non-negative int, got {start!r}")
    if reencode_quality is not None and not 1 <= int(reencode_quality) <= 100:
        raise ValueError(f"corrupt: reencode_quality must be in 1..100 or None, "
                         f"got {reencode_quality!r}")

    if scale_to_size:
        param = scaled_param(name, severity, min(images.shape[-2:]))
    x_all = images.detach().cpu().numpy()
    out = np.empty_like(x_all)
    n = len(x_all)
    with tqdm(total=n, unit="img", desc=f"{name} s{severity}", disable=not progress) as bar:
        for a in range(0, n, _CHUNK):
            x = x_all[a:a + _CHUNK]
            if name == "gaussian_noise":
                y = _noise_chunk(x.astype(np.float64), param, int(seed), name, int(severity),
                                 int(start) + a)
            elif name == "gaussian_blur":
                y = _blur_chunk(x.astype(np.float64), param)
            else:
                y = _jpeg_chunk(x, param)
            if reencode_quality is not None:
                y = _jpeg_chunk(y, reencode_quality, optimize=True)
            out[a:a + len(x)] = y
            bar.update(len(x))
    return torch.from_numpy(out)
