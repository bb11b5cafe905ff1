"""Head-free fidelity: how close a reduced model's features stay to the unreduced model's on the same images.

For backbones without a classifier (e.g. the DINOv2 ViT-S of `tokred.data.real`) top-1, KL and margin
do not exist; these metrics compare features instead: the final CLS feature, the per-block linear CKA
and angle of the CLS features, and the nearest-neighbour structure of the image set. B is the unreduced model,
M the reduced one; feature matrices are [N images, C channels] float tensors, and every metric is
computed in float64 and returned as a Python float.

The CLS token (index 0) is protected by every method (never merged, never absorbs), so its feature
exists at every block of both models and is compared position for position.
"""
from __future__ import annotations

import math
import time

import torch


def _pair(base: torch.Tensor, red: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if base.ndim != 2 or base.shape != red.shape:
        raise ValueError(f"{what}: expected two [N, C] feature matrices of one shape, got "
                         f"{list(base.shape)} and {list(red.shape)}")
    if base.shape[0] == 0:
        raise ValueError(f"{what}: no images")
    base, red = base.double(), red.double()
    if not (torch.isfinite(base).all() and torch.isfinite(red).all()):
        raise FloatingPointError(f"{what}: non-finite features")
    return base, red


def _angles(base: torch.Tensor, red: torch.Tensor) -> torch.Tensor:
    """Per-row angle in radians, 2 atan2(|u - v|, |u + v|) of the unit vectors: accurate near 0 and pi,
    where arccos of a rounded cosine is not (W. Kahan, "How Futile are Mindless Assessments of Roundoff
    in Floating-Point Computation?", 2006, on mangled angles)."""
    u = torch.nn.functional.normalize(base, dim=1)
    v = torch.nn.functional.normalize(red, dim=1)
    return 2 * torch.atan2((u - v).norm(dim=1), (u + v).norm(dim=1))


def cls_cosine(base: torch.Tensor, red: torch.Tensor) -> float:
    """Mean over images of the cosine similarity of B's and M's features [N, C] (1 = same direction)."""
    base, red = _pair(base, red, "cls_cosine")
    return torch.nn.functional.cosine_similarity(base, red, dim=1).mean().item()


def cls_angle(base: torch.Tensor, red: torch.Tensor) -> float:
    """Mean over images of the angle between B's and M's features [N, C], in degrees: arccos of the
    per-image cosine, computed in the numerically stable atan2 form (`_angles`)."""
    base, red = _pair(base, red, "cls_angle")
    return math.degrees(_angles(base, red).mean().item())


def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same N images, X [N, C1] and Y [N, C2] (Kornblith et al.,
    "Similarity of Neural Network Representations Revisited", ICML 2019: CKA with a linear kernel).

    Columns are centred over the images, then ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), in [0, 1].
    Invariant to orthogonal transforms and isotropic scaling of either side (not to arbitrary linear
    maps); 1 for X vs X. Raises ValueError when N differs or a side is constant over the images
    (zero after centring: CKA is undefined).
    """
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"linear_cka: expected [N, C1] and [N, C2] with the same N, got {list(X.shape)} "
                         f"and {list(Y.shape)}")
    X0, Y0 = X.double(), Y.double()
    X, Y = X0 - X0.mean(0, keepdim=True), Y0 - Y0.mean(0, keepdim=True)
    for name, c, raw in (("X", X, X0), ("Y", Y, Y0)):
        # relative test: centring a constant column leaves rounding residue, not exact zeros
        if not torch.isfinite(c).all() or c.norm() <= 1e-12 * max(1.0, raw.norm().item()):
            raise ValueError(f"linear_cka: {name} is constant over the images or non-finite: CKA is undefined")
    # The N x N Gram form when channels outnumber images: the same value, smaller products.
    if X.shape[1] + Y.shape[1] > 2 * X.shape[0]:
        Kx, Ky = X @ X.T, Y @ Y.T
        num, dx, dy = (Kx * Ky).sum(), Kx.norm(), Ky.norm()
    else:
        num, dx, dy = (Y.T @ X).square().sum(), (X.T @ X).norm(), (Y.T @ Y).norm()
    return (num / (dx * dy)).item()


def block_cka(base_blocks: torch.Tensor, red_blocks: torch.Tensor) -> list[float]:
    """`linear_cka` per block of CLS features [L, N, C] of B and M: L floats."""
    return [linear_cka(b, m) for b, m in zip(base_blocks, red_blocks, strict=True)]


def block_angle(base_blocks: torch.Tensor, red_blocks: torch.Tensor) -> list[float]:
    """`cls_angle` per block of CLS features [L, N, C] of B and M: L mean angles in degrees."""
    return [cls_angle(b, m) for b, m in zip(base_blocks, red_blocks, strict=True)]


def _neighbours(feat: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [N, k] of each image's k most cosine-similar other images; ties go to the lower index."""
    import numpy as np

    f = torch.nn.functional.normalize(feat.double(), dim=1)
    sim = (f @ f.T).numpy()
    np.fill_diagonal(sim, -np.inf)  # an image is not its own neighbour
    return torch.from_numpy(np.argsort(-sim, axis=1, kind="stable")[:, :k].copy())


