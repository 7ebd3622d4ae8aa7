# Two entry points: `make reproduce` (notebooks -> figures -> paper) and `make test`.
# Both create .venv and install the package on first use; later runs reuse it and
# reinstall only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rmaplab-installed

.PHONY: reproduce test bench lint lab venv kbuild-campaign searches clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

reproduce: $(STAMP)
	$(BIN)/rmaplab reproduce $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m rmaplab.bench $(ARGS)

# JupyterLab on notebooks/.  The stored notebooks ARE the study: saving one replaces
# the outputs nbval compares in `make test`.  To experiment, save a copy under another
# name, or run `rmaplab reproduce --output-dir DIR` (README: Reproducing and testing).
lab: $(STAMP)
	@echo "note: saving a notebook here changes what nbval compares (make test); experiment on a copy or with rmaplab reproduce --output-dir DIR"
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check rmaplab tests examples

clean-venv:
	rm -rf $(VENV)

# Live-kernel campaign (root, ~30 min): tinyconfig builds under perf, sh vs bash.
kbuild-campaign: $(STAMP)
	$(BIN)/rmaplab kbuild $(ARGS)

# Invariant searches behind notebook 02 (~10 min): regenerates data/traces/.
SEARCH = $(BIN)/rmaplab search --summary data/traces/search-summary.json
searches: $(STAMP)
	$(SEARCH) --policy v5.4 -o data/traces/search-v5.4-same-chain.jsonl
	$(SEARCH) --policy v5.4 --invariant page-mapping-freed --with-writes \
	  --prefix data/traces/search-v5.4-same-chain.jsonl --drop-last 1 --budget 30000 \
	  -o data/traces/search-v5.4-uaf.jsonl
	$(SEARCH) --policy v5.5 -o data/traces/search-v5.5-same-chain.jsonl
	$(SEARCH) --policy wei-intended -o data/traces/search-wei-intended-same-chain.jsonl
	$(SEARCH) --policy v6.0 -o data/traces/search-v6.0-same-chain.jsonl || true
	$(SEARCH) --policy no-reuse -o data/traces/search-no-reuse-same-chain.jsonl || true
	$(SEARCH) --policy v6.0 --invariant page-mapping-freed --with-writes \
	  --prefix data/traces/search-v5.4-same-chain.jsonl --drop-last 1 --budget 30000 \
	  -o data/traces/search-v6.0-uaf.jsonl || true
