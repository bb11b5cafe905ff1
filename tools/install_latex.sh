#!/usr/bin/env bash
# Install the offline LaTeX toolchain the paper rule needs (Debian/Ubuntu), if it is missing.
# As root it installs with apt-get; otherwise it says what to install and fails.
set -euo pipefail
PKGS="latexmk texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-science lmodern poppler-utils"

have_all() {
  command -v latexmk >/dev/null && command -v pdflatex >/dev/null && command -v pdftotext >/dev/null &&
    kpsewhich lmodern.sty >/dev/null 2>&1 && kpsewhich booktabs.sty >/dev/null 2>&1
}

if have_all; then
  echo "LaTeX toolchain present."
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing LaTeX (about 150 MB download, ~2 min): $PKGS"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $PKGS
  have_all || { echo "LaTeX install finished but a tool is still missing." >&2; exit 1; }
else
  echo "The paper build needs LaTeX. Install these Debian/Ubuntu packages (as root):" >&2
  echo "  apt-get install $PKGS" >&2
  echo "or the equivalent TeX Live packages (latexmk, pdflatex, booktabs, lmodern, pdftotext)." >&2
  exit 1
fi
