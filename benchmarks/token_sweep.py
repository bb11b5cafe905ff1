"""Latency against token count, and the measured effect of rounding kept counts to a tile multiple.

    python benchmarks/token_sweep.py [--model embedded|deit_small_patch16_224] [--min 32] [--max 197]
        [--step 1] [--batch 8] [--threads N] [--repeats 7] [--passes 1] [--rounds 3] [--tiles 8 16]

Part 1 feeds random [batch, N, C] tokens to one block and to the whole transformer (all blocks,
norm, head; patch embedding bypassed) of the unpatched model for every N in min..max (step), and
lists the largest latency steps between neighbouring counts, to see whether latency steps at
64/128-token tile boundaries. Part 2 times the unpatched model, the patched model at r=0 and ToMe
r=R with its kept counts rounded to tile multiples (tokred.schedule.resolve(..., tile=T), passed
to tokred.patch as the explicit r list) next to the unrounded schedule, in images/s; the runs are
interleaved over --rounds rounds (start rotated each round) so load drift hits them alike. Hardware and versions are printed first; --out writes every
row (both parts, hardware columns included) to CSV.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def build(name: str, num_classes: int):
    if name == "embedded":
        from tokred.models import create_embedded_model

        return create_embedded_model(num_classes)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def largest_steps(rows, key="latency_ms", k=5):
    """The k largest latency increases between neighbouring counts: (n_from, n_to, delta_ms)."""
    d = [(a["n_tokens"], b["n_tokens"], b[key] - a[key]) for a, b in zip(rows, rows[1:])]
    return sorted(d, key=lambda t: -t[2])[:k]


def sweep_part(model, args) -> list[dict]:
    """Part 1: token sweep of one block and of the whole model."""
    from tokred.study import timing

    timing_kw = dict(device=args.device, warmup=args.warmup, repeats=args.repeats, amp=args.amp)
    rows_out = []
    counts = list(range(args.min, args.max + 1, args.step))
    sweeps = {scope: timing.token_sweep(model, counts, batch_size=args.batch, scope=scope, passes=args.passes,
                                           shuffle=not args.no_shuffle, **timing_kw)
              for scope in args.scopes}
    cols = "".join(f" {scope + ' ms':>9s} {'[p10':>8s} {'p90]':>8s} {'us/token':>8s}" for scope in sweeps)
    print(f"\n{'N':>5s} {'tile':>5s}{cols}")
    for i, n in enumerate(counts):
        mark = "128" if n % 128 == 0 else "64" if n % 64 == 0 else ""
        line = f"{n:5d} {mark:>5s}"
        for rows in sweeps.values():
            r = rows[i]
            line += (f" {r['latency_ms']:9.3f} {r['latency_ms_p10']:8.3f} {r['latency_ms_p90']:8.3f} "
                     f"{1e3 * r['latency_ms'] / (n * args.batch):8.3f}")
        print(line)
    for scope, rows in sweeps.items():
        steps = ", ".join(f"{a}->{b}: +{d:.3f} ms" for a, b, d in largest_steps(rows))
        print(f"largest steps ({scope}): {steps}")
        rows_out += [{"section": f"sweep_{scope}", **r} for r in rows]
    return rows_out


def tile_part(model, args) -> list[dict]:
    """Part 2: tile rounding of ToMe r, in images/s, runs interleaved round by round."""
    import tokred
    from tokred import schedule
    from tokred.study import timing

    rows_out = []
    depth, num_patches, prot = len(model.blocks), model.patch_embed.num_patches, model.num_prefix_tokens
    size = (3, *model.patch_embed.img_size)
    variants = {"unpatched": None, "patched r=0": [0] * depth}
    for tile in [None, *args.tiles]:
        rs = schedule.resolve(depth, num_patches, args.r, tile=tile, num_prefix_tokens=prot)
        variants[f"ToMe r={args.r} tile={tile}"] = rs
    def apply(rs):
        if rs is None:
            tokred.unpatch(model)
        else:
            tokred.patch(model, "tome", r=rs)

    gflops = {}
    for name, rs in variants.items():
        apply(rs)
        gflops[name] = tokred.count_flops(model, size, device=args.device)
    x = torch.randn(args.batch, *size, generator=torch.Generator().manual_seed(0)).to(args.device)
    samples = {name: [] for name in variants}
    names = list(variants)
    for rnd in range(args.rounds):
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:  # rotate the start each round
            apply(variants[name])
            with torch.inference_mode(), timing.autocast(args.device, args.amp):
                t = timing.time_fn(lambda: model(x), device=args.device, warmup=args.warmup, repeats=args.repeats)
            samples[name] += t["seconds"]
    tokred.unpatch(model)
    print(f"\n{args.rounds} interleaved rounds x {args.repeats} repeats per run")
    print(f"{'run':24s} {'GFLOPs':>7s} {'img/s':>8s} {'[p10':>8s} {'p90]':>8s} {'ms/batch':>9s}  kept tokens after each block")
    for name, rs in variants.items():
        t = timing.summarize(samples[name])
        kept = [c + prot for c in schedule.token_counts(num_patches, rs or [0] * depth)[1:]]
        ips = args.batch / t["median"]
        print(f"{name:24s} {gflops[name]:7.3f} {ips:8.1f} {args.batch / t['p90']:8.1f} {args.batch / t['p10']:8.1f} "
              f"{1e3 * t['median']:9.2f}  {kept if rs and any(rs) else '-'}")
        rows_out.append({"section": "tile", "run": name, "r_list": rs,
                         "gflops": gflops[name], "batch_size": args.batch, "latency_ms": 1e3 * t["median"],
                         **{f"latency_ms_{k}": 1e3 * t[k] for k in timing.STAT_KEYS[1:]}, "img_per_s": ips,
                         "img_per_s_lo": args.batch / t["p90"], "img_per_s_hi": args.batch / t["p10"],
                         "amp": args.amp, "device": args.device, "repeats": len(samples[name])})
    return rows_out


def main() -> None:
    from tokred.study import timing
    from tokred.io import atomic_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--min", type=int, default=32)
    ap.add_argument("--max", type=int, default=197)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    ap.add_argument("--passes", type=int, default=1, help="sweep passes, repeats pooled")
    ap.add_argument("--no-shuffle", action="store_true", help="sweep counts in increasing order")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the tile runs")
    ap.add_argument("--r", type=int, default=13)
    ap.add_argument("--tiles", type=int, nargs="*", default=[8, 16])
    ap.add_argument("--scopes", nargs="+", choices=("block", "model"), default=["block", "model"])
    ap.add_argument("--skip-sweep", action="store_true", help="only the tile-rounding comparison")
    ap.add_argument("--skip-tile", action="store_true", help="only the token sweep")
    ap.add_argument("--out", help="CSV file for all rows")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model, args.num_classes).to(args.device).eval()
    hw = timing.hardware_info(args.device)
    print("hardware: " + ", ".join(f"{k}={v}" for k, v in hw.items() if v is not None and k != "host"))
    print(f"model {args.model}, batch {args.batch}, threads {torch.get_num_threads()}, amp {args.amp}, "
          f"warmup {args.warmup}, repeats {args.repeats} (median [p10, p90]); fused attention "
          f"{getattr(model.blocks[0].attn, 'fused_attn', None)}")
    out_rows = []

    if not args.skip_sweep:
        out_rows += sweep_part(model, args)
    if not args.skip_tile:
        out_rows += tile_part(model, args)

    if args.out:
        extra = {"model": args.model, "threads": torch.get_num_threads(), **{f"hw_{k}": v for k, v in hw.items()}}
        rows = [{**r, **extra} for r in out_rows]
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(args.out) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        print(f"\nwrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
