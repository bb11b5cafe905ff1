"""Training loop for the embedded model (the embedded profile's weights rule trains, not downloads).

Every step draws a fresh batch from the synthetic generator's *training* stream (indices
``step * batch_size ...``), so training never sees a held-out image and never repeats one.
Optimiser: AdamW, linear warm-up then cosine decay to zero, gradient-norm clipping.

Curriculum (optional dict): a share of every batch is drawn from an *easy* variant of the task
(large disks on a smooth background by default, ``synthetic.EASY_OVERRIDES``), the share decaying
linearly from ``easy_start`` to ``easy_end`` over the first ``decay_frac`` of the steps, e.g.
``{"easy_start": 1.0, "easy_end": 0.0, "decay_frac": 0.4}``; ``"easy": {...}`` overrides the easy
variant's task keys. Small-object tasks stay at chance without it (benchmarks/CALIBRATION.md).

Low-resolution first phase (optional, ``train.low_res``): most steps at a smaller image size with the
same patch size (fewer tokens: at 56 px a step costs ~1/4 of one at 112 px), then the patch
position embeddings are resized to the full grid and training continues at the task's size, as in
FixRes (Touvron et al., 2019) and DeiT III (Touvron et al., 2022), which pre-train at lower resolution
and fine-tune at the test resolution. The curriculum, when set, applies to the first phase.

On CPU the result is deterministic for a seed (same batches, same initial RNG state).
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from . import synthetic
from .. import io
from ..models import EMBEDDED_DEFAULTS, EMBEDDED_MEAN, EMBEDDED_STD, create_embedded_model, normalize

CURRICULUM_KEYS = {"easy_start", "easy_end", "decay_frac", "easy"}


def resolve_curriculum(curriculum: dict | None, task: dict) -> dict | None:
    """Validate a curriculum dict; returns it with defaults and the resolved easy task, or None."""
    if not curriculum:
        return None
    unknown = sorted(set(curriculum) - CURRICULUM_KEYS)
    if unknown:
        raise ValueError(f"unknown curriculum key(s) {unknown}; known: {sorted(CURRICULUM_KEYS)}")
    c = {"easy_start": 1.0, "easy_end": 0.0, "decay_frac": 0.4, **curriculum}
    for k in ("easy_start", "easy_end", "decay_frac"):
        v = c[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"curriculum key {k!r} must be a number in [0, 1], got {v!r}")
    easy = c.get("easy")
    if easy is not None and not isinstance(easy, dict):
        raise ValueError(f"curriculum key 'easy' must be a dict of task overrides, got {easy!r}")
    c["easy_task"] = synthetic.easy_task(task, easy)
    return c


def easy_share(curriculum: dict | None, step: int, steps: int) -> float:
    if not curriculum:
        return 0.0
    n = curriculum["decay_frac"] * steps
    frac = 1.0 if n <= 0 else min(step / n, 1.0)
    return curriculum["easy_start"] + (curriculum["easy_end"] - curriculum["easy_start"]) * frac


def lr_factor(step: int, steps: int, warmup_frac: float) -> float:
    """Linear warm-up over warmup_frac of the steps, then cosine decay to 0 at the last step."""
    warm = int(round(warmup_frac * steps))
    if step < warm:
        return (step + 1) / warm
    rest = max(steps - warm, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / rest))


def make_batch(task: dict, curriculum: dict | None, step: int, steps: int, batch_size: int, seed: int,
               index_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The batch of a step: n_easy easy images then hard ones, global indices
    index_offset + step*batch_size + j."""
    n_easy = int(round(easy_share(curriculum, step, steps) * batch_size))
    start = index_offset + step * batch_size
    parts_x, parts_y = [], []
    if n_easy:
        x, y = synthetic.make_images(curriculum["easy_task"], n_easy, seed, start, stream="train")
        parts_x.append(x)
        parts_y.append(y)
    if batch_size - n_easy:
        x, y = synthetic.make_images(task, batch_size - n_easy, seed, start + n_easy, stream="train")
        parts_x.append(x)
        parts_y.append(y)
    return torch.cat(parts_x), torch.cat(parts_y), n_easy


