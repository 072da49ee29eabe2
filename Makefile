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

# The whole job on the embedded default: build, pretrain (cached), benchmark the five methods on their own
# recipes with one seed, then the leaderboard (printed, and written as HTML among other formats).
DEMO ?= demo-out
DEMO_METHODS ?= zeroshot coop clip_adapter maple dcar

demo: $(STAMP)
	@echo "== demo 1/4: build the embedded synthetic FDRD into $(DEMO)/fdrd"
	$(BIN)/fdrd build --split all --out $(DEMO)/fdrd --overwrite
	@echo "== demo 2/4: pretrain the tiny CLIP (reused from ~/.cache/fdrd when this build was seen before)"
	$(BIN)/fdrd pretrain --data $(DEMO)/fdrd --out $(DEMO)/tiny-clip --overwrite
	@echo "== demo 3/4: benchmark $(DEMO_METHODS) (seed 1, each method's own recipe)"
	@for method in $(DEMO_METHODS); do \
		echo "-- fdrd bench $$method"; \
		$(BIN)/fdrd bench $$method --data $(DEMO)/fdrd --model $(DEMO)/tiny-clip --seeds 1 --out $(DEMO)/runs || exit 1; \
	done
	@echo "== demo 4/4: leaderboard"
	$(BIN)/fdrd leaderboard $(DEMO)/runs --out $(DEMO)/leaderboard
	@echo "The HTML leaderboard (sortable table and plots) is $(DEMO)/leaderboard/leaderboard.html"

lint: $(STAMP)
	$(BIN)/ruff check fdrd builders benchmark tests perf

clean:
	rm -rf $(VENV) demo-out .pytest_cache
