"""Make the project's library importable from rule scripts, whether or not it is pip-installed.

Snakemake puts this folder on sys.path for local scripts; src/ is two levels up.
"""
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
