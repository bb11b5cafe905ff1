"""What the Snakemake rules do, as functions: each thin script in workflow/scripts calls one.

Artefacts (paths chosen by the rules):
- weights: embedded -> a torch checkpoint {"state_dict", "model", "num_classes", "history"};
  hub -> the downloaded safetensors file plus its sha256 sidecar.
- eval set: {"images": uint8 [N,3,H,W], "labels": int64 [N], "mean", "std"}, decoded once.
- logits: {"logits": float32 [N,K]}; metrics: one JSON per run with provenance.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from . import io, metrics


@contextlib.contextmanager
def logged(log_path: str | None):
    """Send stdout/stderr of a job to its Snakemake log file (and keep tracebacks there)."""
    if not log_path:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc()
            raise


def set_threads(n: int) -> None:
    import os

    torch.set_num_threads(max(1, min(int(n), os.cpu_count() or 1)))


# --- model ---------------------------------------------------------------------------------------

def build_model(cfg: dict, weights_path: str) -> torch.nn.Module:
    """The profile's model with its weights loaded, in eval mode."""
    m = cfg["model"]
    if m["source"] == "embedded":
        from .models import create_embedded_model
        from .weights import check_weights_file

        check_weights_file(weights_path, "torch")  # names an LFS pointer / truncated file as such
        ckpt = torch.load(weights_path, map_location="cpu", weights_only=False)
        model = create_embedded_model(ckpt["num_classes"], **ckpt["model"])
        model.load_state_dict(ckpt["state_dict"])
    else:
        from .weights import load_pretrained

        model = load_pretrained(m["name"], weights_path)
    return model.eval()


def train_embedded(cfg: dict, out: str) -> dict:
    from . import synthetic
    from .models import EMBEDDED_DEFAULTS, create_embedded_model
    from .train import train_model

    arch = {k: cfg["model"][k] for k in EMBEDDED_DEFAULTS if k in cfg["model"]}
    task = synthetic.resolve_task(cfg["task"])
    arch["img_size"] = task["img_size"]
    n_cls = synthetic.num_classes(task)
    torch.manual_seed(cfg["seed"])
    model = create_embedded_model(n_cls, **arch)
    t = cfg["train"]
    hist = train_model(model, task, steps=t["steps"], batch_size=t["batch_size"], lr=t["lr"],
                       weight_decay=t["weight_decay"], warmup_frac=t["warmup_frac"],
                       grad_clip=t["grad_clip"], seed=cfg["seed"], curriculum=t.get("curriculum"))
    io.save_torch(out, {"state_dict": model.state_dict(), "model": arch, "num_classes": n_cls,
                        "task": task, "history": hist, "provenance": io.provenance(cfg)})
    return hist


def download_hub_weights(cfg: dict, out: str) -> dict:
    from .weights import default_hub_id, download_weights, hub_url

    m = cfg["model"]
    url = m.get("url") or hub_url(m.get("hub_id") or default_hub_id(m["name"]))
    return download_weights(url, out, sha256=m.get("sha256"), retries=m.get("download_retries", 3))


def normalization(cfg: dict) -> tuple[tuple, tuple]:
    if cfg["model"]["source"] == "embedded":
        from .models import EMBEDDED_MEAN, EMBEDDED_STD

        return EMBEDDED_MEAN, EMBEDDED_STD
    import timm

    pc = timm.models.get_pretrained_cfg(cfg["model"]["name"])
    return tuple(pc.mean), tuple(pc.std)


# --- data ----------------------------------------------------------------------------------------

def build_eval_set(cfg: dict, out: str) -> int:
    mean, std = normalization(cfg)
    d = cfg["data"]
    if cfg["model"]["source"] == "embedded":
        from . import synthetic

        images, labels = synthetic.make_images(cfg["task"], d["eval_images"], seed=d["eval_seed"])
    else:
        from . import imagenet

        n_cls = d.get("num_classes", 1000)
        # The same keys as the pre-flight's check (tokred.preflight.check_config), so both label alike.
        samples = imagenet.list_samples(d["imagenet_val"], d.get("labels_file") or None, num_classes=n_cls,
                                        labels_convention=d.get("labels_convention"),
                                        class_index_wnids=imagenet.imagenet_wnids(d.get("wnids_file"), num_classes=n_cls))
        tf = imagenet.build_transform(d["img_size"], d["crop_pct"], d["interpolation"])
        images, labels = imagenet.build_eval_cache(samples, tf, limit=d.get("limit"),
                                                   num_workers=d.get("decode_workers", 0))
    io.save_torch(out, {"images": images, "labels": labels, "mean": mean, "std": std})
    print(f"eval set: {tuple(images.shape)} uint8, {int(labels.max()) + 1} classes seen")
    return len(labels)


