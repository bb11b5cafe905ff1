"""Weights download/verify/load against a real HTTP server on loopback (no mocks, no internet)."""
from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time

import pytest
import torch

from tokred.weights import (DownloadError, default_hub_id, download_weights, hub_url,
                            load_pretrained, sidecar_path, verify_weights)

TINY = "deit_tiny_patch16_224"
REPO = "timm/deit_tiny_patch16_224.fb_in1k"
# DeiT-Tiny's layout and key names, shrunk (2 blocks, 32 px) so the file stays fast on a CPU.
SMALL = dict(img_size=32, depth=2)
FAST = dict(retries=3, backoff=0.01, timeout=5, log=lambda *_: None)


class _Server:
    """Serves `files` {url path: bytes}. `plan` {path: [action, ...]} is consumed one action per
    request before normal service: an int status, "truncate" or ("sleep", seconds)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, list] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                server.requests.append(self.path)
                actions = server.plan.get(self.path)
                action = actions.pop(0) if actions else None
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                if isinstance(action, int):
                    self.send_error(action)
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if action == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test): expected

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def count(self, path: str) -> int:
        return sum(p == path for p in self.requests)


@pytest.fixture
def server(monkeypatch):
    s = _Server()
    monkeypatch.setenv("HF_ENDPOINT", s.endpoint)
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised DeiT-Tiny saved like a hub checkpoint, and its logits on one input."""
    from safetensors.torch import save_file
    import timm

    torch.manual_seed(0)
    model = timm.create_model(TINY, pretrained=False, **SMALL).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path.read_bytes(), x, logits


def _path(repo_id: str, filename: str = "model.safetensors") -> str:
    return f"/{repo_id}/resolve/main/{filename}"


def test_hub_url(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hub_url("timm/x") == "https://huggingface.co/timm/x/resolve/main/model.safetensors"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror:1/")
    assert hub_url("timm/x", "a.bin", "v1") == "http://mirror:1/timm/x/resolve/v1/a.bin"
    assert hub_url("timm/x", endpoint="http://e").startswith("http://e/timm/x/")


def test_default_hub_id_of_paper_model():
    assert default_hub_id("deit_small_patch16_224") == "timm/deit_small_patch16_224.fb_in1k"


def test_download_load_and_cache(server, tiny_checkpoint, tmp_path):
    blob, x, logits = tiny_checkpoint
    server.files[_path(REPO)] = blob
    url = hub_url(REPO)
    assert url.startswith(server.endpoint)
    dest = tmp_path / "w" / "model.safetensors"

    info = download_weights(url, dest, **FAST)
    sha = hashlib.sha256(blob).hexdigest()
    assert info["downloaded"] and info["sha256"] == sha and info["bytes"] == len(blob)
    side = json.loads(sidecar_path(dest).read_text())
    assert side["url"] == url and side["sha256"] == sha and side["downloaded_at"]
    assert dest.read_bytes() == blob
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".")] == []  # no temp left

    # Second call (with and without the expected sha): no request at all.
    assert not download_weights(url, dest, **FAST)["downloaded"]
    assert not download_weights(url, dest, sha256=sha, **FAST)["downloaded"]
    assert server.count(_path(REPO)) == 1

    verify_weights(dest)
    model = load_pretrained(TINY, dest, **SMALL)
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(x), logits)


def test_corruption_detected_and_redownloaded(server, tmp_path):
    server.files[_path("a/b")] = b"x" * 5000
    dest = tmp_path / "model.safetensors"
    download_weights(hub_url("a/b"), dest, **FAST)
    data = bytearray(dest.read_bytes())
    data[100] ^= 0xFF
    dest.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corrupt.*model\.safetensors|model\.safetensors.*corrupt"):
        verify_weights(dest)
    with pytest.raises(ValueError, match="corrupt"):
        load_pretrained(TINY, dest, **SMALL)
    # A later download call notices the mismatch and fetches a good copy.
    assert download_weights(hub_url("a/b"), dest, **FAST)["downloaded"]
    verify_weights(dest)
    assert server.count(_path("a/b")) == 2


