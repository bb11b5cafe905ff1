"""Latency and throughput measurement for the system study (docs/method.md §4, §5 "system").

    hw = hardware_info("cuda")                                    # record with every figure
    rows = time_model(model, batch_sizes=[1, 8, 64], device="cuda", amp=True)
    rows = token_sweep(model, range(32, 198), scope="block")     # where latency steps with N
    correlation(gflops, latency)                                  # {"pearson", "spearman", "n"}

Timing protocol (`time_fn`): `warmup` untimed calls, then `repeats` timed repeats of `inner` calls
each; on CUDA the device is synchronised before the first timed repeat and after every repeat, so a
repeat's wall time (`time.perf_counter`) covers all kernels it launched. Statistics are over the
repeats (per call): median (the reported figure), p10/p90, IQR, min, max, std.

AMP runs only on CUDA (autocast to float16). On CPU, `amp=True` raises `ValueError`; callers that
loop over AMP modes use `amp_modes(device)`, which lists only the modes a device supports.

This module imports torch; the package's `__init__` never imports it.
"""
from __future__ import annotations

import math
import os
import platform
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from ..io import cpu_model

STAT_KEYS = ("median", "mean", "std", "min", "max", "p10", "p90", "iqr")


# --- hardware -------------------------------------------------------------------------------------

