"""The evaluation job: one run (the baseline or a method with its schedule) -> logits and a metrics
JSON with its method, schedule, GFLOPs, the metrics against the baseline's logits, the head-free
fidelity metrics against the baseline's CLS features (docs/method.md §4), and provenance.
The model runs on `eval.device` (tokred.study.device); FLOPs are counted on the CPU before it moves."""
from __future__ import annotations

import torch

from .. import io
from . import fidelity, metrics
from .device import eval_device, eval_numerics
from .runner import apply_run, build_model, compute_logits, load_json

# Images the fidelity metrics use at most (`eval.fidelity_images`): the baseline stores their CLS
# features after every block (12 x 2000 x 384 in fp16 = 18 MB for DeiT-S), so the ImageNet profile's
# 50k images need no 450 MB file; kNN over 2000 images is a 2000 x 2000 similarity. Evenly spaced.
DEFAULT_FIDELITY_IMAGES = 2000


def evaluate_run(cfg: dict, run: dict, *, weights: str, eval_set_path: str, base_logits_path: str | None,
                 out_metrics: str, out_logits: str, schedule_path: str | None = None, threads: int = 1) -> dict:
    """One run: build the model, apply `run` (method + schedule; None method = unreduced baseline),
    compute logits on `eval.device`, FLOPs and metrics against the baseline logits. Raises RuntimeError
    naming `eval.device` before any work when it names CUDA and CUDA is not available."""
    from ..flops import count_flops
    from ..patching import clip_stats, is_patched, track_clips

    device = eval_device(cfg)  # first: a CUDA config on a CPU machine fails here, before any work
    io.set_threads(threads)
    model = build_model(cfg, weights)
    es = io.load_eval_set(eval_set_path)
    input_size = tuple(es["images"].shape[1:])
    base_gflops = count_flops(model, input_size)
    schedule = apply_run(model, run, load_json(schedule_path))
    gflops, by_module = count_flops(model, input_size, by_module=True)  # one trace gives both
    block_gflops = [by_module.get(f"blocks.{i}", 0.0) for i in range(len(model.blocks))]

    if is_patched(model):
        track_clips(model)  # how often the L2 clip fires over the eval set (FLOP counting excluded)
    n = len(es["images"])
    subset = fidelity.fidelity_subset(n, cfg["eval"].get("fidelity_images", DEFAULT_FIDELITY_IMAGES))
    with fidelity.CLSRecorder(model, subset) as rec:
        logits, model_s = compute_logits(model, es, cfg["eval"]["batch_size"], device=device, desc=run["name"])
    feats = rec.features()
    labels = es.get("labels")
    if base_logits_path:
        base_file = torch.load(base_logits_path, weights_only=False)
        base, base_feats = base_file["logits"], base_file["cls_features"]
    else:
        base, base_feats = logits, feats
    clips = clip_stats(model) if is_patched(model) else None
    result = run_metrics(cfg, run, model, logits, base, labels, gflops, base_gflops, schedule, device=device,
                         clip_fired=clips and clips["fraction"], clip_counts=clips,
                         block_tokens=feats["tokens"], block_gflops=block_gflops,
                         fidelity={**fidelity.run_fidelity(base_feats, feats), "subset_of": n})
    f = result["fidelity"]
    acc = f"top1 {result['top1']:.2f} drop {result['drop_pp']:.2f} pp " if "top1" in result else ""
    print(f"{run['name']}: {acc}CLS cos {f['cls_cosine']:.4f} CKA {f['cls_cka']:.4f} "
          f"GFLOPs {gflops:.3f}; {n / model_s:.1f} img/s in the model")
    # The baseline's file also carries its recorded CLS features (FEATURE_DTYPE): every run reads them.
    io.save_torch(out_logits, {"logits": logits, **({} if base_logits_path else {"cls_features": feats})})
    io.write_json(out_metrics, result)
    return result


def run_metrics(cfg: dict, run: dict, model, logits, base, labels, gflops: float, base_gflops: float,
                schedule: dict, *, device="cpu", **extra) -> dict:
    """The metrics JSON of one run (docs/method.md §4) with its method, schedule and provenance (which records
    the evaluation `device` and the numerics of `tokred.study.device.exact_fp32`); `extra` keys are added as
    they are (the evaluation job adds `block_tokens` and `block_gflops`: tokens leaving and GFLOPs of
    each block; `fidelity`: `tokred.study.fidelity.run_fidelity` against the baseline's CLS features on
    an evenly spaced subset of `eval.fidelity_images`, plus `subset_of`, the eval set's size; `clip_fired`: per block, the fraction of merged tokens the L2 clip
    shortened, None where a block merged nothing, or None for a method without clip; and `clip_counts`:
    the counts behind it, see `tokred.patching.clip_stats`)."""
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
        **metrics.summarize(base, logits, labels, n_boot=cfg["eval"]["bootstrap"], seed=cfg["seed"],
                            head=getattr(model, "num_classes", 1) > 0),
        "provenance": {**io.provenance({"model": cfg["model"], "data": cfg["data"], "task": cfg.get("task"),
                                        "train": cfg.get("train"), "run": run}, device=str(device)),
                       "numerics": eval_numerics()},
        **extra,
    }
