"""Throughput of ToMe and of ours at matched GFLOPs: same model, batch, threads and attention kernel.

    python benchmarks/throughput.py [--model embedded|deit_small_patch16_224] [--batch 64] [--rounds 5]

Prints img/s (median over all repeats, p10-p90) for: the unpatched model, the patched model at r=0,
ToMe at r, and each ours preset with a uniform keep ratio solved to ToMe's GFLOPs. The variants are
timed in interleaved rounds (each round visits every variant, starting with a different one), so a
drift in the machine's load hits them alike; the ratio to ToMe is the figure to read.
Measured figures, where the time goes and what made it faster: benchmarks/THROUGHPUT.md.
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    import timm

    import tokred
    from tokred.flops import match_keep
    from tokred.models import create_embedded_model
    from tokred.study.timing import hardware_info, summarize, time_fn

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per variant and round")
    ap.add_argument("--r", type=int, default=13)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--methods", nargs="+", default=["hquota_ff", "ours_size_norm"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = create_embedded_model(5) if args.model == "embedded" else timm.create_model(args.model)
    base.eval()
    size = (3, *base.patch_embed.img_size)
    x = torch.randn(args.batch, *size)

    import copy

    variants = {"unpatched (fused attention)": base}
    variants["patched, r=0"] = tokred.patch(copy.deepcopy(base), "tome", r=0)
    tome = tokred.patch(copy.deepcopy(base), "tome", r=args.r)
    variants[f"ToMe r={args.r}"] = tome
    target = tokred.count_flops(tome, size)
    for name in args.methods:
        keeps, _ = match_keep(copy.deepcopy(base), name, target, keep_shape="uniform", input_size=size)
        variants[f"{name} (keep {keeps[0]:.3f}, matched)"] = tokred.patch(copy.deepcopy(base), name, keep=keeps)
    gflops = {k: tokred.count_flops(m, size) for k, m in variants.items()}

    seconds = {k: [] for k in variants}
    names = list(variants)
    with torch.inference_mode():
        for rnd in range(args.rounds):
            for k in names[rnd % len(names):] + names[:rnd % len(names)]:
                seconds[k] += time_fn(lambda: variants[k](x), warmup=1, repeats=args.repeats)["seconds"]
    stats = {k: summarize(v) for k, v in seconds.items()}
    tome_ips = args.batch / stats[f"ToMe r={args.r}"]["median"]
    hw = hardware_info("cpu")
    print(f"model {args.model}, batch {args.batch}, threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"{hw['cpu_model']}, {args.rounds} rounds x {args.repeats} repeats")
    print(f"{'run':42s} {'GFLOPs':>8s} {'img/s':>8s} {'p10-p90':>13s} {'vs ToMe':>8s}")
    for k, s in stats.items():
        ips = args.batch / s["median"]
        band = f"{args.batch / s['p90']:.1f}-{args.batch / s['p10']:.1f}"
        print(f"{k:42s} {gflops[k]:8.3f} {ips:8.1f} {band:>13s} {ips / tome_ips:8.2f}x")


if __name__ == "__main__":
    main()
