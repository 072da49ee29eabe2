# Two commands a newcomer needs: `make demo` and `make test`. Each installs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch lies on this machine's disk; pinning it first keeps pip from
# resolving a multi-GB CUDA build for the `torch` dependency.
TORCH_PIN ?= torch==2.13.0

.PHONY: install test demo lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

demo: $(STAMP)
	$(BIN)/fdrd build --split all --out demo-out/fdrd --overwrite
	$(BIN)/fdrd info demo-out/fdrd

lint: $(STAMP)
	$(BIN)/ruff check fdrd builders benchmark tests perf

clean:
	rm -rf $(VENV) demo-out .pytest_cache