def test_wrong_sha_is_an_error_and_writes_nothing(server, tmp_path):
    server.files[_path("a/b")] = b"payload"
    dest = tmp_path / "model.safetensors"
    url = hub_url("a/b")
    with pytest.raises(ValueError) as e:
        download_weights(url, dest, sha256="0" * 64, **FAST)
    msg = str(e.value)
    assert "0" * 64 in msg and hashlib.sha256(b"payload").hexdigest() in msg and url in msg
    assert not dest.exists() and not sidecar_path(dest).exists()
    assert list(tmp_path.iterdir()) == []


def test_retries_on_5xx_then_succeeds(server, tmp_path):
    p = _path("a/b")
    server.files[p] = b"ok" * 100
    server.plan[p] = [500, 503]
    info = download_weights(hub_url("a/b"), tmp_path / "m.safetensors", **FAST)
    assert info["downloaded"] and server.count(p) == 3


def test_retries_on_truncated_body_and_timeout(server, tmp_path):
    p = _path("a/b")
    server.files[p] = b"z" * 10_000
    server.plan[p] = ["truncate", ("sleep", 1.0)]
    opts = {**FAST, "timeout": 0.3}
    info = download_weights(hub_url("a/b"), tmp_path / "m.safetensors", **opts)
    assert info["bytes"] == 10_000 and server.count(p) == 3


def test_5xx_exhausts_retries(server, tmp_path):
    p = _path("a/b")
    server.files[p] = b"ok"
    server.plan[p] = [500, 500, 500]
    url = hub_url("a/b")
    with pytest.raises(DownloadError, match="after 3 tries") as e:
        download_weights(url, tmp_path / "m.safetensors", **FAST)
    assert url in str(e.value) and "500" in str(e.value)


def test_404_fails_at_once_naming_url(server, tmp_path):
    url = hub_url("no/such")
    with pytest.raises(DownloadError, match="404") as e:
        download_weights(url, tmp_path / "m.safetensors", **FAST)
    assert url in str(e.value)
    assert server.count(_path("no/such")) == 1  # not retried


def test_unreachable_suggests_preplacing(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/timm/x/resolve/main/model.safetensors"
    dest = tmp_path / "m.safetensors"
    with pytest.raises(DownloadError) as e:
        download_weights(url, dest, retries=2, backoff=0.01, timeout=2, log=lambda *_: None)
    msg = str(e.value)
    assert url in msg and "2 tries" in msg and str(dest) in msg


def test_preplaced_file_is_adopted_offline(tiny_checkpoint, tmp_path):
    blob, x, logits = tiny_checkpoint
    dest = tmp_path / "model.safetensors"
    dest.write_bytes(blob)
    url = "http://127.0.0.1:9/unreachable/model.safetensors"
    info = download_weights(url, dest, sha256=hashlib.sha256(blob).hexdigest(), **FAST)
    assert not info["downloaded"]
    verify_weights(dest)
    with torch.no_grad():
        assert torch.equal(load_pretrained(TINY, dest, **SMALL)(x), logits)


def test_key_mismatch_is_clear(tiny_checkpoint, tmp_path):
    blob, _, _ = tiny_checkpoint
    dest = tmp_path / "model.safetensors"
    dest.write_bytes(blob)
    with pytest.raises(ValueError, match="shape mismatch") as e:
        load_pretrained(TINY, dest, num_classes=10, **SMALL)
    assert "head.weight" in str(e.value) and str(dest) in str(e.value)
    with pytest.raises(ValueError, match="missing keys|unexpected keys"):
        load_pretrained("deit_tiny_distilled_patch16_224", dest, **SMALL)


def test_load_pth_checkpoint(tmp_path):
    import timm

    torch.manual_seed(1)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, **SMALL)
    dest = tmp_path / "ckpt.pth"
    torch.save({"model": m.state_dict(), "epoch": 3}, dest)  # training-checkpoint layout
    loaded = load_pretrained("vit_tiny_patch16_224", dest, num_classes=3, **SMALL)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), m.eval()(x))
