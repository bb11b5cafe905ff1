"""Record the official ToMe patch's logits on small seeded timm ViTs (tests/data/tome_reference.pt).

The official code is not a dependency and is never committed; this script runs it from a local
checkout (`--tome-path`, e.g. a clone of facebookresearch/ToMe) so that CI can compare `tokred.patch`
against recorded official outputs. `--check` also compares the two live on full-size DeiT-S models.

    python tests/make_tome_reference.py --tome-path /path/to/ToMe [--check]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

OUT = Path(__file__).parent / "data" / "tome_reference.pt"
# Depth 6 so inflected schedules differ per block; 112 px / patch 8 gives DeiT-S's 196 patches.
MODEL_KW = dict(img_size=112, patch_size=8, embed_dim=24, depth=6, num_heads=3, num_classes=10)
SCHEDULES = [0, 13, (13, -0.5), (20, 1.0), [40, 0, 30, 25, 12, 5]]


def build_models():
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    plain = VisionTransformer(**MODEL_KW).eval()
    distilled = VisionTransformerDistilled(**MODEL_KW).eval()
    return {"plain": plain, "distilled": distilled}


def make_inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 112, 112, generator=g).half()  # stored small; cast to fp32 for use


def live_check(tome) -> None:
    import copy

    import timm

    import tokred

    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    for arch in ("deit_small_patch16_224", "deit_small_distilled_patch16_224"):
        model = timm.create_model(arch).eval()
        for r in (13, (13, -0.5), [20, 0, 16, 10, 30]):
            a, b = copy.deepcopy(model), copy.deepcopy(model)
            tome.patch.timm(a)
            a.r = r
            tokred.patch(b, r=r)
            with torch.no_grad():
                err = (a(x) - b(x)).abs().max().item()
            print(f"{arch} r={r}: max |official - tokred| = {err:.2e}")
            assert err <= 1e-5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tome-path", required=True, help="checkout of facebookresearch/ToMe")
    ap.add_argument("--check", action="store_true", help="also compare live on DeiT-S (plain, distilled)")
    args = ap.parse_args()
    sys.path.insert(0, args.tome_path)
    import copy

    import tome

    if args.check:
        live_check(tome)

    x = make_inputs()
    record = {"inputs": x, "schedules": SCHEDULES, "models": {}, "logits": {}}
    for name, model in build_models().items():
        record["models"][name] = {k: v.clone() for k, v in model.state_dict().items()}
        for i, r in enumerate(SCHEDULES):
            m = copy.deepcopy(model)
            tome.patch.timm(m)
            m.r = list(r) if isinstance(r, list) else r
            with torch.no_grad():
                out = m(x.float())
            record["logits"][(name, i)] = out[0] if isinstance(out, tuple) else out
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
