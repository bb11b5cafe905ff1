"""OOD robustness (docs/method.md §6): the same runs evaluated on corrupted and shifted images.

One job per condition (clean, corruption x severity, ImageNet-V2/R/C): it builds the condition's
images once, evaluates the unreduced model first and then every reduced run against it on the same
images, and writes one metrics JSON + logits per run. Corruptions are applied to the cached eval set
(already resized and centre-cropped, as ImageNet-C corrupts the 224 crop), deterministically per image,
with the blur sigma scaled to the image side (σ·H/224, `tokred.data.corruptions.scaled_param`), so a
model at another resolution sees the blur ImageNet-C defines at 224 px; the metrics JSON records the
parameter applied (`corruption_param`).
"""
from __future__ import annotations

import torch

from .. import io
from .device import eval_device
from .evaluate import run_metrics
from .runner import apply_run, build_model, compute_logits, load_json


def condition_images(cfg: dict, cond: dict, eval_set_path: str) -> dict:
    """{'images' uint8 [N,3,H,W], 'labels', 'mean', 'std', 'class_mask' (ImageNet-R) or None, 'param' (the
    corruption's parameter as applied: noise sigma, blur sigma in px of these images, JPEG quality; None
    for the clean set and the datasets)}."""
    ood = cfg["experiments"]["ood"]
    limit = ood.get("images")
    es = io.load_eval_set(eval_set_path)
    out = {"mean": es["mean"], "std": es["std"], "class_mask": None, "param": None}
    if cond["kind"] in ("clean", "corruption"):
        from ..data.imagenet import subset_indices

        idx = torch.tensor(subset_indices(len(es["labels"]), limit))
        images, out["labels"] = es["images"][idx], es["labels"][idx]
        if cond["kind"] == "corruption":
            from ..data.corruptions import corrupt, scaled_param

            images = corrupt(images, cond["corruption"], cond["severity"], seed=cfg["seed"], progress=True,
                             scale_to_size=True)
            out["param"] = scaled_param(cond["corruption"], cond["severity"], min(images.shape[-2:]))
        out["images"] = images
        return out

    from ..data import imagenet, ood_sets
    from ..data.classes import imagenet_wnids
    from ..data.preprocess import data_config, eval_transform

    d = cfg["data"]
    # The clean set's preprocessing (timm's pretrained config of model.name, data.* overrides), so V2/R
    # images are prepared as the val images were; a mismatch with the recorded one (timm upgraded, a key
    # edited by hand since the eval set was built) would compare unlike inputs.
    dc = data_config(cfg)
    if es.get("preprocess") is not None and dict(es["preprocess"]) != dc:
        raise ValueError(f"eval set {eval_set_path} was preprocessed with {es['preprocess']}, but model.name / "
                         f"data.img_size, crop_pct, interpolation now give {dc}: rebuild the eval set")
    n_cls = d.get("num_classes", 1000)
    # Wnid folders are labelled by the wnid's class index (timm's ImageNet-1k list or wnids_file).
    wnids = imagenet_wnids(d.get("wnids_file"), num_classes=n_cls)
    if cond["dataset"] == "imagenet_v2":
        samples = ood_sets.list_imagenet_v2(d["imagenet_v2"], num_classes=n_cls)
        tf = eval_transform(dc)
    elif cond["dataset"] == "imagenet_r":
        samples = ood_sets.list_imagenet_r(d["imagenet_r"], wnids, num_classes=n_cls)
        out["class_mask"] = ood_sets.imagenet_r_mask(d["imagenet_r"], wnids, num_classes=n_cls)
        tf = eval_transform(dc)
    else:  # imagenet_c: stored as 224 px centre crops (Hendrycks & Dietterich 2019): centre crop only
        listing = ood_sets.list_imagenet_c(d["imagenet_c"], [cond["corruption"]], [cond["severity"]],
                                           class_index_wnids=wnids, num_classes=n_cls)
        samples = listing[(cond["corruption"], cond["severity"])]
        tf = ood_sets.build_center_crop_transform(tuple(dc["input_size"][1:]))
    out["images"], out["labels"] = imagenet.build_eval_cache(samples, tf, limit=limit,
                                                             num_workers=d.get("decode_workers", 0))
    return out


def restrict_to_mask(logits: torch.Tensor, labels: torch.Tensor, mask: list[int] | None):
    """ImageNet-R: keep the 200 classes' logits; labels become positions in the mask."""
    if mask is None:
        return logits, labels
    idx = torch.tensor(mask)
    if int(idx.max()) >= logits.shape[1]:
        raise ValueError(f"ImageNet-R's classes reach class index {int(idx.max())}, but the model has "
                         f"{logits.shape[1]} logits")
    pos = torch.full((max(int(idx.max()), int(labels.max())) + 1,), -1, dtype=torch.long)
    pos[idx] = torch.arange(len(idx))
    return logits[:, idx], pos[labels]


def evaluate_condition(cfg: dict, name: str, cond: dict, runs: list[dict], *, weights: str, eval_set_path: str,
                       schedules: dict[str, str], outputs: dict[str, tuple[str, str]], threads: int = 1) -> list[dict]:
    """Evaluate every run on one condition. `schedules`: run name -> solved schedule JSON (matched
    runs); `outputs`: run name -> (metrics path, logits path). runs[0] must be the unreduced model.
    Raises RuntimeError naming `eval.device` before any work when it names CUDA and CUDA is not available."""
    from ..flops import count_flops

    device = eval_device(cfg)  # first: a CUDA config on a CPU machine fails here, before any work
    if runs[0].get("method"):
        raise ValueError("the first OOD run must be the unreduced model (the reference of the others)")
    io.set_threads(threads)
    model = build_model(cfg, weights)
    data = condition_images(cfg, cond, eval_set_path)
    input_size = tuple(data["images"].shape[1:])
    # FLOPs first, on the CPU (a property of the shapes, counted on one fixed input as everywhere else),
    # before compute_logits moves the model to the device.
    base_gflops = count_flops(model, input_size)
    plans = []
    for run in runs:
        schedule = apply_run(model, run, load_json(schedules.get(run["name"])))
        plans.append((run, schedule, count_flops(model, input_size) if run.get("method") else base_gflops))
    base, results = None, []
    for run, schedule, gflops in plans:
        apply_run(model, run, load_json(schedules.get(run["name"])))
        logits, _ = compute_logits(model, data, cfg["eval"]["batch_size"], device=device,
                                   desc=f"{name}/{run['name']}")
        logits, labels = restrict_to_mask(logits, data["labels"], data["class_mask"])
        base = logits if base is None else base
        extra = {"condition": name, **{k: cond.get(k) for k in ("kind", "corruption", "severity", "dataset")},
                 "corruption_param": data["param"], "image_side": min(input_size[1:])}
        result = run_metrics(cfg, run, model, logits, base, labels, gflops, base_gflops, schedule, device=device,
                             **extra)
        print(f"{name} {run['name']}: top1 {result['top1']:.2f} drop {result['drop_pp']:.2f} pp")
        m_path, l_path = outputs[run["name"]]
        io.save_torch(l_path, {"logits": logits, "labels": labels})
        io.write_json(m_path, result)
        results.append(result)
    return results
