"""The FLOPs-matching job: solve a method's keep-ratio shape to the GFLOPs of ToMe at some r.

It stays on the CPU whatever `eval.device` says: GFLOPs are a property of the token counts, counted
by tracing one fixed input (tokred.flops.count_flops), the same on every device, and the patched
model's CPU-only fast paths are skipped while tracing anyway; a schedule job without a GPU request
runs on any node instead of queueing for a GPU (rules/evaluate.smk gives it no `gpu` resource)."""
from __future__ import annotations

from .. import io
from .runner import build_model


def solve_schedule(cfg: dict, spec: dict, *, weights: str, out: str, threads: int = 1) -> dict:
    """Solve a keep shape so the patched model costs what ToMe at spec['tome_r'] costs (docs/method.md §3.4);
    written once to `out` (JSON: the per-block keep ratios, `resolved_r` and `kept`, the patch tokens left
    after each block, `num_patches` entering block 0, target and achieved GFLOPs) and read by every run
    that uses it. Raises ValueError when the shape cannot come within 1% of the target."""
    from ..flops import count_flops, match_keep
    from ..patching import patch, unpatch

    io.set_threads(threads)
    model = build_model(cfg, weights)
    input_size = (3, *model.patch_embed.img_size)
    target = count_flops(patch(model, "tome", r=spec["tome_r"]), input_size)
    unpatch(model)
    keeps, achieved = match_keep(model, spec["method"], target, keep_shape=spec["keep_shape"], input_size=input_size,
                                 shape_kw=spec.get("shape_kw"))
    from ..schedule import resolve, token_counts

    # The kept counts the ratios give on this model (docs/method.md §3.4): every run using the schedule,
    # whatever its selector, removes exactly these tokens per block.
    n = model.patch_embed.num_patches
    rs = resolve(len(model.blocks), n, keep=keeps)
    result = {"method": spec["method"], "keep_shape": spec["keep_shape"], "shape_kw": spec.get("shape_kw") or {},
              "keep": keeps, "num_patches": n, "resolved_r": rs, "kept": token_counts(n, rs)[1:],
              "target_gflops": target, "achieved_gflops": achieved,
              "matched_to": f"tome_r{spec['tome_r']}", "provenance": io.provenance(cfg)}
    print(f"{spec['method']} {spec['keep_shape']}: keep {keeps[0]:.4f}.. -> {achieved:.4f} GFLOPs "
          f"(target {target:.4f}, {100 * (achieved / target - 1):+.2f}%)")
    io.write_json(out, result)
    return result
