"""Which code produced a result: per-job library hashes for Snakemake, and the checkout's version.

Snakemake's `code` rerun trigger covers only a rule's thin script, not the library it calls. Each rule
therefore passes `script_code_hash(script)` as a param: a hash of the script and of every `tokred`
module it can import (its import closure, read from the sources with `ast`, nothing imported, so the
DAG build stays light). Editing a module changes the hash of exactly the rules whose closure holds it,
and Snakemake's `params` trigger reruns those jobs (and, through their outputs, what depends on them).
Imports inside functions count too: the closure is the set of modules a job may run, a superset of
those it does run.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import subprocess
from pathlib import Path

PACKAGE = "tokred"
SRC = Path(__file__).resolve().parents[1]  # the folder holding the package: src/


def _module_file(name: str, src: Path) -> Path | None:
    """src/a/b.py or src/a/b/__init__.py for the dotted name a.b; None when it is not a module here."""
    base = src.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _lazy_names(tree: ast.Module) -> dict[str, str]:
    """The package's `_LAZY = {"name": "submodule"}` table (attributes loaded on first access)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


@functools.lru_cache(maxsize=None)
def _imports(path: Path, src: Path) -> frozenset[str]:
    """Dotted names of the package's modules that the file at `path` imports (anywhere in it)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    try:
        rel = path.relative_to(src)
        here = list(rel.parent.parts)  # the importing module's package, for relative imports
    except ValueError:
        here = []
    found: set[str] = set()

    def add(name: str, names: list[str]) -> None:
        if not (name == PACKAGE or name.startswith(PACKAGE + ".")):
            return
        found.add(name)
        mod = _module_file(name, src)
        lazy = _lazy_names(ast.parse(mod.read_text())) if mod and mod.name == "__init__.py" else {}
        for n in names:  # `from pkg import sub` imports a submodule; a lazy attribute loads its module
            if _module_file(f"{name}.{n}", src):
                found.add(f"{name}.{n}")
            elif n in lazy:
                found.add(f"{name}.{lazy[n]}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name, [])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            add(name, [a.name for a in node.names])
    # Importing a.b.c runs a/__init__ and a/b/__init__ first.
    for name in list(found):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return frozenset(found)


def import_closure(path: str | Path, src: str | Path = SRC) -> list[Path]:
    """Files of every package module reachable by imports from the file at `path`, sorted.

    Raises FileNotFoundError if `path` does not exist."""
    src = Path(src).resolve()
    todo, seen = [Path(path).resolve()], set()
    files: set[Path] = set()
    while todo:
        f = todo.pop()
        for name in _imports(f, src):
            if name in seen:
                continue
            seen.add(name)
            mod = _module_file(name, src)
            if mod is not None:
                files.add(mod)
                todo.append(mod)
    return sorted(files)


def script_code_hash(script: str | Path, src: str | Path = SRC) -> str:
    """12-hex hash of a rule script and its import closure in the package (paths and contents)."""
    src = Path(src).resolve()
    h = hashlib.sha256()
    for f in [Path(script).resolve(), *import_closure(script, src)]:
        rel = f.relative_to(src) if f.is_relative_to(src) else Path(f.name)
        h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def library_hash(src: str | Path = SRC) -> str:
    """12-hex hash of every .py file of the package (paths and contents)."""
    src = Path(src).resolve()
    h = hashlib.sha256()
    for f in sorted((src / PACKAGE).rglob("*.py")):
        h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def code_version(src: str | Path = SRC) -> dict:
    """The code a result came from: the library's location and hash, and the git commit of its checkout
    with a dirty flag (uncommitted changes to tracked files); commit None outside a git checkout."""
    src = Path(src).resolve()
    out = {"library": str(src / PACKAGE), "library_hash": library_hash(src), "git_commit": None, "git_dirty": None}
    try:
        git = ["git", "-C", str(src)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, timeout=10)
            out["git_commit"] = commit.stdout.strip()
            out["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out