def train_model(model: torch.nn.Module, task: dict, *, steps: int, batch_size: int, lr: float,
                weight_decay: float, warmup_frac: float, grad_clip: float, seed: int,
                curriculum: dict | None = None, progress: bool = True, log: Callable = print,
                log_every: int = 25, index_offset: int = 0) -> dict:
    """Train `model` in place on fresh synthetic batches; returns the training history.

    Step s draws the training-stream images index_offset + s*batch_size ... (a later phase passes the
    number of images drawn before it, so no image repeats across phases)."""
    task = synthetic.resolve_task(task)
    for name, v, lo in (("steps", steps, 1), ("batch_size", batch_size, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not 0.0 <= warmup_frac < 1.0:
        raise ValueError(f"warmup_frac must be in [0, 1), got {warmup_frac!r}")
    cur = resolve_curriculum(curriculum, task)
    n_cls = synthetic.num_classes(task)

    device = next(model.parameters()).device
    torch.manual_seed(seed)
    model.train()
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or n.endswith((".bias", "pos_embed", "cls_token")) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup_frac))

    hist = {"step": [], "loss": [], "train_acc": [], "lr": [], "easy_share": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"train {task['img_size']} px", unit="step", dynamic_ncols=True)
    t0 = time.perf_counter()
    gen_s = 0.0
    run_loss, run_correct, run_n, run_steps = 0.0, 0, 0, 0
    for step in range(steps):
        tg = time.perf_counter()
        images, labels, n_easy = make_batch(task, cur, step, steps, batch_size, seed, index_offset)
        gen_s += time.perf_counter() - tg
        x = normalize(images.to(device), EMBEDDED_MEAN, EMBEDDED_STD)
        y = labels.to(device)
        logits = model(x)
        if logits.shape[-1] != n_cls:
            raise ValueError(f"model has {logits.shape[-1]} outputs but the task has {n_cls} classes")
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip and grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise FloatingPointError(f"non-finite training loss at step {step}: {lv}")
        run_loss += lv
        run_correct += int((logits.detach().argmax(-1) == y).sum())
        run_n += len(y)
        run_steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{lv:.3f}", easy=n_easy)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            hist["step"].append(step + 1)
            hist["loss"].append(run_loss / run_steps)
            hist["train_acc"].append(run_correct / run_n)
            hist["lr"].append(opt.param_groups[0]["lr"])
            hist["easy_share"].append(n_easy / batch_size)
            if log is not None and not progress:
                log(f"step {step + 1}/{steps} loss {run_loss / run_steps:.4f} "
                    f"acc {run_correct / run_n:.3f} easy {n_easy}/{batch_size}")
            run_loss, run_correct, run_n, run_steps = 0.0, 0, 0, 0
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    hist.update(seconds=seconds, steps=steps, batch_size=batch_size, steps_per_s=steps / seconds,
                data_seconds=gen_s, num_threads=torch.get_num_threads(), final_loss=hist["loss"][-1])
    if log is not None:
        log(f"trained {steps} steps x {batch_size} in {seconds:.1f} s ({steps / seconds:.2f} steps/s, "
            f"data {gen_s:.1f} s), final loss {hist['loss'][-1]:.4f}")
    return hist


def resize_pos_embed(model: torch.nn.Module, state: dict, grid: int) -> dict:
    """`state` with its patch position embeddings resized (bicubic, timm's `resample_abs_pos_embed`) to
    a grid x grid patch grid; the prefix (CLS) embeddings are kept as they are."""
    from timm.layers import resample_abs_pos_embed

    state = dict(state)
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=(grid, grid),
                                                num_prefix_tokens=model.num_prefix_tokens)
    return state


def train_embedded(cfg: dict, out: str) -> dict:
    """The training job of the embedded profile: train on the config's task (first
    train.low_res.steps at train.low_res.img_size and train.low_res.lr when set, then train.steps at the
    task's size and train.lr), save the checkpoint {"state_dict", "model", "num_classes", "task",
    "history", "provenance"} atomically at `out`. The history is the last phase's, with the earlier
    phase under "low_res"."""
    arch = {k: cfg["model"][k] for k in EMBEDDED_DEFAULTS if k in cfg["model"]}
    task = synthetic.resolve_task(cfg["task"])
    arch["img_size"] = task["img_size"]
    n_cls = synthetic.num_classes(task)
    t = cfg["train"]
    low = t.get("low_res")
    kw = dict(batch_size=t["batch_size"], lr=t["lr"], weight_decay=t["weight_decay"],
              warmup_frac=t["warmup_frac"], grad_clip=t["grad_clip"], seed=cfg["seed"])
    torch.manual_seed(cfg["seed"])
    low_hist, offset, curriculum = None, 0, t.get("curriculum")
    if low:
        model = create_embedded_model(n_cls, **{**arch, "img_size": low["img_size"]})
        low_task = synthetic.resolve_task({**task, "img_size": low["img_size"]})
        low_hist = train_model(model, low_task, steps=low["steps"], curriculum=curriculum,
                               **{**kw, "lr": low.get("lr", t["lr"])})
        grid = task["img_size"] // arch.get("patch_size", EMBEDDED_DEFAULTS["patch_size"])
        state = resize_pos_embed(model, model.state_dict(), grid)
        model = create_embedded_model(n_cls, **arch)
        model.load_state_dict(state)
        offset, curriculum = low["steps"] * t["batch_size"], None
    else:
        model = create_embedded_model(n_cls, **arch)
    hist = train_model(model, task, steps=t["steps"], curriculum=curriculum, index_offset=offset, **kw)
    if low_hist is not None:
        hist["low_res"] = {"img_size": low["img_size"], **low_hist}
    io.save_torch(out, {"state_dict": model.state_dict(), "model": arch, "num_classes": n_cls,
                        "task": task, "history": hist, "provenance": io.provenance(cfg)})
    return hist
