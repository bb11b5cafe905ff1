"""Pretrained weights for the paper profile: download once, record a checksum, load strictly.

The paper profile evaluates timm's `deit_small_patch16_224` with its hub checkpoint
(`timm/deit_small_patch16_224.fb_in1k`). The weights rule downloads the file once into results/,
writes a sidecar `<file>.json` with its URL and sha256, and every later job verifies the file
against that sidecar before loading, so a corrupted or swapped checkpoint fails loudly instead of
silently changing every number in the paper.

Only the standard library is imported at module level: Snakemake may import this module while it
builds the DAG (e.g. for `hub_url`), which must stay fast and must not pull in torch.

One module (over 300 lines): download, adoption of a file placed by hand, the format check and
loading all guard the same artefact, and each calls the check.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..io import atomic_path, sha256_file, write_json

DEFAULT_ENDPOINT = "https://huggingface.co"
USER_AGENT = "tokred/0.1 (python-urllib)"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed for good (HTTP 4xx, or still failing after every retry)."""


class WeightsFileError(ValueError):
    """A file at a weights path that is not a usable checkpoint. `cause`: 'lfs' (a git-LFS
    pointer), 'html' (a web page), 'json' (a JSON document, e.g. a server's error reply), 'empty',
    'truncated' (shorter than its own header says), or 'format' (anything else that is not the
    expected format)."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


# safetensors (https://github.com/huggingface/safetensors, format spec in its README): 8-byte
# little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]},
# "__metadata__": {...}}, then the data buffer; the file ends exactly at the largest end offset.
_ST_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_ST_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_LFS_PREFIX = b"version https://git-lfs"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # first byte of a pickle (protocol >= 2): torch's legacy, pre-zip format


def weights_format(path: str | Path) -> str:
    """'safetensors' for a .safetensors path, else 'torch' (.pt/.pth/.bin/.ckpt: torch.save)."""
    return "safetensors" if Path(path).suffix == ".safetensors" else "torch"


def _not_weights(head: bytes) -> tuple[str, str] | None:
    """(cause, description) when the first bytes show a well-known non-checkpoint, else None."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")  # BOM / whitespace before a text document
    if head.startswith(_LFS_PREFIX):
        return "lfs", ("a git-LFS pointer (a text stub naming the real file), not the weights: "
                       "the repository was cloned or copied without `git lfs pull`, or a mirror "
                       "serves LFS pointers; fetch the real file")
    if text[:1] == b"<":
        return "html", ("an HTML/XML page, not the weights: a login, error or redirect page "
                        "(wrong URL, a mirror or proxy that needs authentication, or a "
                        "'Save link as' of the web page instead of the file)")
    if text[:1] in (b"{", b"["):
        return "json", ("a JSON document, not the weights: probably an error reply from the "
                        "server (wrong URL or access denied)")
    return None


def check_weights_file(path: str | Path, fmt: str | None = None, *, label: str | None = None
                       ) -> dict:
    """Cheap structural check that `path` is a complete checkpoint, before anything trusts it.

    `fmt` 'safetensors' or 'torch' (default from the suffix, `weights_format`). safetensors: the
    8-byte header length and JSON header parse, every tensor's byte range fits its dtype x shape,
    and the file size is exactly 8 + header + data. torch: a zip archive with a `data.pkl` (the
    format of torch.save since 1.6; its central directory sits at the end, so a truncated file is
    caught) or a legacy pickle (first byte 0x80; not size-checked). Reads the header only.
    Returns {'format', 'bytes', 'tensors' (safetensors; None for torch)}.
    Raises FileNotFoundError, or WeightsFileError naming the file (or `label`, e.g. for a
    temporary download) and the likely cause (git-LFS pointer, HTML page, JSON error reply, empty
    file, truncated download).
    """
    path = Path(path)
    fmt = fmt or weights_format(path)
    if fmt not in ("safetensors", "torch"):
        raise ValueError(f"check_weights_file: unknown format {fmt!r}")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)

    def fail(cause: str, why: str):
        raise WeightsFileError(f"{label or f'weights file {path}'} ({size} bytes) is not a {fmt} "
                               f"checkpoint: {why}", cause)

    if size == 0:
        fail("empty", "the file is empty (an interrupted download or copy?)")
    if fmt == "torch":
        return _check_torch(path, head, size, fail)
    return _check_safetensors(path, head, size, fail)


