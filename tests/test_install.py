"""The pinned install: the lock file is what is installed, and every place that names versions agrees."""
import re
import sys
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split(";")[0].split("#")[0].strip()
        if "==" in line:
            name, ver = line.split("==", 1)
            out[_canon(name)] = ver.strip()
    return out


LOCK = _pins((ROOT / "requirements" / "lock.txt").read_text().splitlines())


def test_environment_yml_pins_match_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = _pins(pip)
    assert pins, "environment.yml pins no pip packages"
    wrong = {n: (v, LOCK.get(n)) for n, v in pins.items() if LOCK.get(n) != v}
    assert not wrong, f"environment.yml vs requirements/lock.txt: {wrong}"


def test_every_direct_dependency_is_locked():
    import tomllib

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = proj["dependencies"] + [d for extra in proj["optional-dependencies"].values() for d in extra]
    names = {_canon(re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0]) for d in deps}
    assert names - set(LOCK) == set()


def test_installed_versions_are_the_locked_ones():
    """The environment running the tests (made by `make install`) holds the lock's versions; a local
    `+cpu`-style label (TORCH=cpu install) is the same release."""
    from packaging.markers import Marker

    wrong = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        if line.startswith("#") or "==" not in line:
            continue
        spec, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue  # a line for another platform
        name, ver = (s.strip() for s in spec.split("=="))
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            got = None
        if got is None or got.split("+")[0] != ver:
            wrong[name] = (got, ver)
    assert not wrong, f"installed vs requirements/lock.txt: {wrong}"


def test_python_requirement_is_truthful():
    import tomllib

    req = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    smk = metadata.metadata("snakemake").get("Requires-Python")
    assert req.replace(" ", "") == smk.replace(" ", ""), (req, smk)
    assert sys.version_info >= (3, 11)
