"""Calibrate the embedded synthetic task: train, then measure how much ToMe costs on held-out images.

    python benchmarks/calibrate.py --name base --steps 1000 --batch-size 32 \
        --curriculum '{"easy_start": 1.0, "easy_end": 0.0, "decay_frac": 0.4}' --n-eval 3000

Prints held-out top-1 of the baseline and of ToMe at each r, the paired drop (baseline minus ToMe,
per-image correctness difference) with its standard error, KL(base || ToMe), agreement, and the
per-class accuracy. The checkpoint goes to --out-dir (default /tmp/calib, never the repo); with
--reuse an existing checkpoint of the same name is evaluated instead of retrained.

ToMe comes from `tokred.patch(model, method="tome", r=r)` when the package provides it, otherwise
from the official source given by --tome-path (`tome.patch.timm(model); model.r = r`, proportional
attention on). --impl forces one of them.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import tokred  # noqa: E402
from tokred.data import synthetic  # noqa: E402
from tokred.models import EMBEDDED_MEAN, EMBEDDED_STD, create_embedded_model, normalize  # noqa: E402
from tokred.data.train import train_model  # noqa: E402


def tome_factory(impl: str, tome_path: str | None):
    if impl == "auto":
        impl = "tokred" if hasattr(tokred, "patch") else "official"
    if impl == "tokred":
        def apply(model, r):
            m = copy.deepcopy(model)
            tokred.patch(m, method="tome", r=r)
            return m.eval()
    else:
        if not tome_path:
            raise SystemExit("--tome-path is needed for the official ToMe implementation")
        sys.path.insert(0, tome_path)
        import tome  # type: ignore

        def apply(model, r):
            m = copy.deepcopy(model)
            tome.patch.timm(m)  # prop_attn=True by default
            m.r = r
            return m.eval()
    return impl, apply


@torch.no_grad()
def logits_of(model, images, batch=250):
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        out.append(model(normalize(images[i:i + batch], EMBEDDED_MEAN, EMBEDDED_STD)).float())
    return torch.cat(out)


def compare(base_logits, logits, labels) -> dict:
    cb = (base_logits.argmax(-1) == labels).double()
    cm = (logits.argmax(-1) == labels).double()
    d = cb - cm
    n = len(d)
    lp_b = base_logits.log_softmax(-1)
    lp_m = logits.log_softmax(-1)
    kl = (lp_b.exp() * (lp_b - lp_m)).sum(-1).mean().item()
    return {"top1": 100 * cm.mean().item(), "drop": 100 * d.mean().item(),
            "se": 100 * d.std(unbiased=True).item() / math.sqrt(n), "kl": kl,
            "agree": 100 * (base_logits.argmax(-1) == logits.argmax(-1)).double().mean().item(),
            "per_class": [100 * cm[labels == c].mean().item() for c in range(int(labels.max()) + 1)],
            "pred_hist": torch.bincount(logits.argmax(-1), minlength=int(labels.max()) + 1).tolist()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--task", default="{}", help="JSON task overrides (synthetic.TASK_DEFAULTS)")
    p.add_argument("--curriculum", default='{"easy_start": 1.0, "easy_end": 0.0, "decay_frac": 0.4}',
                   help="JSON curriculum dict, or 'null'")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-frac", type=float, default=0.08)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="training seed (model init and batches)")
    p.add_argument("--eval-seed", type=int, default=1, help="seed of the held-out set")
    p.add_argument("--n-eval", type=int, default=3000)
    p.add_argument("--model", default="{}", help="JSON overrides of the embedded model, e.g. "
                   '\'{"global_pool": "avg"}\' (tokred.models.create_embedded_model)')
    p.add_argument("--checks", default="L1:tome:13,L2:tome:13,L0-2:tome:13,L0-2:ours_size_norm:13,"
                   "all:ours_size_norm:13,matched:ours_size_norm:13", help="extra runs LAYERS:METHOD:R, compared with "
                   "the baseline; LAYERS 'matched': the method with uniform keep solved to ToMe r=R's GFLOPs")
    p.add_argument("--rs", default="0,4,9,13,16")
    p.add_argument("--out-dir", default="/tmp/calib")
    p.add_argument("--reuse", action="store_true", help="evaluate an existing checkpoint of this name")
    p.add_argument("--impl", choices=["auto", "tokred", "official"], default="auto")
    p.add_argument("--tome-path", default=None, help="checkout of facebookresearch/ToMe")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    task = synthetic.resolve_task(json.loads(a.task))
    curriculum = json.loads(a.curriculum)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"{a.name}.pt"
    n_cls = synthetic.num_classes(task)

    torch.manual_seed(a.seed)
    model = create_embedded_model(n_cls, **json.loads(a.model))
    hist = None
    if a.reuse and ckpt.exists():
        # this script's or the pipeline's own checkpoints (weights/model*.pt carry provenance objects)
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["state_dict"])
        hist = saved.get("history")
        print(f"loaded {ckpt}")
    else:
        hist = train_model(model, task, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                           weight_decay=a.weight_decay, warmup_frac=a.warmup_frac, grad_clip=a.grad_clip,
                           seed=a.seed, curriculum=curriculum, progress=not a.no_progress, log=print)
        torch.save({"state_dict": model.state_dict(), "task": task, "curriculum": curriculum,
                    "history": hist, "args": vars(a)}, ckpt)
    model.eval()

    t0 = time.perf_counter()
    images, labels = synthetic.make_images(task, a.n_eval, a.eval_seed)
    t_gen = time.perf_counter() - t0
    impl, apply = tome_factory(a.impl, a.tome_path)
    t0 = time.perf_counter()
    base = logits_of(model, images)
    t_base = time.perf_counter() - t0
    res = {"name": a.name, "task": task, "curriculum": curriculum, "impl": impl, "n_eval": a.n_eval,
           "eval_seed": a.eval_seed, "args": vars(a),
           "train": None if hist is None else {k: hist[k] for k in ("seconds", "steps_per_s", "steps",
                                                                    "batch_size", "loss", "train_acc")},
           "base": compare(base, base, labels), "eval_seconds": {"gen": t_gen, "base": t_base}, "tome": {}}
    rows = []
    for r in [int(s) for s in a.rs.split(",") if s.strip()]:
        t0 = time.perf_counter()
        lg = logits_of(apply(model, r), images)
        res["eval_seconds"][f"r{r}"] = time.perf_counter() - t0
        c = compare(base, lg, labels)
        res["tome"][r] = c
        rows.append((r, c))
    checks = []
    for spec in [c for c in a.checks.split(",") if c.strip()]:
        layers, method, r = spec.split(":")
        m = copy.deepcopy(model)
        if layers == "matched":
            from tokred.flops import count_flops, match_keep

            size = (3, task["img_size"], task["img_size"])
            target = count_flops(tokred.patch(copy.deepcopy(model), "tome", r=int(r)), size)
            keeps, _ = match_keep(m, method, target, keep_shape="uniform", input_size=size)
            tokred.patch(m, method=method, keep=keeps)
        else:
            tokred.patch(m, method=method, r=int(r), layers=None if layers == "all" else layers)
        c = compare(base, logits_of(m.eval(), images), labels)
        res.setdefault("checks", {})[spec] = c
        checks.append((spec, c))
    b = res["base"]
    tr = res["train"]
    print(f"\n== {a.name}: task {json.dumps(json.loads(a.task))} curriculum {json.dumps(curriculum)}")
    if tr:
        print(f"train: {tr['steps']} x {tr['batch_size']} steps, {tr['seconds'] / 60:.1f} min "
              f"({tr['steps_per_s']:.2f} steps/s), final loss {tr['loss'][-1]:.3f}")
    print(f"held-out n={a.n_eval} seed={a.eval_seed}, ToMe impl={impl}")
    print(f"baseline top-1 {b['top1']:.2f}  per class {[round(v, 1) for v in b['per_class']]}  "
          f"pred hist {b['pred_hist']}")
    print(f"{'r':>3} {'top1':>7} {'drop':>6} {'SE':>5} {'drop/SE':>7} {'KL':>7} {'agree':>6}  per-class / pred hist")
    for r, c in rows:
        z = c["drop"] / c["se"] if c["se"] > 0 else float("nan")
        print(f"{r:>3} {c['top1']:7.2f} {c['drop']:6.2f} {c['se']:5.2f} {z:7.2f} {c['kl']:7.4f} {c['agree']:6.1f}  "
              f"{[round(v, 1) for v in c['per_class']]} {c['pred_hist']}")
    for spec, c in checks:
        z = c["drop"] / c["se"] if c["se"] > 0 else float("nan")
        print(f"{spec:>22} {c['top1']:7.2f} {c['drop']:6.2f} {c['se']:5.2f} {z:7.2f} {c['kl']:9.2e} {c['agree']:6.1f}")
    (out / f"{a.name}.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