def knn_agreement(feat_base: torch.Tensor, feat_red: torch.Tensor, k: int) -> float:
    """Mean overlap of the k-nearest-neighbour sets of B's and M's features [N, C] over the image set.

    For image i, N_B(i) is the set of the k other images whose B features have the highest cosine
    similarity to B's feature of i (ties broken by the lower image index), N_M(i) the same with M's
    features. Returns mean_i |N_B(i) & N_M(i)| / k in [0, 1]: 1 when reduction leaves every image's
    neighbourhood unchanged; with k=1, the fraction of images whose nearest neighbour is the same.
    Raises ValueError unless 1 <= k <= N - 1.
    """
    feat_base, feat_red = _pair(feat_base, feat_red, "knn_agreement")
    n = feat_base.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"knn_agreement: k={k} needs 1 <= k <= N - 1 = {n - 1}")
    nb, nm = _neighbours(feat_base, k), _neighbours(feat_red, k)
    hits = (nb[:, :, None] == nm[:, None, :]).any(-1).sum(1)
    return (hits.double() / k).mean().item()


def retrieval_top1(feat_base: torch.Tensor, feat_red: torch.Tensor) -> float:
    """Fraction of images i whose M feature has B's feature of i as its most cosine-similar B feature
    among all N images (ties to the lower index): can B's feature index find M's version of each image."""
    feat_base, feat_red = _pair(feat_base, feat_red, "retrieval_top1")
    sim = torch.nn.functional.normalize(feat_red, dim=1) @ torch.nn.functional.normalize(feat_base, dim=1).T
    best = sim.argmax(dim=1)  # torch returns the first maximal index
    return (best == torch.arange(len(best))).double().mean().item()


@torch.no_grad()
def collect_features(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 32) -> dict:
    """Run a timm ViT over `images` [N, 3, H, W] and keep its CLS features.

    Returns {"cls": [N, C] final CLS feature (`forward_features`, after the final norm),
    "blocks": [L, N, C] CLS (token 0) at the output of each of `model.blocks` (forward hooks),
    "tokens": [L] tokens leaving each block (CLS included; after its reduction for a patched model),
    "seconds": wall time of the forward passes}. float32 tensors on the CPU.
    Raises ValueError for a model without a class token (token 0 would be a mergeable patch).
    """
    if getattr(model, "cls_token", None) is None:
        raise ValueError(f"collect_features needs a class token at index 0; {type(model).__name__} has none")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"collect_features: images must be [N, 3, H, W] with N >= 1, got {list(images.shape)}")
    blocks = list(model.blocks)
    per_block: list[list[torch.Tensor]] = [[] for _ in blocks]
    tokens: list[int | None] = [None] * len(blocks)

    def hook(i):
        def fn(_module, _inputs, out):
            per_block[i].append(out[:, 0].float().cpu())
            tokens[i] = int(out.shape[1])
        return fn

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    was_training = model.training
    model.eval()
    final = []
    seconds = 0.0
    try:
        for i in range(0, images.shape[0], batch_size):
            t0 = time.perf_counter()
            out = model.forward_features(images[i:i + batch_size])
            seconds += time.perf_counter() - t0
            final.append(out[:, 0].float().cpu())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {"cls": torch.cat(final), "blocks": torch.stack([torch.cat(b) for b in per_block]), "tokens": tokens,
            "seconds": seconds}


def fidelity_summary(base: dict, red: dict, ks=(1, 5, 10), *, gflops: float | None = None,
                     base_gflops: float | None = None) -> dict:
    """Every head-free metric of M (`red`) against B (`base`), both from `collect_features` on the same images.

    Keys: n_images; cls_cosine, cls_angle_deg, cls_cka (final CLS features); block_cka and
    block_angle_deg (lists over blocks, CLS at each block's output); knn_overlap {k: `knn_agreement`}
    for each k < N in `ks`; retrieval_top1; tokens and base_tokens (per block); seconds and
    base_seconds (forward wall time); gflops, base_gflops and rel_cost (= gflops / base_gflops) when
    given. JSON-able (floats, ints, lists, dicts with str keys).
    """
    if base["cls"].shape != red["cls"].shape:
        raise ValueError(f"fidelity_summary: base and reduced features differ in shape "
                         f"({list(base['cls'].shape)} vs {list(red['cls'].shape)}): not the same images?")
    n = base["cls"].shape[0]
    out = {
        "n_images": int(n),
        "cls_cosine": cls_cosine(base["cls"], red["cls"]),
        "cls_angle_deg": cls_angle(base["cls"], red["cls"]),
        "cls_cka": linear_cka(base["cls"], red["cls"]),
        "block_cka": block_cka(base["blocks"], red["blocks"]),
        "block_angle_deg": block_angle(base["blocks"], red["blocks"]),
        "knn_overlap": {str(k): knn_agreement(base["cls"], red["cls"], k) for k in ks if k < n},
        "retrieval_top1": retrieval_top1(base["cls"], red["cls"]),
        "tokens": list(red["tokens"]),
        "base_tokens": list(base["tokens"]),
    }
    if "seconds" in red and "seconds" in base:  # absent for features recorded by `record_cls`
        out["seconds"], out["base_seconds"] = float(red["seconds"]), float(base["seconds"])
    if gflops is not None:
        out["gflops"] = float(gflops)
    if base_gflops is not None:
        out["base_gflops"] = float(base_gflops)
        if gflops is not None:
            out["rel_cost"] = float(gflops) / float(base_gflops)
    return out


