"""Estimated wall time of the paper profile's model work: forward passes x measured images/s.

    python benchmarks/paper_walltime.py                       # measure here (CPU, DeiT-S, batch 64)
    python benchmarks/paper_walltime.py --device cuda         # measure on a GPU
    python benchmarks/paper_walltime.py --img-per-s 2900 4100 3800   # baseline, ToMe r=13, ours: no measuring

Forward passes come from the config (default config/imagenet.yaml) exactly as the Snakefile expands
it: every evaluation run (`tokred.study.config.expand_runs`) over the val images (`data.limit`, else
`--val-images`), and every OOD condition x OOD run (`ood_conditions`, `ood_runs`) over
`experiments.ood.images` (ImageNet-V2/R/C, when their paths are set, at their published sizes,
capped the same way). Each run is timed at the speed of its class: the unreduced model, ToMe, or
ours (every other method). The speeds are measured through the pipeline's own loop
(`tokred.study.runner.compute_logits`: fp32, TF32 off) on a DeiT-S-shaped model with random weights
(no download) at `--batch`, ToMe and ours at r=13: runs at smaller r, or reducing only a few early
layers, run nearer the baseline's speed, so the reduced runs' share is a lower bound.
FLOPs counting (on the CPU, twice per evaluation job, once per run per OOD job) is measured and
added; not counted: job start-up, the eval-set decode, the OOD corruptions, the schedule solves,
the profiling jobs, the paper.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# Published sizes of the optional OOD sets (images per set; ImageNet-C per corruption x severity).
OOD_SET_IMAGES = {"imagenet_v2": 10_000, "imagenet_r": 30_000, "imagenet_c": 50_000}


def speed_class(run: dict) -> str:
    return "baseline" if not run.get("method") else ("tome" if run["method"] == "tome" else "ours")


def forward_passes(cfg: dict, val_images: int) -> tuple[dict[str, int], dict[str, int]]:
    """(images through the model per speed class, jobs per kind) for the config's runs."""
    from tokred.study import config as preflight

    n_val = cfg["data"].get("limit") or val_images
    passes = {"baseline": 0, "tome": 0, "ours": 0}
    runs = preflight.expand_runs(cfg)
    for run in runs.values():
        passes[speed_class(run)] += n_val
    conds, ood_runs = preflight.ood_conditions(cfg), preflight.ood_runs(cfg)
    limit = (cfg["experiments"].get("ood") or {}).get("images")
    for cond in conds.values():
        n = OOD_SET_IMAGES[cond["dataset"]] if cond["kind"] == "dataset" else n_val
        n = min(n, limit) if limit else n
        for run in ood_runs:
            passes[speed_class(run)] += n
    jobs = {"evaluate": len(runs), "evaluate_ood": len(conds), "ood_runs": len(ood_runs)}
    return passes, jobs


def measure(device: str, batch: int, batches: int, threads: int) -> tuple[dict[str, float], float]:
    """(img/s per speed class through compute_logits, seconds of one count_flops) on DeiT-S shapes."""
    import timm
    import torch

    import tokred
    from tokred.flops import count_flops
    from tokred.study.device import resolve_device
    from tokred.study.runner import compute_logits

    dev = resolve_device(device, "--device")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    n = batch * batches
    es = {"images": torch.randint(0, 256, (n, 3, 224, 224), generator=torch.Generator().manual_seed(0),
                                  dtype=torch.uint8),
          "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    warm = {**es, "images": es["images"][:batch]}
    t0 = time.perf_counter()
    count_flops(tokred.patch(model, "ours_size_norm", r=13), (3, 224, 224))
    flops_s = time.perf_counter() - t0
    speeds = {}
    for name, method in (("baseline", None), ("tome", "tome"), ("ours", "ours_size_norm")):
        tokred.unpatch(model)
        if method:
            tokred.patch(model, method, r=13)
        compute_logits(model, warm, batch, device=dev, progress=False)  # warm-up (and the move to dev)
        _, model_s = compute_logits(model, es, batch, device=dev, progress=False)
        speeds[name] = n / model_s
        print(f"measured {name:8s} {speeds[name]:9.1f} img/s ({n} images, batch {batch}, {dev}, "
              f"{torch.get_num_threads()} threads)")
        model.to("cpu")
    print(f"measured count_flops (ours r=13, CPU): {flops_s:.2f} s")
    return speeds, flops_s


def hours(s: float) -> str:
    return f"{s / 3600:8.2f} h"


def main() -> None:
    import torch
    import yaml

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "config" / "imagenet.yaml"))
    ap.add_argument("--val-images", type=int, default=50_000, help="ImageNet-1k val size (when data.limit is unset)")
    ap.add_argument("--img-per-s", type=float, nargs=3, metavar=("BASELINE", "TOME", "OURS"),
                    help="take these speeds instead of measuring")
    ap.add_argument("--flops-s", type=float, default=None, help="seconds per FLOPs count (default: measured, or 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=2, help="timed batches per class (after one warm-up batch)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()

    cfg = yaml.safe_load(Path(args.config).read_text())
    passes, jobs = forward_passes(cfg, args.val_images)
    if args.img_per_s:
        speeds, flops_s = dict(zip(("baseline", "tome", "ours"), args.img_per_s)), args.flops_s or 1.0
    else:
        speeds, flops_s = measure(args.device, args.batch, args.batches, args.threads)
        flops_s = args.flops_s or flops_s
    n_flops = 2 * jobs["evaluate"] + jobs["evaluate_ood"] * jobs["ood_runs"]
    print(f"\n{args.config}: {jobs['evaluate']} evaluation jobs, {jobs['evaluate_ood']} OOD jobs x "
          f"{jobs['ood_runs']} runs")
    total = 0.0
    for k, n in passes.items():
        s = n / speeds[k]
        total += s
        print(f"{k:9s} {n:12,d} forward passes at {speeds[k]:9.1f} img/s  {hours(s)}")
    print(f"{'FLOPs':9s} {n_flops:12,d} counts at {flops_s:.2f} s{'':17s}{hours(n_flops * flops_s)}")
    total += n_flops * flops_s
    print(f"{'total':9s} {sum(passes.values()):12,d} forward passes{'':24s}{hours(total)}  (one job at a time)")


if __name__ == "__main__":
    main()
