#!/usr/bin/env bash
# Create the project's virtual environment at $1 with python3 (>= 3.11: Snakemake 9 needs it).
# Debian/Ubuntu ship venv support separately (python3-venv): as root it is installed when missing.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "tokred needs Python >= 3.11 (Snakemake 9); $PYTHON is $("$PYTHON" -V 2>&1). Set PYTHON=python3.11 (or newer)." >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] && exit 0
if ! "$PYTHON" -m venv "$VENV" 2>/tmp/tokred-venv.err; then
  rm -rf "$VENV"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    echo "python3 -m venv failed; installing Debian's venv support (python3-venv / python$ver-venv)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q python3-venv || apt-get install -y -q "python$ver-venv"
    "$PYTHON" -m venv "$VENV"
  else
    cat /tmp/tokred-venv.err >&2
    echo "Cannot create a virtual environment: install python3-venv (Debian/Ubuntu, as root) and rerun." >&2
    exit 1
  fi
fi
