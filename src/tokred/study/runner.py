"""Running a model over the cached evaluation set: build it from the weights artefact, patch it as a
run spec says, compute logits on the config's `eval.device` (see `tokred.study.device`). Shared by
every job that runs the model (evaluation, OOD, timing, FLOPs matching, the merge figure).

Artefacts (paths chosen by the rules):
- weights: embedded -> a torch checkpoint {"state_dict", "model", "num_classes", "history"};
  hub -> the downloaded safetensors file plus its sha256 sidecar.
- eval set: {"images": uint8 [N,3,H,W], "labels": int64 [N], "mean", "std"}, decoded once.
- logits: {"logits": float32 [N,K]}.
"""
from __future__ import annotations

import time

import torch

def build_model(cfg: dict, weights_path: str) -> torch.nn.Module:
    """The profile's model with its weights loaded, in eval mode. Registers the config's named method
    variants (`methods:`) first, so every method name a run gives resolves in this job."""
    from ..methods import define_methods

    define_methods(cfg.get("methods"))
    m = cfg["model"]
    if m["source"] == "real":
        from ..data.real import IMG_SIZE, load_real_model

        model = load_real_model(weights_path, cfg["data"].get("img_size") or IMG_SIZE)
    elif m["source"] == "embedded":
        from ..models import create_embedded_model
        from ..data.weights import check_weights_file

        check_weights_file(weights_path, "torch")  # names an LFS pointer / truncated file as such
        ckpt = torch.load(weights_path, map_location="cpu", weights_only=False)
        model = create_embedded_model(ckpt["num_classes"], **ckpt["model"])
        model.load_state_dict(ckpt["state_dict"])
    else:
        from ..data.weights import load_pretrained

        model = load_pretrained(m["name"], weights_path)
    return model.eval()


def compute_logits(model: torch.nn.Module, eval_set: dict, batch_size: int, *, device: str | torch.device = "cpu",
                   desc: str = "eval", progress: bool = True) -> tuple[torch.Tensor, float]:
    """Logits of `model` over the cached set on `device`: (float32 [N, K] on the CPU, seconds spent in
    the model).

    The model is moved to `device` (and stays there); uint8 batches travel to it (pinned memory and a
    non-blocking copy on CUDA, a quarter of the bytes of float32) and are normalised there. Runs under
    `torch.inference_mode` and `device.exact_fp32` (fp32, TF32 off, deterministic algorithms), so
    CPU and CUDA logits agree to float32 rounding; on CPU the logits are those of a plain
    `model(normalize(batch))` loop, bit for bit. The model seconds are wall-clock around the forward,
    the device synchronised on both sides. Raises FloatingPointError naming the first images whose
    logits are not finite.
    """
    from tqdm.auto import tqdm

    from ..models import normalize
    from .device import exact_fp32, synchronize, to_device

    device = torch.device(device)
    model.to(device)
    images = eval_set["images"]
    out, model_s = [], 0.0
    with exact_fp32(), torch.inference_mode():
        for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress,
                      mininterval=5):
            x = normalize(to_device(images[i:i + batch_size], device), eval_set["mean"], eval_set["std"])
            synchronize(device)
            t0 = time.perf_counter()
            y = model(x)
            synchronize(device)
            model_s += time.perf_counter() - t0
            out.append(y.float().cpu())
    logits = torch.cat(out)
    bad = (~torch.isfinite(logits)).any(-1)
    if bad.any():
        idx = bad.nonzero()[:5, 0].tolist()
        raise FloatingPointError(f"{desc}: non-finite logits for {int(bad.sum())} images (first: {idx})")
    return logits, model_s


def apply_run(model: torch.nn.Module, run: dict, schedule: dict | None = None) -> dict:
    """Patch `model` as the run spec says; returns the schedule actually used. A FLOPs-matched run
    takes its keep ratios from `schedule` (the output of `solve_schedule`)."""
    from ..patching import patch, unpatch

    unpatch(model)
    if not run.get("method"):
        return {}
    overrides = run.get("overrides") or {}
    if "match" in run:
        if schedule is None:
            raise ValueError(f"run {run['name']}: a FLOPs-matched run needs its solved schedule")
        patch(model, run["method"], keep=schedule["keep"], **overrides)
        return {k: schedule[k] for k in ("keep", "keep_shape", "target_gflops", "matched_to")}
    sched = {k: run[k] for k in ("r", "keep", "layers", "tile") if k in run}
    patch(model, run["method"], **sched, **overrides)
    return sched


def load_json(path: str | None) -> dict | None:
    import json

    return json.loads(open(path).read()) if path else None
