"""ImageNet-C corruptions checked against their definitions on known images."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tokred.data.corruptions import (CORRUPTIONS, SEVERITIES, corrupt, gaussian_filter,
                                jpeg_roundtrip, severity_param)

NOISE_SIGMAS = (0.08, 0.12, 0.18, 0.26, 0.38)
BLUR_SIGMAS = (1, 2, 3, 4, 6)
JPEG_QUALITIES = (25, 18, 15, 10, 7)


def _const(value, n=1, h=64, w=64):
    return torch.full((n, 3, h, w), value, dtype=torch.uint8)


def _textured(n=2, h=64, w=64, seed=0):
    """Natural-ish texture: smooth waves + edges + mild noise, uint8 [n, 3, h, w]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / 8.0
    out = np.empty((n, 3, h, w))
    for i in range(n):
        for c in range(3):
            f = rng.uniform(0.5, 2.0, 4)
            img = (np.sin(f[0] * xx + f[1] * yy) + np.cos(f[2] * xx * yy / 4 + f[3])) * 50 + 128
            img[h // 3:h // 2, :] += 60 * (c - 1)
            out[i, c] = img + rng.normal(0, 8, (h, w))
    return torch.from_numpy(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def _kernel2d(sigma):
    """The 2-D kernel from the definition: exp(-d^2 / 2 sigma^2), truncated at
    radius int(4 sigma + 0.5), normalised."""
    r = int(4.0 * sigma + 0.5)
    d = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _pil_jpeg(img_chw: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img_chw.transpose(1, 2, 0).copy()).save(buf, format="JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)


def _clipped_std(mu, sigma):
    """Std of clip(mu + N(0, sigma), 0, 1), by numerical integration."""
    x = np.linspace(mu - 10 * sigma, mu + 10 * sigma, 200001)
    p = np.exp(-0.5 * ((x - mu) / sigma) ** 2)
    p /= p.sum()
    y = np.clip(x, 0, 1)
    m = (p * y).sum()
    return math.sqrt((p * (y - m) ** 2).sum())


def _err(a, b):
    return (a.double() - b.double()).abs().mean().item()


# ---------------------------------------------------------------------------------- parameters
def test_parameters_are_the_imagenet_c_ones():
    assert CORRUPTIONS["gaussian_noise"] == NOISE_SIGMAS
    assert CORRUPTIONS["gaussian_blur"] == BLUR_SIGMAS
    assert CORRUPTIONS["jpeg_compression"] == JPEG_QUALITIES
    assert [severity_param("gaussian_blur", s) for s in SEVERITIES] == list(BLUR_SIGMAS)
    assert severity_param("jpeg_compression", 5) == 7


@pytest.mark.parametrize("bad", [0, 6, -1, 2.0, "3", True, None])
def test_bad_severity_names_value_and_valid_ones(bad):
    with pytest.raises(ValueError, match=rf"severity {bad!r}.*valid: 1, 2, 3, 4, 5"):
        corrupt(_const(128, h=8, w=8), "gaussian_blur", bad)


def test_bad_name_names_value_and_valid_ones():
    with pytest.raises(ValueError, match=r"'motion_blur'.*gaussian_noise, gaussian_blur, "
                                         r"jpeg_compression"):
        corrupt(_const(128, h=8, w=8), "motion_blur", 1)
    with pytest.raises(ValueError, match="'Gaussian_Noise'"):
        severity_param("Gaussian_Noise", 1)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        corrupt(torch.zeros(1, 3, 8, 8), "gaussian_noise", 1)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        corrupt(torch.zeros(3, 8, 8, dtype=torch.uint8), "gaussian_noise", 1)
    with pytest.raises(ValueError, match="seed"):
        corrupt(_const(1, h=8, w=8), "gaussian_noise", 1, seed=-1)
    with pytest.raises(ValueError, match="reencode_quality"):
        corrupt(_const(1, h=8, w=8), "gaussian_noise", 1, reencode_quality=0)


# ---------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("severity", SEVERITIES)
def test_noise_residual_std_matches_sigma(severity):
    sigma = NOISE_SIGMAS[severity - 1]
    x = _const(128, h=128, w=128)
    y = corrupt(x, "gaussian_noise", severity, reencode_quality=None)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    res = (y.double() - 128.0) / 255.0
    # clip to [0, 1] shrinks the std at high severity: compare with the clipped-normal std
    expected = _clipped_std(128 / 255, sigma)
    assert res.std().item() == pytest.approx(expected, rel=0.02)
    if severity <= 2:  # clipping is negligible here: the std is sigma itself
        assert res.std().item() == pytest.approx(sigma, rel=0.02)
    # zero-mean noise and rounding (not truncation) to uint8
    assert res.mean().item() == pytest.approx(0.0, abs=0.01 * sigma + 1e-3)
    # channels are drawn independently
    c = np.corrcoef(res[0].reshape(3, -1).numpy())
    assert np.abs(c[np.triu_indices(3, 1)]).max() < 0.03


def test_noise_is_seeded_and_deterministic():
    x = _textured(3, 32, 32)
    a = corrupt(x, "gaussian_noise", 3, seed=7)
    assert torch.equal(a, corrupt(x, "gaussian_noise", 3, seed=7))
    assert not torch.equal(a, corrupt(x, "gaussian_noise", 3, seed=8))
    # different severities and images draw different noise (not one rescaled stream)
    r2 = corrupt(x, "gaussian_noise", 2, seed=7, reencode_quality=None).double() - x.double()
    r3 = corrupt(x, "gaussian_noise", 3, seed=7, reencode_quality=None).double() - x.double()
    assert abs(np.corrcoef(r2.ravel().numpy(), r3.ravel().numpy())[0, 1]) < 0.1
    same = _const(128, n=2, h=32, w=32)
    r = corrupt(same, "gaussian_noise", 3, reencode_quality=None)
    assert not torch.equal(r[0], r[1])


@pytest.mark.parametrize("reencode", [None, 85])
def test_noise_of_image_i_does_not_depend_on_batching(reencode):
    # 130 images crosses the internal chunk boundary (128)
    x = _textured(130, 8, 8, seed=3)
    full = corrupt(x, "gaussian_noise", 4, seed=5, reencode_quality=reencode)
    for i in (0, 1, 127, 128, 129):
        alone = corrupt(x[i:i + 1], "gaussian_noise", 4, seed=5, start=i,
                        reencode_quality=reencode)
        assert torch.equal(alone[0], full[i]), i
    parts = torch.cat([corrupt(x[a:b], "gaussian_noise", 4, seed=5, start=a,
                               reencode_quality=reencode)
                       for a, b in [(0, 50), (50, 51), (51, 130)]])
    assert torch.equal(parts, full)
    # without the right start, image i gets another image's noise
    assert not torch.equal(corrupt(x[5:6], "gaussian_noise", 4, seed=5,
                                   reencode_quality=reencode)[0], full[5])


# ---------------------------------------------------------------------------------- blur
@pytest.mark.parametrize("severity", SEVERITIES)
def test_blur_of_constant_image_is_unchanged(severity):
    for v in (0, 77, 128, 255):
        x = _const(v, h=20, w=24)
        assert torch.equal(corrupt(x, "gaussian_blur", severity, reencode_quality=None), x)


@pytest.mark.parametrize("sigma", BLUR_SIGMAS)
def test_blur_of_a_point_is_the_gaussian_kernel(sigma):
    n = 64
    x = np.zeros((1, 3, n, n))
    x[0, 1, n // 2, n // 2 - 1] = 1.0  # channel 1 only
    y = gaussian_filter(x, sigma)
    k = _kernel2d(sigma)
    r = len(k) // 2
    expected = np.zeros((n, n))
    expected[n // 2 - r:n // 2 + r + 1, n // 2 - 1 - r:n // 2 + r] = k
    np.testing.assert_allclose(y[0, 1], expected, atol=1e-12)
    assert np.abs(y[0, [0, 2]]).max() == 0  # per channel, not across channels
    # the same through the public uint8 path
    xi = torch.from_numpy((x * 255).astype(np.uint8))
    out = corrupt(xi, "gaussian_blur", BLUR_SIGMAS.index(sigma) + 1, reencode_quality=None)
    assert np.abs(out[0, 1].double().numpy() - 255 * expected).max() <= 0.5 + 1e-9
    assert out[0, [0, 2]].max() == 0


def test_blur_borders_are_nearest():
    rng = np.random.default_rng(4)
    x = rng.random((2, 3, 20, 24))
    for sigma in (1, 6):  # radius 24 at sigma 6: wider than the image
        k = _kernel2d(sigma)
        r = len(k) // 2
        p = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
        ref = np.zeros_like(x)
        for i in range(len(k)):
            for j in range(len(k)):
                ref += k[i, j] * p[..., i:i + 20, j:j + 24]
        np.testing.assert_allclose(gaussian_filter(x, sigma), ref, atol=1e-12)


def test_blur_keeps_the_mean_far_from_borders():
    rng = np.random.default_rng(5)
    x = np.zeros((1, 3, 96, 96), dtype=np.uint8)
    x[..., 40:56, 40:56] = rng.integers(0, 256, (1, 3, 16, 16))
    xt = torch.from_numpy(x)
    for severity in (1, 2, 3):  # radius up to 12: the blurred blob stays off the border
        y = corrupt(xt, "gaussian_blur", severity, reencode_quality=None)
        for c in range(3):
            assert y[0, c].double().mean().item() == pytest.approx(
                xt[0, c].double().mean().item(), abs=0.05)
    f = gaussian_filter(x.astype(np.float64), 6)  # float: exact up to round-off
    np.testing.assert_allclose(f.sum(axis=(-1, -2)), x.sum(axis=(-1, -2)), rtol=1e-10)


# ---------------------------------------------------------------------------------- JPEG
def _imagenet_c_saved(corrupted_hwc) -> np.ndarray:
    """What make_imagenet_c.py (hendrycks/robustness) writes to disk and a reader gets back:
    `Image.fromarray(np.uint8(img)).save(path, quality=85, optimize=True)`, then decoded. [3, H, W]"""
    buf = io.BytesIO()
    Image.fromarray(np.uint8(corrupted_hwc)).save(buf, format="JPEG", quality=85, optimize=True)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)


def _imagenet_c_jpeg(img_chw: np.ndarray, quality: int) -> np.ndarray:
    """The reference jpeg_compression (x.save(output, 'JPEG', quality=c); PILImage.open(output))
    followed by the saving step above."""
    buf = io.BytesIO()
    Image.fromarray(img_chw.transpose(1, 2, 0).copy()).save(buf, "JPEG", quality=quality)
    return _imagenet_c_saved(Image.open(io.BytesIO(buf.getvalue())))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_jpeg_follows_the_imagenet_c_recipe(severity):
    # 224 px textured crops, as ImageNet-C corrupts the centre crop
    x = _textured(2, 224, 224, seed=6)
    q = JPEG_QUALITIES[severity - 1]
    y = corrupt(x, "jpeg_compression", severity)
    once = corrupt(x, "jpeg_compression", severity, reencode_quality=None)
    for i in range(2):
        assert np.array_equal(y[i].numpy(), _imagenet_c_jpeg(x[i].numpy(), q))
        # reencode_quality=None: the corruption alone, one PIL round trip at the severity's quality
        assert np.array_equal(once[i].numpy(), _pil_jpeg(x[i].numpy(), q))
    # the second save at 85 is not a no-op on textured images (the recipe is what is tested)
    assert (y != once).double().mean().item() > 0.05


def test_noise_and_blur_are_reencoded_at_quality_85():
    x = _textured(2, 32, 32, seed=7)
    for name in ("gaussian_noise", "gaussian_blur"):
        raw = corrupt(x, name, 2, reencode_quality=None)
        saved = corrupt(x, name, 2)
        assert not torch.equal(raw, saved)
        for i in range(2):
            assert np.array_equal(saved[i].numpy(), _pil_jpeg(raw[i].numpy(), 85))
            assert np.array_equal(saved[i].numpy(), _imagenet_c_saved(raw[i].numpy().transpose(1, 2, 0)))
            assert np.array_equal(saved[i].numpy(), jpeg_roundtrip(raw[i].numpy(), 85))
        q50 = corrupt(x, name, 2, reencode_quality=50)
        assert np.array_equal(q50[0].numpy(), _pil_jpeg(raw[0].numpy(), 50))


# ---------------------------------------------------------------------------------- severity
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_error_grows_with_severity(name):
    x = _textured(2, 64, 64, seed=8)
    errs = [_err(corrupt(x, name, s), x) for s in SEVERITIES]
    assert all(a < b for a, b in zip(errs, errs[1:])), errs


def test_blur_sigma_scales_to_the_image_side():
    from tokred.data.corruptions import IMAGENET_C_SIDE, scaled_param

    assert IMAGENET_C_SIDE == 224
    assert scaled_param("gaussian_blur", 5, 224) == 6 and scaled_param("gaussian_blur", 5, 112) == 3
    assert scaled_param("gaussian_noise", 5, 112) == NOISE_SIGMAS[4]   # per pixel: not scaled
    assert scaled_param("jpeg_compression", 2, 112) == JPEG_QUALITIES[1]
    x = _textured(h=112, w=112)
    # Severity 2 (sigma 2 at 224 px) on 112 px images is sigma 1: unscaled severity 1.
    assert torch.equal(corrupt(x, "gaussian_blur", 2, scale_to_size=True), corrupt(x, "gaussian_blur", 1))
    assert not torch.equal(corrupt(x, "gaussian_blur", 2, scale_to_size=True), corrupt(x, "gaussian_blur", 2))
    big = _textured(h=224, w=224)
    assert torch.equal(corrupt(big, "gaussian_blur", 3, scale_to_size=True), corrupt(big, "gaussian_blur", 3))
