#!/usr/bin/env bash
# Re-resolve requirements/lock.txt (the pinned install) from pyproject.toml with uv, for every platform
# (markers) and Python >= 3.11. Run by `make lock`; commit the result.
set -euo pipefail
VENV=${1:-.venv}
"$VENV/bin/python" -m pip install -q uv
{
  echo "# The pinned install: what \`make install\` puts into .venv (Linux x86_64 / aarch64 / macOS, Python >= 3.11)."
  echo "# Regenerate with \`make lock\` (uv pip compile of pyproject.toml's dependencies and extras pipeline, test)."
  "$VENV/bin/uv" pip compile pyproject.toml --extra pipeline --extra test --universal --python-version 3.11 \
    --no-header --no-annotate --upgrade "${@:2}"
} > requirements/lock.txt.new
mv requirements/lock.txt.new requirements/lock.txt
echo "requirements/lock.txt: $(grep -vc '^#' requirements/lock.txt) pinned packages"