def _is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def hardware_info(device="cpu") -> dict:
    """Host, device and library versions a timing was taken with (flat, JSON/CSV friendly)."""
    import timm
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "device": str(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "cuda_name": None,
        "cuda_capability": None,
        "cuda_runtime": None,
        "cudnn": None,
    }
    if _is_cuda(device):
        dev = torch.device(device)
        major, minor = torch.cuda.get_device_capability(dev)
        info.update(cuda_name=torch.cuda.get_device_name(dev), cuda_capability=f"{major}.{minor}",
                    cuda_runtime=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


# --- timing ---------------------------------------------------------------------------------------

def _default_sync(device) -> Callable[[], None] | None:
    if not _is_cuda(device):
        return None
    import torch

    dev = torch.device(device)
    return lambda: torch.cuda.synchronize(dev)


def summarize(seconds: Sequence[float]) -> dict:
    """Median, mean, std (ddof 1; 0 for one value), min, max, p10, p90 and IQR of `seconds`."""
    a = np.asarray(seconds, dtype=float)
    if a.size == 0:
        raise ValueError("summarize: no values")
    q10, q25, q50, q75, q90 = np.percentile(a, [10, 25, 50, 75, 90])
    return {"median": float(q50), "mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "p10": float(q10), "p90": float(q90),
            "iqr": float(q75 - q25)}


def time_fn(fn: Callable[[], object], *, device="cpu", warmup: int = 3, repeats: int = 10, inner: int = 1,
            sync: Callable[[], None] | None = None, timer: Callable[[], float] = time.perf_counter) -> dict:
    """Time `fn()`: `warmup` untimed calls, then `repeats` repeats of `inner` calls each.

    Returns `seconds` (per call, one entry per repeat) and its `summarize` statistics in seconds,
    plus `repeats`, `inner`, `warmup`. `sync` defaults to `torch.cuda.synchronize` on a CUDA
    `device` and to nothing elsewhere; it is called after the warm-up (before the first timed
    repeat) and at the end of every repeat, inside the timed region. Pass `sync` to inject another
    barrier (tests use a counter).
    """
    if repeats < 1 or inner < 1 or warmup < 0:
        raise ValueError(f"time_fn: need repeats >= 1, inner >= 1, warmup >= 0 (got {repeats}, {inner}, {warmup})")
    if sync is None:
        sync = _default_sync(device)
    barrier = sync if sync is not None else (lambda: None)
    for _ in range(warmup):
        fn()
    barrier()
    seconds = []
    for _ in range(repeats):
        t0 = timer()
        for _ in range(inner):
            fn()
        barrier()
        seconds.append((timer() - t0) / inner)
    return {"seconds": seconds, **summarize(seconds), "repeats": repeats, "inner": inner, "warmup": warmup}


def _ms_stats(t: dict, prefix: str = "latency_ms") -> dict:
    out = {prefix: t["median"] * 1e3}
    for k in STAT_KEYS[1:]:
        out[f"{prefix}_{k}"] = t[k] * 1e3
    return out


# --- models ---------------------------------------------------------------------------------------

def amp_modes(device) -> list[bool]:
    """AMP settings `time_model` supports on `device`: [False, True] on CUDA, [False] elsewhere."""
    return [False, True] if _is_cuda(device) else [False]


def autocast(device, amp: bool, amp_dtype=None):
    """The autocast context `time_model` uses: none without `amp`, float16 (or `amp_dtype`)
    autocast on CUDA, ValueError on any other device."""
    import contextlib

    import torch

    if not amp:
        return contextlib.nullcontext()
    if not _is_cuda(device):
        raise ValueError(f"amp=True needs a CUDA device (got {device!r}); AMP is float16 autocast on CUDA only "
                         "- use amp_modes(device) to loop over the supported settings")
    return torch.autocast(device_type="cuda", dtype=amp_dtype or torch.float16)


def _is_oom(err: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(err, oom)) or "out of memory" in str(err).lower()


def time_model(model, *, batch_sizes: Iterable[int], img_size=None, device="cpu", amp: bool = False,
                  amp_dtype=None, warmup: int = 3, repeats: int = 10, inner: int = 1, seed: int = 0,
                  sync: Callable[[], None] | None = None) -> list[dict]:
    """Per-batch latency and images/s of `model` (moved to `device`, set to eval) per batch size.

    Inputs are `torch.randn` from a generator seeded with `seed` (drawn on the CPU, then moved), run
    under `torch.inference_mode()` and, with `amp`, float16 autocast (CUDA only; `amp=True` on another
    device raises ValueError). `img_size` defaults to the model's `patch_embed.img_size`.

    One row per batch size: batch_size, latency_ms (median per batch) and its spread
    (latency_ms_{mean,std,min,max,p10,p90,iqr}), img_per_s = batch_size / median latency, with
    img_per_s_lo/hi = batch_size / p90 resp. p10 latency, plus amp, amp_dtype, device, img_size,
    warmup, repeats, status ("ok", or "oom" on a CUDA out-of-memory with NaN figures).
    """
    import torch

    amp_dtype = amp_dtype if amp_dtype is not None else torch.float16
    autocast(device, amp, amp_dtype)  # fail before any work
    if img_size is None:
        img_size = model.patch_embed.img_size
    hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    in_chans = getattr(getattr(model, "patch_embed", None), "proj", None)
    in_chans = in_chans.in_channels if in_chans is not None else 3
    model.to(device).eval()
    rows = []
    for b in batch_sizes:
        b = int(b)
        row = {"batch_size": b, "amp": bool(amp), "amp_dtype": str(amp_dtype).replace("torch.", "") if amp else None,
               "device": str(device), "img_size": "x".join(map(str, hw)), "warmup": warmup, "repeats": repeats}
        gen = torch.Generator().manual_seed(seed)
        try:
            x = torch.randn(b, in_chans, *hw, generator=gen).to(device)
            with torch.inference_mode(), autocast(device, amp, amp_dtype):
                t = time_fn(lambda: model(x), device=device, warmup=warmup, repeats=repeats, inner=inner, sync=sync)
        except RuntimeError as err:
            if not (_is_cuda(device) and _is_oom(err)):
                raise
            del err
            torch.cuda.empty_cache()
            row.update({"latency_ms": math.nan, **{f"latency_ms_{k}": math.nan for k in STAT_KEYS[1:]},
                        "img_per_s": math.nan, "img_per_s_lo": math.nan, "img_per_s_hi": math.nan, "status": "oom"})
            rows.append(row)
            continue
        row.update(_ms_stats(t))
        row.update(img_per_s=b / t["median"], img_per_s_lo=b / t["p90"], img_per_s_hi=b / t["p10"], status="ok")
        rows.append(row)
        del x
    return rows


def token_sweep(model, counts: Iterable[int], *, batch_size: int = 1, device="cpu", warmup: int = 3,
                repeats: int = 10, inner: int = 1, scope: str = "block", block: int = 0, amp: bool = False,
                amp_dtype=None, seed: int = 0, passes: int = 1, shuffle: bool = False,
                sync: Callable[[], None] | None = None) -> list[dict]:
    """Latency against the token count N of one block (scope "block": `model.blocks[block]`) or of
    the whole transformer (scope "model": norm_pre, all blocks, norm and the head), fed a random
    [batch_size, N, embed_dim] token tensor directly, so N can be any count (patch embedding and
    position embedding are bypassed). The model must be unpatched (a patched model would reduce).

    With `passes` > 1 the counts are timed that many times (each pass `warmup` + `repeats`) and the
    repeats pooled; `shuffle` visits the counts in a fresh random order in every pass (seeded), so
    a slow drift of the machine's load does not masquerade as a trend in N.

    One row per count, in the order given: n_tokens, scope, batch_size, latency_ms (median over all
    pooled repeats) and its spread, amp, device, repeats (pooled count).
    """
    import torch

    if scope not in ("block", "model"):
        raise ValueError(f"token_sweep scope {scope!r}: expected 'block' or 'model'")
    if getattr(type(model), "_tokred_patched", False):
        raise ValueError("token_sweep needs an unpatched model (tokred.unpatch(model) first)")
    if passes < 1:
        raise ValueError(f"token_sweep: passes {passes} < 1")
    amp_dtype = amp_dtype if amp_dtype is not None else torch.float16
    autocast(device, amp, amp_dtype)
    model.to(device).eval()
    if scope == "block":
        run = model.blocks[block]
    else:
        def run(x):
            return model.forward_head(model.norm(model.blocks(model.norm_pre(x))))
    dim = model.embed_dim if hasattr(model, "embed_dim") else model.num_features
    counts = [int(n) for n in counts]
    bad = [n for n in counts if n < 1]
    if bad:
        raise ValueError(f"token_sweep: token counts {bad} < 1")
    inputs = {n: torch.randn(batch_size, n, dim, generator=torch.Generator().manual_seed(seed + n)).to(device)
              for n in dict.fromkeys(counts)}
    samples: dict[int, list[float]] = {n: [] for n in inputs}
    rng = np.random.default_rng(seed)
    for _ in range(passes):
        order = list(inputs)
        if shuffle:
            order = [order[i] for i in rng.permutation(len(order))]
        for n in order:
            x = inputs[n]
            with torch.inference_mode(), autocast(device, amp, amp_dtype):
                t = time_fn(lambda: run(x), device=device, warmup=warmup, repeats=repeats, inner=inner, sync=sync)
            samples[n] += t["seconds"]
    rows = []
    for n in counts:
        t = summarize(samples[n])
        rows.append({"n_tokens": n, "scope": scope, "batch_size": batch_size, **_ms_stats(t), "amp": bool(amp),
                     "device": str(device), "repeats": len(samples[n])})
    return rows


# --- statistics -----------------------------------------------------------------------------------

def rankdata(a: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given the mean of their ranks (scipy's 'average')."""
    a = np.asarray(a, dtype=float)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.size, dtype=float)
    # start of each run of equal values in sorted order
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], a.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0  # mean of ranks s+1..e
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum() / den) if den > 0 else math.nan


def correlation(x: Sequence[float], y: Sequence[float]) -> dict:
    """Pearson r and Spearman rho (Pearson of average ranks) of paired values; NaN pairs dropped.

    Fewer than 2 pairs or a constant variable gives NaN.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"correlation: {x.size} x values for {y.size} y values")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n < 2:
        return {"pearson": math.nan, "spearman": math.nan, "n": n}
    return {"pearson": _pearson(x, y), "spearman": _pearson(rankdata(x), rankdata(y)), "n": n}
