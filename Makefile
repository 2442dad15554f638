# Set-up and entry points. `make demo` and `make test` are the two commands the README gives.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel; a plain `torch` requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: setup demo test bench clean

$(BIN)/distillab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

setup: $(BIN)/distillab

demo: setup
	$(BIN)/distillab experiment=digits_kd

test: setup
	$(BIN)/pytest -q

clean:
	rm -rf outputs multirun lightning_logs .pytest_cache
