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

from tokred.data.weights import (DownloadError, WeightsFileError, check_weights_file, default_hub_id,
                            download_weights, hub_url, load_pretrained, sidecar_path,
                            verify_weights)

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


def _st(n: int, fill: int = 120) -> bytes:
    """A valid safetensors file holding one uint8 tensor of n bytes."""
    from safetensors.torch import save

    return save({"w": torch.full((n,), fill, dtype=torch.uint8)})


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
    server.files[_path("a/b")] = _st(5000)
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
    server.files[p] = _st(200)
    server.plan[p] = [500, 503]
    info = download_weights(hub_url("a/b"), tmp_path / "m.safetensors", **FAST)
    assert info["downloaded"] and server.count(p) == 3


def test_retries_on_truncated_body_and_timeout(server, tmp_path):
    p = _path("a/b")
    server.files[p] = blob = _st(10_000)
    server.plan[p] = ["truncate", ("sleep", 1.0)]
    opts = {**FAST, "timeout": 0.3}
    info = download_weights(hub_url("a/b"), tmp_path / "m.safetensors", **opts)
    assert info["bytes"] == len(blob) and server.count(p) == 3


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


# --- files that are not weights (at the weights path, or from the server) -----------------------
LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:" + b"3" * 64 + b"\nsize 88249672\n")
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Sign in - Hugging Face</title></head>"
             b"<body>Log in to continue</body></html>\n")
JSON_REPLY = b'{"error":"Repository not found"}'


def _not_weights(kind: str) -> tuple[bytes, str]:
    """(file content, message regex naming the cause) of one kind of non-checkpoint."""
    blob = _st(4096)
    return {
        "lfs": (LFS_POINTER, "git-LFS pointer"),
        "html": (HTML_PAGE, "HTML"),
        "html_lower": (b"\n  <html><body>302 Found</body></html>", "HTML"),
        "json": (JSON_REPLY, "JSON document"),
        "empty": (b"", "empty"),
        "truncated_data": (blob[: len(blob) // 2], "shorter than its header says"),
        "truncated_header": (blob[:20], "shorter than its .*header says"),
        "trailing": (blob + b"\0" * 16, "beyond the"),
    }[kind]


KINDS = ["lfs", "html", "html_lower", "json", "empty", "truncated_data", "truncated_header",
         "trailing"]


def test_lfs_pointer_is_the_issue_size():
    assert len(LFS_POINTER) == 133


@pytest.mark.parametrize("kind", KINDS)
def test_preplaced_non_weights_are_refused_at_adoption(tmp_path, kind):
    body, cause = _not_weights(kind)
    dest = tmp_path / "model.safetensors"
    dest.write_bytes(body)
    url = "http://127.0.0.1:9/unreachable/model.safetensors"
    with pytest.raises(WeightsFileError, match=cause) as e:
        download_weights(url, dest, **FAST)
    assert str(dest) in str(e.value) and "by hand" in str(e.value)
    assert not sidecar_path(dest).exists() and dest.read_bytes() == body  # nothing adopted
    # a pinned sha256 that matches the bad file does not make it weights
    with pytest.raises(WeightsFileError, match=cause):
        download_weights(url, dest, sha256=hashlib.sha256(body).hexdigest(), **FAST)


def test_adopted_pointer_with_sidecar_fails_naming_the_cause(tmp_path):
    """A pointer adopted (with a sidecar) before this check: every job must say what it is."""
    dest = tmp_path / "model.safetensors"
    dest.write_bytes(LFS_POINTER)
    sidecar_path(dest).write_text(json.dumps({"url": "u", "sha256": hashlib.sha256(
        LFS_POINTER).hexdigest()}))
    verify_weights(dest)  # the checksum still matches: the sidecar recorded the pointer
    with pytest.raises(WeightsFileError, match="git-LFS pointer") as e:
        load_pretrained(TINY, dest, **SMALL)
    assert "header too large" not in str(e.value) and str(dest) in str(e.value)
    with pytest.raises(WeightsFileError, match="git-LFS pointer.*delete it and its sidecar"):
        download_weights("u", dest, **FAST)


@pytest.mark.parametrize("kind", ["lfs", "html", "json", "empty", "trailing"])
def test_server_sending_non_weights_writes_nothing(server, tmp_path, kind):
    body, cause = _not_weights(kind)
    server.files[_path("a/b")] = body
    dest = tmp_path / "w" / "model.safetensors"
    url = hub_url("a/b")
    with pytest.raises(WeightsFileError, match=cause) as e:
        download_weights(url, dest, **FAST)
    assert url in str(e.value) and "not written" in str(e.value)
    assert server.count(_path("a/b")) == 1  # a page or pointer stays one: not retried
    assert list(dest.parent.iterdir()) == []  # no file, no sidecar, no temporary


@pytest.mark.parametrize("kind", ["truncated_data", "truncated_header"])
def test_server_sending_a_truncated_file_is_retried_then_fails(server, tmp_path, kind):
    """A file cut short on the server (Content-Length agrees): retried, then a clear error."""
    body, _ = _not_weights(kind)
    server.files[_path("a/b")] = body
    dest = tmp_path / "w" / "model.safetensors"
    with pytest.raises(DownloadError, match="after 3 tries.*shorter than its .*header says"):
        download_weights(hub_url("a/b"), dest, **FAST)
    assert server.count(_path("a/b")) == 3 and list(dest.parent.iterdir()) == []


def test_check_weights_file_accepts_real_checkpoints(tiny_checkpoint, tmp_path):
    blob, _, _ = tiny_checkpoint
    dest = tmp_path / "model.safetensors"
    dest.write_bytes(blob)
    info = check_weights_file(dest)
    assert info["format"] == "safetensors" and info["bytes"] == len(blob) and info["tensors"] > 10
    # A valid file whose header length starts with the byte '<' (0x3C; the spec needs no padding)
    # is not mistaken for an HTML page.
    header = json.dumps({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}).encode()
    header += b" " * (0x13C - len(header))
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(len(header).to_bytes(8, "little") + header + b"\1\2\3\4")
    assert odd.read_bytes()[:1] == b"<" and check_weights_file(odd)["tensors"] == 1
    from safetensors.torch import load_file

    assert load_file(str(odd))["w"].tolist() == [1, 2, 3, 4]


def test_torch_checkpoints_are_checked_too(tmp_path):
    sd = {"w": torch.arange(4096.0)}
    good = tmp_path / "ckpt.pth"
    torch.save(sd, good)
    assert check_weights_file(good)["format"] == "torch"
    legacy = tmp_path / "legacy.pth"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    assert check_weights_file(legacy)["format"] == "torch"
    bad = tmp_path / "bad.pth"
    for body, cause in [(good.read_bytes()[:5000], "truncated"), (LFS_POINTER, "git-LFS"),
                        (HTML_PAGE, "HTML"), (_st(64), "neither a torch.save zip")]:
        bad.write_bytes(body)
        with pytest.raises(WeightsFileError, match=cause):
            check_weights_file(bad)
        with pytest.raises(WeightsFileError, match=cause):
            load_pretrained("vit_tiny_patch16_224", bad, **SMALL)


def test_embedded_weights_file_is_checked(tmp_path):
    from tokred.study.runner import build_model

    dest = tmp_path / "model.pt"
    dest.write_bytes(LFS_POINTER)
    with pytest.raises(WeightsFileError, match="git-LFS pointer"):
        build_model({"model": {"source": "embedded"}}, str(dest))
