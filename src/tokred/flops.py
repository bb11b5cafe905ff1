"""GFLOPs with fvcore, counting what fvcore leaves out by default.

fvcore counts one multiply-add as one flop and traces the model with `torch.jit.trace`. It has no
handle for `scaled_dot_product_attention` (timm's fused attention), so a naive count misses the two
attention matmuls (DeiT-S: 4.25 instead of 4.61 GFLOPs). It also skips the scatter/index-add ops that
apply a merge. Both are added here, so an unpatched model, a patched model at r=0 and a reduced model are
counted on the same footing.
"""
from __future__ import annotations

import warnings
from numbers import Number
from typing import Any

import torch


def _shape(v) -> list[int]:
    return v.type().sizes()


def _sdpa_flop(inputs: list[Any], outputs: list[Any]) -> Number:
    # q [B, H, Nq, d], k [B, H, Nk, d], v [B, H, Nk, dv]: QK^T and AV, one MAC per flop.
    q, k, v = (_shape(inputs[i]) for i in range(3))
    batch = 1
    for s in q[:-2]:
        batch *= s
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _baddbmm_flop(inputs: list[Any], outputs: list[Any]) -> Number:
    # bias + alpha * (b1 @ b2): the matmul's multiply-adds, like fvcore's bmm.
    b, n, m = _shape(inputs[1])
    return b * n * m * _shape(inputs[2])[-1]


def _scatter_flop(inputs: list[Any], outputs: list[Any]) -> Number:
    # scatter_add / scatter_reduce / index_add (source is the fourth input): one accumulation per
    # source element.
    src = _shape(inputs[3])
    n = 1
    for s in src:
        n *= s
    return n


EXTRA_HANDLES = {
    "aten::scaled_dot_product_attention": _sdpa_flop,
    "aten::baddbmm": _baddbmm_flop,
    "aten::scatter_add_": _scatter_flop,
    "aten::scatter_add": _scatter_flop,
    "aten::scatter_reduce_": _scatter_flop,
    "aten::scatter_reduce": _scatter_flop,
    "aten::index_add_": _scatter_flop,
    "aten::index_add": _scatter_flop,
}


def count_flops(model: torch.nn.Module, input_size=(3, 224, 224), *, batch_size: int = 1,
                device: str | torch.device = "cpu", by_module: bool = False):
    """GFLOPs per image of `model` on an input of `input_size` (C, H, W).

    With `by_module=True` also returns fvcore's per-module totals (GFLOPs per image).
    """
    from fvcore.nn import FlopCountAnalysis

    # A fixed input: the merge rules of ours work on the merged slots only, whose number depends on
    # the input, so the count (a few M*C accumulations per block) is reproducible only on one input.
    x = torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(0)).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python ints from shapes
            fca = FlopCountAnalysis(model, x).set_op_handle(**EXTRA_HANDLES)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = fca.total() / batch_size / 1e9
            modules = {k: v / batch_size / 1e9 for k, v in fca.by_module().items()} if by_module else None
    finally:
        model.train(was_training)
    return (total, modules) if by_module else total


def match_keep(model: torch.nn.Module, method, target_gflops: float, *, keep_shape: str = "uniform",
               input_size=(3, 224, 224), tol: float = 0.01, shape_kw: dict | None = None, **method_kw
               ) -> tuple[list[float], float]:
    """Solve the free keep ratio of a keep-shape family so the patched model costs `target_gflops`.

    GFLOPs rise monotonically with the keep ratio. Many ratios give the same integer token counts,
    so costs are cached per resolved schedule. Returns (per-block keep
    ratios, achieved GFLOPs); raises if no ratio comes within `tol` (relative) of the target.
    """
    from .patching import patch, unpatch
    from .schedule import keep_shape_ratios, resolve

    depth = len(model.blocks)
    n_patches = model.patch_embed.num_patches
    cache: dict[tuple, float] = {}

    def keeps(k: float) -> list[float]:
        return keep_shape_ratios(keep_shape, depth, k, **(shape_kw or {}))

    def cost(k: float) -> float:
        key = tuple(resolve(depth, n_patches, keep=keeps(k)))
        if key not in cache:
            patch(model, method, keep=keeps(k), **method_kw)
            cache[key] = count_flops(model, input_size)
        return cache[key]

    try:
        # Regula falsi (Illinois): the cost is close to linear in the keep ratio, so a handful of
        # evaluations (each an fvcore trace) suffice where bisection would need a dozen.
        lo, hi = 0.0, 1.0
        f_lo, f_hi = cost(lo) - target_gflops, cost(hi) - target_gflops
        if f_lo > 0 or f_hi < 0:
            raise ValueError(f"target {target_gflops:.4f} GFLOPs outside the {keep_shape} family's range "
                             f"[{f_lo + target_gflops:.4f}, {f_hi + target_gflops:.4f}]")
        best = lo if -f_lo < f_hi else hi
        side = 0
        for _ in range(40):
            mid = hi - f_hi * (hi - lo) / (f_hi - f_lo) if f_hi != f_lo else (lo + hi) / 2
            f_mid = cost(mid) - target_gflops
            if abs(f_mid) < abs(cost(best) - target_gflops):
                best = mid
            if abs(f_mid) <= tol / 4 * target_gflops or hi - lo < 1e-5:
                break
            if f_mid < 0:
                lo, f_lo = mid, f_mid
                if side == -1:
                    f_hi /= 2
                side = -1
            else:
                hi, f_hi = mid, f_mid
                if side == 1:
                    f_lo /= 2
                side = 1
        achieved = cost(best)
    finally:
        unpatch(model)
    if abs(achieved - target_gflops) > tol * target_gflops:
        raise ValueError(f"{keep_shape} family reaches {achieved:.4f} GFLOPs at best, target {target_gflops:.4f}")
    return keeps(best), achieved
