# Two commands for a fresh machine:
#   make paper   install everything, then run the embedded default to the PDF
#   make test    install everything, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 8

.PHONY: install latex paper test dry-run clean

install: $(VENV)/.installed latex

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[pipeline,test]"
	touch $@

latex:
	tools/install_latex.sh

paper: install
	$(VENV)/bin/snakemake --cores $(CORES)
	@echo "PDF: results/embedded/paper/paper.pdf"

test: install
	$(PY) -m pytest -q

dry-run: $(VENV)/.installed
	$(VENV)/bin/snakemake -n --cores $(CORES)

clean:
	rm -rf results/embedded results/micro .snakemake