def _check_torch(path: Path, head: bytes, size: int, fail) -> dict:
    import zipfile

    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):  # no end-of-archive directory
            fail("truncated", "a zip archive without its end (truncated download or copy?)")
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            fail("truncated", f"a damaged zip archive ({e}; truncated download or copy?)")
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            fail("format", f"a zip archive without data.pkl (holds e.g. {names[:3]}), not a "
                           f"torch.save checkpoint")
    elif head[0] != _PICKLE_PROTO:
        fail(*(_not_weights(head) or ("format", f"neither a torch.save zip archive nor a pickle "
                                                f"(first bytes {head[:8]!r})")))
    return {"format": "torch", "bytes": size, "tensors": None}


def _check_safetensors(path: Path, head: bytes, size: int, fail) -> dict:
    if size < 8:
        fail(*(_not_weights(head) or ("truncated", "shorter than the 8-byte header length "
                                                   "(truncated download?)")))
    n = int.from_bytes(head[:8], "little")
    if n < 2 or n > _ST_MAX_HEADER:
        # Text (a pointer, a page) always lands here: 8 printable bytes read as n >= 2**61.
        # Classified only now, since a real header length may start with any byte.
        fail(*(_not_weights(head) or ("format", f"its first 8 bytes give a header length of {n} "
                                                f"bytes, not a safetensors header (first bytes "
                                                f"{head[:16]!r})")))
    if 8 + n > size:
        fail("truncated", f"shorter than its {n}-byte header says (truncated download or copy?)")
    with open(path, "rb") as f:
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail("format", f"its {n}-byte header is not JSON ({e}): corrupt")
    if not isinstance(header, dict):
        fail("format", "its header is not a JSON object: corrupt")
    end = 0
    tensors = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(v) for v in info["data_offsets"])
            numel = 1
            for d in info["shape"]:
                numel *= int(d)
            itemsize = _ST_ITEMSIZE.get(info["dtype"])
        except (KeyError, TypeError, ValueError):
            fail("format", f"tensor {name!r} has a malformed header entry {info!r}: corrupt")
        if not 0 <= begin <= stop or (itemsize is not None and stop - begin != numel * itemsize):
            fail("format", f"tensor {name!r}: byte range {begin}..{stop} does not fit "
                           f"{info['dtype']} x {info['shape']}: corrupt")
        end = max(end, stop)
        tensors += 1
    if tensors == 0:
        fail("format", "its header lists no tensors")
    expected = 8 + n + end
    if size < expected:
        fail("truncated", f"shorter than its header says: {size} of {expected} bytes "
                          f"(truncated download or copy?)")
    if size > expected:
        fail("format", f"{size - expected} bytes beyond the {expected} its header accounts for: "
                       f"corrupt, or something appended to it")
    return {"format": "safetensors", "bytes": size, "tensors": tensors}


def hub_url(repo_id: str, filename: str = "model.safetensors", revision: str = "main",
            endpoint: str | None = None) -> str:
    """URL of one file in a Hugging Face hub repo.

    `endpoint` defaults to $HF_ENDPOINT (mirrors, and the tests' loopback server), then the hub.
    """
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    return f"{endpoint.rstrip('/')}/{repo_id}/resolve/{revision}/{filename}"


def default_hub_id(model_name: str) -> str:
    """The hub repo timm downloads `model_name`'s default pretrained weights from."""
    import timm

    hub_id = timm.models.get_pretrained_cfg(model_name).hf_hub_id
    if not hub_id:
        raise ValueError(f"timm model '{model_name}' has no hf_hub_id in its pretrained config")
    return hub_id


def sidecar_path(dest: str | Path) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".json")


