"""Throughput of ToMe and of ours at matched GFLOPs: same model, batch, threads and attention kernel.

    python benchmarks/throughput.py [--model embedded|deit_small_patch16_224] [--batch 64] [--repeats 7]

Prints img/s (median of repeats after warm-up) for: the unpatched model, the patched model at r=0,
ToMe at r, and each ours preset with a uniform keep ratio solved to ToMe's GFLOPs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def images_per_second(model, x, repeats: int, warmup: int = 2) -> tuple[float, float]:
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    ips = [len(x) / t for t in times]
    return statistics.median(ips), (max(ips) - min(ips)) / 2


def main() -> None:
    import timm

    import tokred
    from tokred.flops import match_keep
    from tokred.models import create_embedded_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--r", type=int, default=13)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--methods", nargs="+", default=["hquota_ff", "ours_size_norm"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_embedded_model(5) if args.model == "embedded" else timm.create_model(args.model)
    model.eval()
    size = (3, *model.patch_embed.img_size)
    x = torch.randn(args.batch, *size)

    rows = [("unpatched (fused attention)", tokred.count_flops(model, size), *images_per_second(model, x, args.repeats))]
    tokred.patch(model, "tome", r=0)
    rows.append(("patched, r=0", tokred.count_flops(model, size), *images_per_second(model, x, args.repeats)))
    tokred.patch(model, "tome", r=args.r)
    target = tokred.count_flops(model, size)
    tome_ips, tome_spread = images_per_second(model, x, args.repeats)
    rows.append((f"ToMe r={args.r}", target, tome_ips, tome_spread))
    tokred.unpatch(model)
    for name in args.methods:
        keeps, achieved = match_keep(model, name, target, profile="uniform", input_size=size)
        tokred.patch(model, name, keep=keeps)
        rows.append((f"{name} (keep {keeps[0]:.3f}, matched)", achieved, *images_per_second(model, x, args.repeats)))
        tokred.unpatch(model)

    print(f"model {args.model}, batch {args.batch}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'run':42s} {'GFLOPs':>8s} {'img/s':>9s} {'+-':>7s} {'vs ToMe':>8s}")
    for name, gf, ips, spread in rows:
        print(f"{name:42s} {gf:8.3f} {ips:9.1f} {spread:7.1f} {ips / tome_ips:8.2f}x")


if __name__ == "__main__":
    main()
