"""The device every job that runs the model evaluates on (`eval.device`: `cpu`, `cuda`, `cuda:N`), and
the numerics it evaluates with.

A job resolves its device at its first line (`eval_device`), before it reads weights or images, so a
CUDA config on a machine without CUDA fails at once, naming the key, instead of falling back to the
CPU. The check runs in the job, not while Snakemake builds the DAG: under SLURM the DAG is built on a
submit host that usually has no GPU while the jobs run on GPU nodes, and `snakemake -n` must show the
GPU requests (`resources: gpu=1`, rules/common.smk) on any machine.

Numerics (`exact_fp32`): float32 throughout, TF32 off for matrix products (cuBLAS) and cuDNN, so
CUDA and CPU logits differ only by float32 rounding (summation order), not by TF32's 10-bit
mantissa; `torch.use_deterministic_algorithms(True, warn_only=True)`, which on CUDA picks the sorted,
deterministic `index_add_` the merges use (ToMe's and ours' weighted sums) instead of atomics, and
sets cuBLAS's fixed workspace (`CUBLAS_WORKSPACE_CONFIG`). What that gives (PyTorch's notes on
reproducibility, https://pytorch.org/docs/stable/notes/randomness.html):
- the same logits run to run on the same machine, software and thread count: on CPU the kernels are
  those without the flags (tests/test_device.py: bit-identical to a plain `model(x)` loop); on CUDA
  for the ops evaluation uses (linear layers, softmax, scaled dot-product attention's forward,
  gathers, `index_add_`, `scatter_reduce_` amax), which tests/test_device.py checks where a GPU is
  visible (not yet run on one in this project);
- integer `scatter_add_` (select.py's counts) may warn on CUDA that it has no deterministic kernel;
  integer sums are exact, so the warning is harmless;
- not bit-identical logits across devices, GPU models, library versions or CPU thread counts
  (different summation orders): agreement to float32 rounding, which can flip an argmax where two
  logits (or two merge candidates) are within rounding of each other.
An op without a deterministic CUDA kernel warns (`warn_only`) rather than failing the job.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re

import torch

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")  # as config/schema.yaml's eval.device

# cuBLAS is deterministic only with a fixed workspace per stream (PyTorch's reproducibility notes);
# read when cuBLAS's handle is created, so it is set before the job's first CUDA matmul.
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(spec, key: str = "eval.device") -> torch.device:
    """`spec` ('cpu', 'cuda', 'cuda:N') as a torch.device, checked against this machine.

    Raises ValueError when `spec` is not one of those forms and RuntimeError when it names CUDA but
    CUDA is not available here (a CPU-only torch or no GPU) or N is not below the number of visible
    GPUs; both messages name the config `key` and its value. Never falls back to the CPU.
    """
    if not isinstance(spec, str) or not DEVICE_PATTERN.match(spec):
        raise ValueError(f"config key '{key}': {spec!r} is not a device; write cpu, cuda or cuda:N")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES)")
        raise RuntimeError(f"config key '{key}' is {spec!r} but CUDA is not available on {platform.node()}: "
                           f"{why}. Run the job on a GPU machine (the job asks for resources gpu=1) or set "
                           f"{key}: cpu")
    n = torch.cuda.device_count()
    index = int(spec.split(":")[1]) if ":" in spec else torch.cuda.current_device()
    if index >= n:
        raise RuntimeError(f"config key '{key}' is {spec!r} but only {n} CUDA device(s) are visible "
                           f"(cuda:0..cuda:{n - 1}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    return torch.device("cuda", index)


def eval_device(cfg: dict) -> torch.device:
    """The job's device: `eval.device` of the config (default cpu), resolved by `resolve_device`."""
    return resolve_device((cfg.get("eval") or {}).get("device", "cpu"), "eval.device")


@contextlib.contextmanager
def exact_fp32():
    """Evaluate in true float32 with deterministic algorithms where torch has them (module docstring);
    the previous settings are restored on exit. Yields the numerics record of metrics' provenance."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
             torch.get_float32_matmul_precision(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    # The legacy allow_tf32 flags, not the fp32_precision ones: torch refuses a mix of the two APIs,
    # and the legacy ones are what timm and most user code set.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False  # benchmark mode may pick a different kernel per run
    torch.set_float32_matmul_precision("highest")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield numerics()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.backends.cudnn.benchmark = saved[2]
        torch.set_float32_matmul_precision(saved[3])
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])


def numerics() -> dict:
    """The numerics now in force: {'dtype', 'tf32_matmul', 'tf32_cudnn', 'deterministic'}."""
    return {"dtype": "float32", "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "deterministic": torch.are_deterministic_algorithms_enabled()}


def eval_numerics() -> dict:
    """The numerics `exact_fp32` evaluates with, read from torch while in force (for provenance)."""
    with exact_fp32() as n:
        return n


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU batch on `device`: on CUDA through pinned memory with a non-blocking copy (the host
    prepares the next batch while the copy runs); on CPU `x` itself."""
    if device.type != "cuda":
        return x
    return x.pin_memory().to(device, non_blocking=True)


def synchronize(device: torch.device) -> None:
    """Wait for `device`'s queued work (CUDA); nothing on CPU. For wall-clock timings."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
