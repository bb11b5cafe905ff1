"""The package's structure, drawn from its imports (tokred.codeversion reads them with ast): every
import resolves (function-level relative imports too, which only fail when that code runs), no import
cycles between modules, sub-packages never import upwards into the pipeline layers, and the modules
the Snakefile loads while building the DAG stay free of torch."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tokred import codeversion

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "tokred"
MODULES = sorted(PKG.rglob("*.py"))
# Layers, lowest first: a module may import its own layer and those below, never one above.
LAYERS = {"core": 0, "data": 1, "study": 2, "report": 3}


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _relative_targets(path: Path):
    """(line, dotted target) of every relative import in the file, at any depth."""
    pkg = _name(path).split(".") if path.name == "__init__.py" else _name(path).split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                yield node.lineno, mod, a.name


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_every_relative_import_resolves(path):
    bad = []
    for line, mod, name in _relative_targets(path):
        target = codeversion._module_file(mod, SRC)
        if target is None:
            bad.append(f"line {line}: {mod}")
            continue
        sub = codeversion._module_file(f"{mod}.{name}", SRC)
        defined = {n.name for n in ast.parse(target.read_text()).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assigned = {t.id for n in ast.parse(target.read_text()).body if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        imported = {a.asname or a.name for n in ast.parse(target.read_text()).body
                    if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        if sub is None and name not in defined | assigned | imported | set(codeversion._lazy_names(ast.parse(target.read_text()))):
            bad.append(f"line {line}: {name} from {mod}")
    assert not bad, bad


def _graph():
    return {_name(p): {n for n in codeversion._imports(p.resolve(), SRC.resolve()) if n != _name(p)} for p in MODULES}


def test_no_import_cycles():
    graph = _graph()
    # Package __init__ files are imported implicitly by their children; only module -> module edges count.
    edges = {m: {n for n in deps if not (m.startswith(n + "."))} for m, deps in graph.items()}
    state, cycle = {}, []

    def visit(m, stack):
        state[m] = 1
        for n in edges.get(m, ()):
            if state.get(n) == 1:
                cycle.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [m])
    assert not cycle, cycle


def test_no_upward_imports():
    up = [(m, n) for m, deps in _graph().items() for n in deps
          if not m.startswith(n + ".") and _layer(n) > _layer(m)]
    assert not up, up


def test_dag_build_imports_no_torch():
    code = ("import sys; sys.path.insert(0, 'src'); import tokred.study.config, tokred.codeversion; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_long_modules_say_why(path):
    """Small focused modules; one over ~300 lines states in its docstring why it stays whole."""
    if len(path.read_text().splitlines()) > 320:
        assert "over 300 lines" in (ast.get_docstring(ast.parse(path.read_text())) or ""), path


def test_no_comment_points_outside_the_repository():
    """Comments and docstrings cite docs/method.md, files in the repository or papers."""
    import re

    bad = []
    for path in [*MODULES, *ROOT.glob("rules/*.smk"), ROOT / "Snakefile", *ROOT.glob("config/*.yaml")]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bSPEC(\.md)?\b|\bDESIGN(\.md)?\b|\bthe summary\b|\bsummary §|\bseed §", line):
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, bad
