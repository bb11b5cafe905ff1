"""Regression tests for faults in the core reduction library: pooled read-outs of merged tokens,
low-precision merges and selection, and numpy / torch scalars as schedule values."""
import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import tokred
from tokred import schedule
from tokred.methods import resolve_method


def tome_parse_r(num_layers, r):
    """ToMe's `parse_r` (tome/utils.py), verbatim arithmetic, for the real-valued r cases."""
    inflect = 0
    if isinstance(r, tuple):
        r, inflect = r
    min_val = int(r * (1.0 - inflect))
    max_val = 2 * r - min_val
    step = (max_val - min_val) / (num_layers - 1)
    return [int(min_val + step * i) for i in range(num_layers)]


# --- 8. numpy and tensor scalars as schedule values ---------------------------------------------

INTS = [np.int32(8), np.int64(8), np.float64(8.0), np.float32(8.0), torch.tensor(8), torch.tensor(8.0),
        np.array(8)]


@pytest.mark.parametrize("r", INTS, ids=repr)
def test_scalar_r_of_any_numeric_type(r):
    assert schedule.resolve(12, 196, r) == schedule.resolve(12, 196, 8) == [8] * 12


@pytest.mark.parametrize("r", [(np.int64(13), np.float32(-0.5)), (torch.tensor(13), torch.tensor(-0.5)),
                               (np.float64(13.0), np.float64(-0.5))], ids=repr)
def test_scalar_types_in_r_inflection_tuple(r):
    assert schedule.resolve(12, 196, r) == schedule.resolve(12, 196, (13, -0.5))


@pytest.mark.parametrize("r", [[np.int64(3), torch.tensor(2), np.int32(5)], np.array([3, 2, 5]),
                               torch.tensor([3, 2, 5]), [3.0, np.float32(2.0), 5]], ids=repr)
def test_scalar_types_in_r_lists(r):
    assert schedule.resolve(4, 196, r) == [3, 2, 5, 0]


@pytest.mark.parametrize("keep", [np.float32(0.7), np.float64(0.7), torch.tensor(0.7), torch.tensor(0.7,
                                  dtype=torch.float64)], ids=repr)
def test_scalar_types_as_keep_ratio(keep):
    assert schedule.resolve(12, 196, keep=keep) == schedule.resolve(12, 196, keep=float(keep))
    per_block = [keep, np.float32(0.9), torch.tensor(1.0)]
    assert schedule.resolve(3, 196, keep=per_block) == schedule.resolve(3, 196, keep=[float(keep), float(np.float32(0.9)), 1.0])
    assert schedule.resolve(2, 196, keep=np.array([0.7, 0.9])) == schedule.resolve(2, 196, keep=[0.7, 0.9])


@pytest.mark.parametrize("tile", [np.int64(8), np.int32(8), torch.tensor(8), np.float64(8.0)], ids=repr)
def test_scalar_types_as_tile(tile):
    assert schedule.resolve(12, 196, 13, tile=tile) == schedule.resolve(12, 196, 13, tile=8)


def test_scalar_types_as_layer_indices_and_profile_knobs():
    assert schedule.resolve(4, 196, 13, layers=np.int64(1)) == [0, 13, 0, 0]
    assert schedule.resolve(4, 196, 13, layers=torch.tensor([0, 2])) == [13, 0, 13, 0]
    assert schedule.resolve(4, 196, 13, layers=[np.int64(3)]) == [0, 0, 0, 13]
    assert schedule.profile_keep("late", 4, np.float32(0.5), late_k=np.int64(1)) == [0.5, 0.5, 0.5, 1.0]
    assert schedule.profile_keep("late", 4, torch.tensor(0.5), late_k=torch.tensor(1)) == [0.5, 0.5, 0.5, 1.0]


@pytest.mark.parametrize("r", [13.5, np.float32(9.25), (13.5, -0.5), (torch.tensor(7.5), 0.5)], ids=repr)
def test_real_r_follows_tome_parse_r(r):
    # ToMe's parse_r ramps a real r between its neighbours; truncating it first would differ.
    assert schedule.resolve(12, 196, r) == tome_parse_r(12, r if isinstance(r, tuple) else float(r))


@pytest.mark.parametrize("kw, key", [
    (dict(r="13"), "r"), (dict(r=b"13"), "r"), (dict(r=True), "r"), (dict(r=np.bool_(True)), "r"),
    (dict(r=torch.tensor(True)), "r"), (dict(r=torch.tensor([[1, 2]])), "r"), (dict(r=[8.5]), "r"),
    (dict(r=float("nan")), "r"), (dict(r=(8, "x")), "r inflection"), (dict(r={1: 2}), "r"), (dict(r=1 + 2j), "r"),
    (dict(keep="0.7"), "keep"), (dict(keep=[0.7, "a"]), "keep"), (dict(keep=np.ones((2, 2))), "keep"),
    (dict(r=8, tile=8.5), "tile"), (dict(r=8, tile=True), "tile"), (dict(r=8, tile="8"), "tile"),
    (dict(r=8, layers=[1.5]), "layers"),
])
def test_non_numbers_fail_naming_the_key(kw, key):
    with pytest.raises(ValueError, match=f"schedule {key}"):
        schedule.resolve(4, 196, **kw)


def test_patch_takes_numpy_and_tensor_r():
    torch.manual_seed(0)
    m = VisionTransformer(img_size=32, patch_size=4, embed_dim=24, depth=2, num_heads=2, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = tokred.patch(m, "tome", r=8)(x)
        for r in (np.int64(8), torch.tensor(8), (np.int32(8), np.float32(0.0))):
            torch.testing.assert_close(tokred.patch(m, "tome", r=r)(x), want, atol=0, rtol=0)
        want = tokred.patch(m, "ours", keep=0.7, tile=8)(x)
        got = tokred.patch(m, "ours", keep=np.float32(0.7), tile=np.int64(8), q=np.float64(0.3))(x)
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_method_knobs_become_python_numbers():
    m = resolve_method("ours", q=torch.tensor(0.25), topr=np.int64(2), eta=np.float32(0.5),
                       clip_tau=torch.tensor(2.0), temperature=np.int64(1), push=np.array([0.1, 0.5, 0.5]))
    assert (type(m.q), type(m.topr), type(m.eta), type(m.clip_tau), type(m.temperature)) == (float, int, float, float, float)
    assert m.push == (0.1, 0.5, 0.5) and all(type(v) is float for v in m.push)
    assert m == resolve_method("ours", q=0.25, topr=2, eta=0.5, clip_tau=2.0, temperature=1, push=(0.1, 0.5, 0.5))
    for kw, key in ((dict(q="0.3"), "'q'"), (dict(topr=2.5), "'topr'"), (dict(topr=True), "'topr'"),
                    (dict(eta=torch.tensor([0.1])), "'eta'"), (dict(push="abc"), "'push'")):
        with pytest.raises(ValueError, match=f"method key {key}"):
            resolve_method("ours", **kw)
