"""The pipeline's evaluation loop against a bare `model(x)` loop over the same preloaded tensors.

    python benchmarks/eval_loop.py [--images 1000] [--batch 100] [--method tome --r 13] [--rounds 3]

`tokred.study.runner.compute_logits` (uint8 cache -> normalise per batch -> model -> float logits, NaN
check, progress bar) is timed against a loop that only calls the model on batches normalised
beforehand. Target: the pipeline loop within 10% of the bare one. Rounds alternate the two.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    import tokred
    from tokred.models import EMBEDDED_MEAN, EMBEDDED_STD, create_embedded_model, normalize
    from tokred.study.runner import compute_logits

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--method", default="tome")
    ap.add_argument("--r", type=int, default=13)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = tokred.patch(create_embedded_model(5).eval(), args.method, r=args.r)
    images = torch.randint(0, 256, (args.images, 3, 112, 112), dtype=torch.uint8)
    es = {"images": images, "labels": torch.zeros(args.images, dtype=torch.long), "mean": EMBEDDED_MEAN,
          "std": EMBEDDED_STD}
    batches = [normalize(images[i:i + args.batch], EMBEDDED_MEAN, EMBEDDED_STD)
               for i in range(0, args.images, args.batch)]

    def bare():
        with torch.no_grad():
            for x in batches:
                model(x)

    def pipeline():
        compute_logits(model, es, args.batch, progress=False)

    times = {"bare model(x) loop": [], "pipeline compute_logits": []}
    bare()  # warm-up
    for _ in range(args.rounds):
        for name, fn in (("bare model(x) loop", bare), ("pipeline compute_logits", pipeline)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    ref = best["bare model(x) loop"]
    print(f"{args.images} images, batch {args.batch}, {args.method} r={args.r}, threads {torch.get_num_threads()}, "
          f"best of {args.rounds}")
    for k, t in best.items():
        print(f"{k:26s} {t:7.2f} s  {args.images / t:7.1f} img/s  {t / ref - 1:+6.1%} vs bare")


if __name__ == "__main__":
    main()
