"""Job plumbing: atomic file output, job logs and threads, and run provenance.

Every artefact the pipeline writes goes through `atomic_path`: the data is written to a temporary
file beside the target and renamed into place, so an interrupted job never leaves a file that a
later job could read as complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def logged(log_path: str | None):
    """Send stdout/stderr of a job to its Snakemake log file (and keep tracebacks there)."""
    if not log_path:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc()
            raise


def set_threads(n: int) -> None:
    """torch's intra-op threads for this job: `n`, at most the machine's CPUs."""
    import torch

    torch.set_num_threads(max(1, min(int(n), os.cpu_count() or 1)))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def copy_run(run: dict, same_as: str, *, metrics_path: str, logits_path: str, out_metrics: str,
             out_logits: str) -> dict:
    """The files of a run whose evaluation is the same computation as an evaluated one, `same_as`
    ("<group>/<run>"; `tokred.study.config.duplicate_runs`): its logits copied, its metrics JSON the other's
    with this run's name and group and `same_as`. Both written atomically; no torch needed."""
    import shutil

    result = json.loads(Path(metrics_path).read_text())
    result.update(run=run["name"], group=run["group"], same_as=same_as)
    with atomic_path(out_logits) as tmp:
        shutil.copyfile(logits_path, tmp)
    write_json(out_metrics, result)
    return result


def load_eval_set(path: str) -> dict:
    """The eval set written by `build_eval_set`, memory-mapped: {"images", "labels", "mean", "std",
    "preprocess"} ("preprocess": the hub model's data config, None for the embedded model; absent in
    sets written before it was recorded)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def config_hash(cfg: Any) -> str:
    """Stable short hash of a JSON-able config (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux; platform's answer elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(cfg: Any = None, device: str | None = None) -> dict:
    """Versions, host and device a result was produced with, the hash of its config, and the code it ran
    (`code`: library path and hash, git commit and dirty flag; see `tokred.codeversion.code_version`)."""
    import numpy
    import timm
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from .codeversion import code_version

    dev_name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else cpu_model()
    return {
        "config_hash": config_hash(cfg) if cfg is not None else None,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "device": device,
        "device_name": dev_name,
        "num_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
        "code": code_version(),
    }
