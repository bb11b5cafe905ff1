"""Nothing stale, every number traceable: in a second checkout that shares this test's Python
environment (whose editable install, if any, points elsewhere), a job imports that checkout's library
and records its commit; editing a library module makes `snakemake -n` list exactly the jobs whose code
can change (a per-rule hash of the script's import closure, tokred.codeversion)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["results/micro/data/eval_set.pt", "results/micro/weights/model.pt"]


def _smk(clone: Path, *args):
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/micro.yaml",
                        *args, "--", *TARGETS], cwd=clone, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout + p.stderr


def _planned(out: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):", out, re.M))


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A copy of this working tree, committed as its own git repository, with the micro config's
    cheap first two jobs (eval set, 12 training steps) run in it."""
    dst = tmp_path_factory.mktemp("clone") / "repo"
    skip = {".venv", "results", ".snakemake", ".git", ".pytest_cache", "__pycache__", "paper"}
    shutil.copytree(ROOT, dst, ignore=lambda d, names: [n for n in names if n in skip or n.endswith(".egg-info")])
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run(["git", *cmd], cwd=dst, check=True, env=env, capture_output=True)
    _smk(dst)
    return dst


def test_jobs_import_their_own_checkout_and_record_its_commit(clone):
    import torch

    ckpt = torch.load(clone / "results/micro/weights/model.pt", map_location="cpu", weights_only=False)
    code = ckpt["provenance"]["code"]
    assert Path(code["library"]).resolve() == (clone / "src" / "tokred").resolve()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    assert code["git_commit"] == head and code["git_dirty"] is False
    assert re.fullmatch(r"[0-9a-f]{12}", code["library_hash"])


def _edited(clone: Path, rel: str):
    path = clone / "src" / "tokred" / rel
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        return _planned(_smk(clone, "-n"))
    finally:
        path.write_text(original)


def test_nothing_to_do_when_nothing_changed(clone):
    assert _planned(_smk(clone, "-n")) == set()


@pytest.mark.parametrize("module, rules", [
    ("data/train.py", {"train_embedded"}),          # training code: retrain, the eval set stands
    ("data/synthetic.py", {"train_embedded", "eval_set"}),
    ("models.py", {"train_embedded", "eval_set"}),  # normalisation constants shape both
    ("merge.py", set()),                            # neither job can run merging code
    ("report/tables.py", set()),
])
def test_a_library_edit_reruns_exactly_the_jobs_that_can_change(clone, module, rules):
    assert _edited(clone, module) == rules