def _read_sidecar(dest: Path) -> dict | None:
    side = sidecar_path(dest)
    if not side.exists():
        return None
    try:
        return json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # an unreadable sidecar is treated like a missing one: re-download


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def download_weights(url: str, dest: str | Path, *, sha256: str | None = None, retries: int = 3,
                     timeout: float = 30, backoff: float = 1.0,
                     log: Callable[[str], object] = print) -> dict:
    """Download `url` to `dest` once and record `<dest>.json` = {url, sha256, bytes, downloaded_at}.

    Skips the download when `dest` already holds the right file: its sha256 equals `sha256` if
    given, else the sidecar's (for the same URL). A file placed at `dest` by hand without a
    sidecar (the way to run on a machine without internet) is adopted and a sidecar written for it.

    Transient failures (connection errors, timeouts, truncated bodies, HTTP 5xx/429) are retried
    `retries` times in all with exponential backoff; HTTP 4xx fails at once. A sha256 mismatch
    raises ValueError and leaves nothing at `dest` (the write is atomic).
    Every file is checked to be a complete checkpoint of `dest`'s format (`check_weights_file`)
    before it is adopted, reused or written: a git-LFS pointer, an HTML/JSON page or an empty
    file raises WeightsFileError naming the cause (a bad download leaves nothing at `dest`); a
    truncated download is retried like a truncated body.
    Returns the sidecar dict plus `path` and `downloaded` (False when the file was reused).
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    fmt = weights_format(dest)

    if dest.exists():
        actual = sha256_file(dest)
        side = _read_sidecar(dest)
        reuse = False
        if expected:
            reuse = actual == expected
        elif side is not None:
            reuse = side.get("sha256") == actual and side.get("url") == url
        else:
            reuse = True
            log(f"[weights] adopting pre-placed {dest} (no sidecar), sha256 {actual}")
        if reuse:
            try:
                check_weights_file(dest, fmt)
            except WeightsFileError as e:
                how = (f"placed there by hand (no sidecar {sidecar_path(dest).name})"
                       if side is None else f"recorded in {sidecar_path(dest)}")
                raise WeightsFileError(
                    f"{e}. The file was {how}: replace it with the real checkpoint, or delete it "
                    f"and its sidecar to download {url}", e.cause) from None
            if side is None or side.get("sha256") != actual:
                side = {"url": url, "sha256": actual, "bytes": dest.stat().st_size,
                        "downloaded_at": None, "adopted_at": _now()}
                write_json(sidecar_path(dest), side)
            else:
                log(f"[weights] {dest} present, sha256 matches; no download")
            return {**side, "path": str(dest), "downloaded": False}
        log(f"[weights] {dest} does not match the recorded/expected checksum; downloading again")

    if retries < 1:
        raise ValueError("retries must be >= 1")
    last_err: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            log(f"[weights] downloading {url} -> {dest} (attempt {attempt}/{retries})")
            with atomic_path(dest) as tmp:
                digest, nbytes = _fetch(url, tmp, timeout)
                # Checked before the rename, so a wrong file never appears at `dest`.
                if expected and digest != expected:
                    raise ValueError(f"sha256 mismatch for {url}: expected {expected}, "
                                     f"got {digest} ({nbytes} bytes); not written to {dest}")
                try:
                    check_weights_file(tmp, fmt, label=f"the download of {url}")
                except WeightsFileError as e:
                    if e.cause == "truncated":  # may be a dropped connection: try again
                        raise _Transient(str(e)) from None
                    raise WeightsFileError(f"{e}; not written to {dest}", e.cause) from None
            break
        except _Permanent as e:
            raise DownloadError(str(e)) from None
        except _TRANSIENT as e:
            last_err = e
            if attempt < retries:
                wait = backoff * 2 ** (attempt - 1)
                log(f"[weights] attempt {attempt}/{retries} failed: {_describe(e)}; "
                    f"retrying in {wait:g}s")
                time.sleep(wait)
    else:
        raise DownloadError(
            f"could not download {url} after {retries} tries (last error: {_describe(last_err)}). "
            f"If this machine is offline, download the file elsewhere and place it at {dest} "
            f"(or set HF_ENDPOINT to a reachable mirror).")

    side = {"url": url, "sha256": digest, "bytes": nbytes, "downloaded_at": _now()}
    write_json(sidecar_path(dest), side)
    log(f"[weights] wrote {dest} ({nbytes} bytes, sha256 {digest})")
    return {**side, "path": str(dest), "downloaded": True}


class _Permanent(Exception):
    """An HTTP answer that retrying cannot fix (4xx other than 408/429)."""


class _Transient(Exception):
    """A server error or a truncated body: worth another try."""


# Network errors worth retrying. HTTPError is a URLError subclass but is converted before this.
_TRANSIENT = (_Transient, urllib.error.URLError, http.client.HTTPException, ConnectionError,
              socket.timeout, TimeoutError)


def _describe(e: Exception | None) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return f"{type(e).__name__}: {e.reason}"
    return f"{type(e).__name__}: {e}"


def _fetch(url: str, out: Path, timeout: float) -> tuple[str, int]:
    """Stream `url` into `out`; return (sha256, bytes). Raises _Permanent or a transient error."""
    from tqdm.auto import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # follows the hub's CDN redirects
    except urllib.error.HTTPError as e:
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f"HTTP {e.code} {e.reason} from {url}") from None
        hint = " (wrong repo id, file name or revision?)" if e.code == 404 else ""
        raise _Permanent(f"HTTP {e.code} {e.reason} for {url}{hint}") from None
    h = hashlib.sha256()
    nbytes = 0
    with resp, open(out, "wb") as f:
        total = resp.headers.get("Content-Length")
        total = int(total) if total else None
        # disable=None: a bar on a terminal, silent in Snakemake's log files.
        with tqdm(total=total, unit="B", unit_scale=True, desc=out.name, disable=None) as bar:
            while block := resp.read(CHUNK):
                f.write(block)
                h.update(block)
                nbytes += len(block)
                bar.update(len(block))
    if total is not None and nbytes != total:
        raise _Transient(f"truncated body from {url}: {nbytes} of {total} bytes")
    return h.hexdigest(), nbytes


def verify_weights(dest: str | Path) -> None:
    """Recompute `dest`'s sha256 and compare it with its sidecar; ValueError if they differ."""
    dest = Path(dest)
    if not dest.exists():
        raise FileNotFoundError(f"weights file {dest} does not exist")
    side = _read_sidecar(dest)
    if side is None or "sha256" not in side:
        raise FileNotFoundError(f"no readable checksum sidecar {sidecar_path(dest)} for {dest}")
    actual = sha256_file(dest)
    if actual != side["sha256"]:
        raise ValueError(f"weights file {dest} is corrupt: sha256 {actual} != recorded "
                         f"{side['sha256']} (from {side.get('url')}); delete it and download again")


