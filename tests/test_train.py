"""Unit tests for the training loop (tokred.data.train) on a tiny model."""
import io
import math
import sys
from pathlib import Path

import pytest
import torch

try:
    from tokred.data import synthetic, train
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tokred.data import synthetic, train
from tokred.models import create_embedded_model

TASK = {"img_size": 32, "radius_min": 1.5, "radius_max": 2.5, "max_count": 2, "distractors_min": 1,
        "distractors_max": 2}
KW = dict(steps=3, batch_size=4, lr=1e-3, weight_decay=0.05, warmup_frac=0.34, grad_clip=1.0)


def tiny_model():
    return create_embedded_model(synthetic.num_classes(TASK), img_size=32, patch_size=8, embed_dim=16,
                                 depth=2, num_heads=2)


def run(seed=0, curriculum=None):
    torch.manual_seed(123)
    m = tiny_model()
    h = train.train_model(m, TASK, seed=seed, curriculum=curriculum, progress=False, log=None, log_every=1, **KW)
    return m, h


def test_train_three_steps_finite_and_state_dict_roundtrip(tmp_path):
    m, h = run(curriculum={"easy_start": 1.0, "easy_end": 0.0, "decay_frac": 0.5,
                           "easy": {"radius_min": 3.0, "radius_max": 3.5, "background": "smooth"}})
    assert h["step"] == [1, 2, 3] and len(h["loss"]) == 3
    assert all(math.isfinite(v) for v in h["loss"])
    assert h["steps_per_s"] > 0 and h["seconds"] > 0
    assert h["easy_share"][0] == 1.0 and h["easy_share"][-1] == 0.0
    path = tmp_path / "w.pt"
    torch.save(m.state_dict(), path)
    m2 = tiny_model()
    m2.load_state_dict(torch.load(path))
    m.eval(), m2.eval()
    x, _ = synthetic.make_images(TASK, 3, seed=9)
    from tokred.models import EMBEDDED_MEAN, EMBEDDED_STD, normalize
    xn = normalize(x, EMBEDDED_MEAN, EMBEDDED_STD)
    with torch.no_grad():
        assert torch.equal(m(xn), m2(xn))


def test_deterministic_for_seed():
    m1, h1 = run(seed=5)
    m2, h2 = run(seed=5)
    assert h1["loss"] == h2["loss"]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    _, h3 = run(seed=6)
    assert h3["loss"] != h1["loss"]


def test_schedule_and_curriculum_share():
    f = [train.lr_factor(s, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.01
    c = train.resolve_curriculum({"easy_start": 1.0, "easy_end": 0.0, "decay_frac": 0.4,
                                  "easy": {"background": "smooth"}}, TASK)
    assert c["easy_task"]["background"] == "smooth"
    assert train.easy_share(c, 0, 100) == 1.0
    assert train.easy_share(c, 20, 100) == pytest.approx(0.5)
    assert train.easy_share(c, 40, 100) == 0.0 and train.easy_share(c, 90, 100) == 0.0
    assert train.easy_share(None, 0, 100) == 0.0


def test_training_batches_never_overlap_eval_stream():
    x_tr, y_tr, n_easy = train.make_batch(synthetic.resolve_task(TASK), None, 0, 10, 4, seed=0)
    x_ev, _ = synthetic.make_images(TASK, 4, seed=0)
    assert n_easy == 0 and all(not torch.equal(a, b) for a, b in zip(x_tr, x_ev))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="easy_satrt"):
        train.resolve_curriculum({"easy_satrt": 1.0}, TASK)
    with pytest.raises(ValueError, match="steps"):
        train.train_model(tiny_model(), TASK, **{**KW, "steps": 0}, seed=0, progress=False, log=None)


@pytest.mark.parametrize("pool", ["avg", "map"])
def test_global_pool_reaches_the_checkpoint_and_the_evaluated_model(tmp_path, pool):
    """`model.global_pool` is trained with, stored in the checkpoint and rebuilt by the evaluation jobs;
    the patched read-out stays exact at r=0 and is changed (not ignored) by merging."""
    import tokred
    from tokred.study.runner import build_model

    cfg = {"seed": 0, "task": {"name": "count_disks", **TASK},
           "model": {"source": "embedded", "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2,
                     "global_pool": pool},
           "train": {**KW, "curriculum": None}}
    out = tmp_path / "model.pt"
    train.train_embedded(cfg, str(out))
    ckpt = torch.load(out, weights_only=False)
    assert ckpt["model"]["global_pool"] == pool
    model = build_model(cfg, str(out))
    assert model.global_pool == pool and model.cls_token is not None
    x, _ = synthetic.make_images(TASK, 4, seed=9)
    from tokred.models import EMBEDDED_MEAN, EMBEDDED_STD, normalize
    xn = normalize(x, EMBEDDED_MEAN, EMBEDDED_STD)
    with torch.no_grad():
        base = model(xn)
        tokred.patch(model, "tome", r=0)
        assert torch.allclose(model(xn), base, atol=1e-6)
        tokred.patch(model, "tome", r=6)
        assert not torch.allclose(model(xn), base, atol=1e-6)


def test_index_offset_continues_the_training_stream():
    """A later phase draws the images after the earlier phase's, never the same ones again."""
    x, y, _ = train.make_batch(synthetic.resolve_task(TASK), None, 1, 5, 4, seed=3, index_offset=8)
    ref_x, ref_y = synthetic.make_images(synthetic.resolve_task(TASK), 4, 3, 12, stream="train")
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)


