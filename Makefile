# Two entry points: `make reproduce` (notebooks -> figures -> paper) and `make test`.
# Both create .venv and install the package on first use; later runs reuse it and
# reinstall only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rmaplab-installed

.PHONY: reproduce test bench lint venv kbuild-campaign clean-venv

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

lint: $(STAMP)
	$(BIN)/ruff check rmaplab tests

clean-venv:
	rm -rf $(VENV)

# Live-kernel campaign (root, ~30 min): tinyconfig builds under perf, sh vs bash.
kbuild-campaign: $(STAMP)
	$(BIN)/rmaplab kbuild $(ARGS)
