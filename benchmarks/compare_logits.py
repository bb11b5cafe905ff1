"""Do two results folders of the same profile agree? Largest |logit difference| and top-1 agreement of
every run (runs/*/*/logits.pt and ood/*/*/logits.pt) present in both, e.g. the same config evaluated
with eval.device: cpu and cuda (benchmarks/cuda_check.sh).

    python benchmarks/compare_logits.py results/micro_cpu results/micro_cuda [--atol 1e-3]

Checks first that both folders hold the same weights (else the comparison says nothing about the
device). Exit status 1 when a run differs by more than --atol or a run is missing on one side.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--atol", type=float, default=1e-3)
    args = ap.parse_args()

    def state(folder):
        w = torch.load(folder / "weights" / "model.pt", weights_only=False)
        return w.get("state_dict", w) if isinstance(w, dict) else w.state_dict()

    sa, sb = state(args.a), state(args.b)
    same = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa if torch.is_tensor(sa[k]))
    print(f"weights identical: {same}")
    files = sorted(args.a.glob("runs/*/*/logits.pt")) + sorted(args.a.glob("ood/*/*/logits.pt"))
    bad, worst = int(not same), 0.0
    for f in files:
        rel = f.relative_to(args.a)
        g = args.b / rel
        if not g.exists():
            print(f"{str(rel):60s} missing in {args.b}")
            bad += 1
            continue
        x, y = (torch.load(p, weights_only=False)["logits"] for p in (f, g))
        d = (x.double() - y.double()).abs().max().item()
        worst = max(worst, d)
        agree = (x.argmax(-1) == y.argmax(-1)).double().mean().item()
        bad += d > args.atol
        print(f"{str(rel):60s} max|diff| {d:.2e}  top-1 agree {agree:.4f}")
    print(f"{len(files)} runs, worst max|diff| {worst:.2e}; {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
