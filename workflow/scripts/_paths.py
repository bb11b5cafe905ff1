"""Make rule scripts import the library of this checkout, whether or not (or wherever) it is pip-installed.

Snakemake puts this folder on sys.path for local scripts; src/ is two levels up. It goes first on
sys.path even when it is already there: Snakemake appends the DAG process's path after site-packages,
where an editable install of another clone (a `.pth` line) would otherwise win.
"""
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
while SRC in sys.path:
    sys.path.remove(SRC)
sys.path.insert(0, SRC)
_loaded = sys.modules.get("tokred")
if _loaded is not None and not str(Path(_loaded.__file__).resolve()).startswith(SRC):
    raise ImportError(f"tokred was imported from {_loaded.__file__} before {SRC}: this job would run another "
                      "checkout's code")