def load_eval_set(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


# --- evaluation ----------------------------------------------------------------------------------

@torch.no_grad()
def compute_logits(model: torch.nn.Module, eval_set: dict, batch_size: int, *, desc: str = "eval",
                   progress: bool = True) -> tuple[torch.Tensor, float]:
    """Logits over the cached set (float32 [N, K]) and the seconds spent in the model."""
    from tqdm.auto import tqdm

    from .models import normalize

    images = eval_set["images"]
    out, model_s = [], 0.0
    for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress,
                  mininterval=5):
        x = normalize(images[i:i + batch_size], eval_set["mean"], eval_set["std"])
        t0 = time.perf_counter()
        y = model(x)
        model_s += time.perf_counter() - t0
        out.append(y.float())
    logits = torch.cat(out)
    bad = (~torch.isfinite(logits)).any(-1)
    if bad.any():
        idx = bad.nonzero()[:5, 0].tolist()
        raise FloatingPointError(f"{desc}: non-finite logits for {int(bad.sum())} images (first: {idx})")
    return logits, model_s


def solve_schedule(cfg: dict, spec: dict, *, weights: str, out: str, threads: int = 1) -> dict:
    """Solve a keep profile so the patched model costs what ToMe at spec['tome_r'] costs (SPEC §3.4);
    written once and read by every run that uses it."""
    from .flops import count_flops, match_keep
    from .patching import patch, unpatch

    set_threads(threads)
    model = build_model(cfg, weights)
    input_size = (3, *model.patch_embed.img_size)
    target = count_flops(patch(model, "tome", r=spec["tome_r"]), input_size)
    unpatch(model)
    keeps, achieved = match_keep(model, spec["method"], target, profile=spec["profile"], input_size=input_size,
                                 profile_kw=spec.get("profile_kw"))
    result = {"method": spec["method"], "profile": spec["profile"], "profile_kw": spec.get("profile_kw") or {},
              "keep": keeps, "target_gflops": target, "achieved_gflops": achieved,
              "matched_to": f"tome_r{spec['tome_r']}", "provenance": io.provenance(cfg)}
    print(f"{spec['method']} {spec['profile']}: keep {keeps[0]:.4f}.. -> {achieved:.4f} GFLOPs "
          f"(target {target:.4f}, {100 * (achieved / target - 1):+.2f}%)")
    io.write_json(out, result)
    return result


def apply_run(model: torch.nn.Module, run: dict, schedule: dict | None = None) -> dict:
    """Patch `model` as the run spec says; returns the schedule actually used. A FLOPs-matched run
    takes its keep ratios from `schedule` (the output of `solve_schedule`)."""
    from .patching import patch, unpatch

    unpatch(model)
    if not run.get("method"):
        return {}
    overrides = run.get("overrides") or {}
    if "match" in run:
        if schedule is None:
            raise ValueError(f"run {run['name']}: a FLOPs-matched run needs its solved schedule")
        patch(model, run["method"], keep=schedule["keep"], **overrides)
        return {k: schedule[k] for k in ("keep", "profile", "target_gflops", "matched_to")}
    sched = {k: run[k] for k in ("r", "keep", "layers", "tile") if k in run}
    patch(model, run["method"], **sched, **overrides)
    return sched


def load_json(path: str | None) -> dict | None:
    import json

    return json.loads(open(path).read()) if path else None


def evaluate_run(cfg: dict, run: dict, *, weights: str, eval_set_path: str, base_logits_path: str | None,
                 out_metrics: str, out_logits: str, schedule_path: str | None = None, threads: int = 1) -> dict:
    """One run: build the model, apply `run` (method + schedule; None method = unreduced baseline),
    compute logits, FLOPs and metrics against the baseline logits."""
    from .flops import count_flops

    set_threads(threads)
    model = build_model(cfg, weights)
    es = load_eval_set(eval_set_path)
    input_size = tuple(es["images"].shape[1:])
    base_gflops = count_flops(model, input_size)
    schedule = apply_run(model, run, load_json(schedule_path))
    gflops = count_flops(model, input_size)

    logits, model_s = compute_logits(model, es, cfg["eval"]["batch_size"], desc=run["name"])
    labels = es["labels"]
    base = torch.load(base_logits_path, weights_only=False)["logits"] if base_logits_path else logits
    result = run_metrics(cfg, run, model, logits, base, labels, gflops, base_gflops, schedule)
    print(f"{run['name']}: top1 {result['top1']:.2f} drop {result['drop_pp']:.2f} pp "
          f"GFLOPs {gflops:.3f}; {len(labels) / model_s:.1f} img/s in the model")
    io.save_torch(out_logits, {"logits": logits})
    io.write_json(out_metrics, result)
    return result


def run_metrics(cfg: dict, run: dict, model, logits, base, labels, gflops: float, base_gflops: float,
                schedule: dict, **extra) -> dict:
    """The metrics JSON of one run (SPEC §4) with its method, schedule and provenance."""
    reduced = bool(run.get("method"))
    return {
        "run": run["name"],
        "group": run["group"],
        "method": run.get("method") or "none",
        "method_config": model._tokred.method.as_dict() if reduced else None,
        "overrides": run.get("overrides") or {},
        "schedule": schedule,
        "resolved_r": list(model._tokred.rs) if reduced else None,
        "gflops": gflops,
        "base_gflops": base_gflops,
        "rel_cost": gflops / base_gflops,
        **metrics.summarize(base, logits, labels, n_boot=cfg["eval"]["bootstrap"], seed=cfg["seed"]),
        "provenance": io.provenance({"model": cfg["model"], "data": cfg["data"], "task": cfg.get("task"),
                                     "train": cfg.get("train"), "run": run}),
        **extra,
    }