# --- fidelity in the evaluation job ---------------------------------------------------------------

# The baseline's features are stored in half precision; the evaluated run's are rounded the same way
# before comparing, so an identical model gives exactly cos 1, angle 0, CKA 1 and kNN overlap 1 (the
# rounding moves a feature by ~5e-4 relative, far below the differences the metrics report).
FEATURE_DTYPE = torch.float16
KNN_KS = (1, 5, 10)


def fidelity_subset(n: int, cap: int) -> list[int]:
    """Indices of the images the fidelity metrics use: all `n` when n <= cap, else `cap` evenly spaced
    ones (`round(linspace(0, n - 1, cap))`, like `data.limit`), so a class-sorted set keeps its spread."""
    import numpy as np

    if cap < 2:
        raise ValueError(f"fidelity_subset: cap={cap}, expected >= 2 (CKA and neighbours need two images)")
    if n <= cap:
        return list(range(n))
    return sorted(set(np.round(np.linspace(0, n - 1, cap)).astype(int).tolist()))


class CLSRecorder:
    """Records, while a timm ViT runs over a set in batches, the CLS token (index 0) after every block
    and after the final norm, for the images at `indices` (positions in the order the batches arrive),
    and the number of tokens leaving each block.

    Use as a context manager around the loop that calls `model(x)` (forward hooks: a pre-hook on the
    model counts the images, hooks on `model.blocks` and `model.norm` keep the rows). The CLS after
    `model.norm` is `forward_features(x)[:, 0]`, the final CLS feature. `features()` returns
    {"cls": [n, C], "blocks": [L, n, C] (FEATURE_DTYPE, CPU), "tokens": [L] ints} with n = len(indices)
    seen so far. Raises ValueError for a model without a class token.
    """

    def __init__(self, model: torch.nn.Module, indices):
        if getattr(model, "cls_token", None) is None:
            raise ValueError(f"CLSRecorder needs a class token at index 0; {type(model).__name__} has none")
        self.model, self.indices = model, torch.as_tensor(sorted(indices), dtype=torch.long)
        self.blocks = list(model.blocks)
        self._rows: list[list[torch.Tensor]] = [[] for _ in range(len(self.blocks) + 1)]
        self.tokens: list[int | None] = [None] * len(self.blocks)
        self._seen, self._sel, self._handles = 0, None, []

    def _pre(self, _module, args):
        b = args[0].shape[0]
        idx = self.indices[(self.indices >= self._seen) & (self.indices < self._seen + b)] - self._seen
        self._sel, self._seen = idx, self._seen + b

    def _hook(self, i):
        def fn(_module, _inputs, out):
            if i < len(self.blocks):
                self.tokens[i] = int(out.shape[1])
            if self._sel is not None and len(self._sel):
                self._rows[i].append(out[self._sel.to(out.device), 0].to("cpu", FEATURE_DTYPE))
        return fn

    def __enter__(self):
        self._handles = [self.model.register_forward_pre_hook(self._pre)]
        self._handles += [b.register_forward_hook(self._hook(i)) for i, b in enumerate(self.blocks)]
        self._handles.append(self.model.norm.register_forward_hook(self._hook(len(self.blocks))))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        return False

    def features(self) -> dict:
        cat = [torch.cat(r) if r else torch.empty(0, self.model.num_features, dtype=FEATURE_DTYPE) for r in self._rows]
        return {"cls": cat[-1], "blocks": torch.stack(cat[:-1]), "tokens": list(self.tokens)}


def run_fidelity(base: dict, red: dict, ks=KNN_KS) -> dict:
    """`fidelity_summary` of a run's recorded features (`CLSRecorder.features`) against the baseline's
    on the same images, both rounded to FEATURE_DTYPE first. Raises ValueError when they cover
    different numbers of images or fewer than two."""
    n = base["cls"].shape[0]
    if n < 2 or red["cls"].shape[0] != n:
        raise ValueError(f"run_fidelity: baseline features of {n} images, run features of "
                         f"{red['cls'].shape[0]}: expected the same images, at least two")

    def rounded(f):
        return {"cls": f["cls"].to(FEATURE_DTYPE).float(), "blocks": f["blocks"].to(FEATURE_DTYPE).float(),
                "tokens": f["tokens"]}

    return fidelity_summary(rounded(base), rounded(red), ks)