def load_state_dict_file(path: str | Path) -> dict:
    """Tensors of a .safetensors or a torch .pth/.bin/.pt checkpoint, on the CPU.

    The file is checked first (`check_weights_file`), so a git-LFS pointer or a truncated file
    fails with WeightsFileError naming the cause, not with a loader's parse error.
    """
    import torch

    path = Path(path)
    check_weights_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    # Training checkpoints (e.g. the official DeiT ones) nest the weights under a key.
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    return sd


def load_pretrained(model_name: str, weights_path: str | Path, num_classes: int | None = None,
                    **model_kwargs):
    """Build timm `model_name` (no download) and load `weights_path` strictly; eval mode.

    The file is verified against its sidecar first when there is one. `model_kwargs` go to
    `timm.create_model` (architecture overrides must match the checkpoint).
    """
    import timm

    weights_path = Path(weights_path)
    if not weights_path.exists():
        raise FileNotFoundError(f"weights file {weights_path} does not exist")
    if sidecar_path(weights_path).exists():
        verify_weights(weights_path)
    if num_classes is not None:
        model_kwargs["num_classes"] = num_classes
    model = timm.create_model(model_name, pretrained=False, **model_kwargs)
    sd = load_state_dict_file(weights_path)

    # Check keys and shapes ourselves so the error says which file and model disagree and how.
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(sd) & set(own)) if tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
        raise ValueError(f"checkpoint {weights_path} does not fit timm model '{model_name}' "
                         f"{model_kwargs or ''}: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)
    return model.eval()


def download_hub_weights(cfg: dict, out: str) -> dict:
    """The download job of a hub profile: `model.url`, or the hub file of `model.hub_id` (default: the
    timm name's hub id), fetched once into `out` with its sha256 sidecar (`download_weights`)."""
    m = cfg["model"]
    url = m.get("url") or hub_url(m.get("hub_id") or default_hub_id(m["name"]))
    return download_weights(url, out, sha256=m.get("sha256"), retries=m.get("download_retries", 3))
