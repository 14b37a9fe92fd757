# hhlib: one virtual environment, three jobs.
#   make tutorial   set up, then train the CPU preset on Fashion-MNIST, evaluate it and search with it
#   make test       set up, then run the tests
#   make lab        set up, then open JupyterLab on notebooks/

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The tested releases; override e.g. TORCH="torch torchvision" for a newer local build.
TORCH ?= torch==2.14.1 torchvision==0.29.1
FASHION_MNIST := /usr/share/datasets/fashion-mnist
TUTORIAL := runs/tutorial

.PHONY: setup data tutorial test lab bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[notebooks,test]"
	touch $@

# Fashion-MNIST ships in Debian as dataset-fashion-mnist (offline, 30 MB). Elsewhere
# hhlib.data falls back to torchvision's download.
data:
	@if [ -d $(FASHION_MNIST) ]; then echo "Fashion-MNIST: $(FASHION_MNIST)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST: not installed system-wide; hhlib will download it (or see data/README.md)"; fi

# --resume: a second `make tutorial` reuses the trained model instead of training again.
tutorial: setup data
	$(PY) -m hhlib train --dataset fashion-mnist --preset cpu --bits 64 --out $(TUTORIAL) --resume
	$(PY) -m hhlib evaluate --checkpoint $(TUTORIAL)/bits64/checkpoint.pt
	$(PY) -m hhlib encode --checkpoint $(TUTORIAL)/bits64/checkpoint.pt --out $(TUTORIAL)/database.npz
	$(PY) -m hhlib search --index $(TUTORIAL)/database.npz --query 0 -k 10

test: setup data
	$(PY) -m pytest

lab: setup data
	mkdir -p notebooks
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) bench/bench_metrics.py

clean:
	rm -rf $(VENV) .pytest_cache