def test_resize_pos_embed_keeps_cls_and_resamples_the_grid():
    m = tiny_model()  # 32 px / patch 8: a 4 x 4 grid
    state = m.state_dict()
    ramp = torch.linspace(-1, 1, 4).view(1, 4, 1).expand(4, 4, 16).reshape(1, 16, 16)  # rises along x
    state["pos_embed"] = torch.cat([torch.full((1, 1, 16), 7.0), ramp], dim=1)
    out = train.resize_pos_embed(m, state, 8)["pos_embed"]
    assert out.shape == (1, 1 + 64, 16)
    assert torch.equal(out[:, 0], state["pos_embed"][:, 0])
    grid = out[0, 1:, 0].view(8, 8)
    assert torch.all(grid[:, 1:] >= grid[:, :-1] - 1e-6) and torch.allclose(grid[0], grid[5])  # still a ramp in x
    assert float(grid[0, -1] - grid[0, 0]) > 1.5


def test_low_res_phase_then_full_size(tmp_path):
    """train.low_res: the first phase trains at the low size at its own rate (its own history), the second starts from
    its weights with the position embeddings resized, on the images after the first phase's; the
    checkpoint is the full-size model."""
    task = {**TASK, "img_size": 48}
    cfg = {"seed": 0, "task": {"name": "count_disks", **task},
           "model": {"source": "embedded", "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2},
           "train": {**KW, "steps": 1, "curriculum": None, "low_res": {"img_size": 32, "steps": 3, "lr": 3e-3}}}
    out = tmp_path / "model.pt"
    h = train.train_embedded(cfg, str(out))
    ckpt = torch.load(out, weights_only=False)
    assert h["low_res"]["img_size"] == 32 and h["low_res"]["steps"] == 3 and h["steps"] == 1
    assert ckpt["model"]["img_size"] == 48 and ckpt["state_dict"]["pos_embed"].shape == (1, 1 + 36, 16)

    def model(size):
        return create_embedded_model(synthetic.num_classes(TASK), img_size=size, patch_size=8, embed_dim=16,
                                     depth=2, num_heads=2)

    kw = dict(batch_size=4, lr=1e-3, weight_decay=0.05, warmup_frac=0.34, grad_clip=1.0, seed=0, progress=False,
              log=None)
    torch.manual_seed(0)
    low = model(32)
    train.train_model(low, {**TASK, "img_size": 32}, steps=3, **{**kw, "lr": 3e-3})  # the first phase's own rate
    full = model(48)
    full.load_state_dict(train.resize_pos_embed(low, low.state_dict(), 6))
    train.train_model(full, task, steps=1, index_offset=12, **kw)
    for k, v in full.state_dict().items():
        assert torch.allclose(ckpt["state_dict"][k], v, atol=1e-6), k
    torch.manual_seed(0)
    direct = model(48)
    train.train_model(direct, task, steps=1, **kw)
    assert not torch.allclose(ckpt["state_dict"]["blocks.0.attn.qkv.weight"], direct.state_dict()["blocks.0.attn.qkv.weight"])


def test_paper_states_both_training_phases(tmp_path):
    """The paper's setup line says what the checkpoint records: steps at the low size, then at full size."""
    import pandas as pd

    from tokred.report.macros import write_macros

    task = {**TASK, "img_size": 48}
    model = {"source": "embedded", "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2}
    train_cfg = {**KW, "steps": 1, "curriculum": None, "low_res": {"img_size": 32, "steps": 2}}
    w = tmp_path / "model.pt"
    train.train_embedded({"seed": 0, "task": {"name": "count_disks", **task}, "model": model, "train": train_cfg}, str(w))
    prov = {"torch": "2", "timm": "1", "device_name": "cpu", "device": "cpu", "config_hash": "abc"}
    df = pd.DataFrame([{"run": "base", "r": float("nan"), "n_images": 3, "provenance": prov,
                        **{k: 1.0 for k in ("top1", "top1_lo", "top1_hi", "drop_pp", "drop_se_pp", "kl", "delta_margin",
                                            "agreement", "gflops", "rel_cost", "mcnemar_p")}}])
    out = tmp_path / "setup.tex"
    write_macros(df, str(out), profile="embedded", model=model, data={}, train=train_cfg, task=task, weights=str(w))
    assert ("model trained 2 steps at 32 px, then 1 steps at 48 px at batch 4" in out.read_text())
