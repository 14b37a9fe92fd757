# hhlib: one virtual environment, a few jobs.
#   make tutorial   set up, then execute the seven notebooks headless on Fashion-MNIST (copies in runs/notebooks/)
#   make test       set up, then lint (ruff) and run the tests, the notebooks in fast mode (nbval) and in a browser
#   make lab        set up, then open JupyterLab on notebooks/
#   make demo       set up, then train, evaluate, encode and search through the command line
#   make notebooks  re-execute the notebooks in place (full mode) to refresh their committed outputs

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The tested releases; override e.g. TORCH="torch torchvision" for a newer local build.
TORCH ?= torch==2.14.1 torchvision==0.29.1
FASHION_MNIST := /usr/share/datasets/fashion-mnist
DEMO := runs/fashion-mnist-cpu

.PHONY: setup data browser tutorial demo notebooks test lint lab bench clean

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

# The browser tests drive Debian's Chromium (no browser download); where it cannot be installed they skip.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "Chromium: /usr/bin/chromium"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "Chromium: not installed (apt-get install chromium as root); the browser tests will be skipped"; fi

# Notebook 02, the first that needs it, trains the CPU preset into runs/fashion-mnist-cpu/bits64 (about 13
# minutes on 2 cores); the later notebooks and a second `make tutorial` load it instead of training again.
tutorial: setup data
	$(PY) tools/notebooks.py run --out runs/notebooks

notebooks: setup data
	$(PY) tools/notebooks.py run

# --resume: reuses the model the notebooks trained (the same run folder) instead of training again.
demo: setup data
	$(PY) -m hhlib train --dataset fashion-mnist --preset cpu --bits 64 --out $(DEMO) --resume
	$(PY) -m hhlib evaluate --checkpoint $(DEMO)/bits64/checkpoint.pt
	$(PY) -m hhlib encode --checkpoint $(DEMO)/bits64/checkpoint.pt --out $(DEMO)/database.npz
	$(PY) -m hhlib search --index $(DEMO)/database.npz --query 0 -k 10

test: setup data browser lint
	$(PY) -m pytest

# ruff's lint and format checks (configured in pyproject.toml); `ruff format .` fixes the format.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lab: setup data
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) bench/bench_metrics.py
	$(PY) bench/bench_encode.py
	$(PY) bench/bench_throughput.py --preset cpu --device cpu
	$(PY) bench/bench_search.py
	$(PY) bench/bench_stream.py

clean:
	rm -rf $(VENV) .pytest_cache
