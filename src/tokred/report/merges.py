"""Which input patches each final token holds (`patch(..., trace_source=True)`), drawn on the image."""
from __future__ import annotations

import numpy as np
import torch


def merge_groups(model, images: torch.Tensor, mean, std, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """Final-token index of every patch, [B, grid_h, grid_w] (int64, on the CPU), for a model patched
    with trace_source.

    `images` are uint8 [B, 3, H, W]; the model's state after the forward holds `source`
    [B, tokens, input tokens] (0/1), the protected tokens first. The model is moved to `device` and
    run there as the evaluation runs it (`tokred.study.device.exact_fp32`, inference mode)."""
    from ..models import normalize
    from ..study.device import exact_fp32, to_device

    st = getattr(model, "_tokred", None)
    if st is None or not st.trace_source:
        raise ValueError("merge_groups needs a model patched with trace_source=True")
    device = torch.device(device)
    model.to(device)
    with exact_fp32(), torch.inference_mode():
        model(normalize(to_device(images, device), mean, std))
    p = st.num_prefix_tokens
    gh, gw = model.patch_embed.grid_size
    if st.source is None:  # nothing merged: every patch is its own token
        return torch.arange(gh * gw).expand(len(images), -1).reshape(-1, gh, gw)
    return st.source[:, :, p:].argmax(1).reshape(-1, gh, gw).cpu()


def group_mean_image(image: np.ndarray, groups: np.ndarray, patch: int) -> np.ndarray:
    """HWC uint8 image where every patch shows the mean colour of its token's patches, with the
    borders between different tokens drawn in white."""
    gh, gw = groups.shape
    cells = image[:gh * patch, :gw * patch].reshape(gh, patch, gw, patch, 3).mean((1, 3))  # [gh, gw, 3]
    out = np.zeros_like(cells)
    for g in np.unique(groups):
        m = groups == g
        out[m] = cells[m].mean(0)
    img = np.repeat(np.repeat(out, patch, 0), patch, 1)
    edge = np.zeros((gh * patch, gw * patch), dtype=bool)
    up = np.repeat(np.repeat(groups, patch, 0), patch, 1)
    edge[1:, :] |= up[1:, :] != up[:-1, :]
    edge[:, 1:] |= up[:, 1:] != up[:, :-1]
    img[edge] = 255
    return img.astype(np.uint8)


def merge_figure(images: torch.Tensor, panels: dict[str, torch.Tensor], patch: int, pdf_path: str, png_path: str,
                 titles: dict[str, str] | None = None) -> None:
    """One row per image: the image, then one panel per method (name -> groups [B, gh, gw])."""
    from .figures import figure_setup, save_figure

    plt, _ = figure_setup()
    n, cols = len(images), 1 + len(panels)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    for i in range(n):
        img = images[i].permute(1, 2, 0).numpy()
        axes[i, 0].imshow(img)
        for j, (name, groups) in enumerate(panels.items(), start=1):
            g = groups[i].numpy()
            axes[i, j].imshow(group_mean_image(img, g, patch))
            if i == 0:
                axes[i, j].set_title((titles or {}).get(name, name), fontsize=7)
            axes[i, j].set_xlabel(f"{len(np.unique(g))} tokens", fontsize=6)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, pdf_path, png_path)


def visualize_merges(cfg: dict, *, weights: str, eval_set_path: str, pdf_path: str, png_path: str) -> None:
    """The figure of the pipeline: the first few eval images under each configured method at r, the
    model run on `eval.device` (RuntimeError naming the key, before any work, when CUDA is missing)."""
    from .. import io
    from ..patching import patch, unpatch
    from ..study.device import eval_device
    from ..study.runner import build_model

    device = eval_device(cfg)
    v = cfg["paper"]["visualize"]
    es = io.load_eval_set(eval_set_path)
    images = es["images"][: v["images"]].clone()
    model = build_model(cfg, weights)
    panels, titles = {}, {}
    for m in v["methods"]:
        patch(model, m, r=v["r"], trace_source=True)
        panels[m] = merge_groups(model, images, es["mean"], es["std"], device=device)
        titles[m] = f"{'ToMe' if m == 'tome' else m} r={v['r']}"
        unpatch(model)
    merge_figure(images, panels, model.patch_embed.patch_size[0], pdf_path, png_path, titles)
