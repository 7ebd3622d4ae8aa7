# Two entry points: `make reproduce` (notebooks -> figures -> paper) and `make test`.
# Both create .venv and install the package on first use; later runs reuse it and
# reinstall only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rmaplab-installed
# The compiled model (README: the fast path), built under build/fast/<python tag>/ (outside
# the package: no checkout imports it unless its sources are the ones it was built from);
# rebuilt when a model source changes (the same files its staleness hash covers).
FAST_TAG := $(shell $$(test -x $(BIN)/python && echo $(BIN)/python || echo $(PYTHON)) \
              -c 'import sys; print(sys.implementation.cache_tag)')
FAST   := build/fast/$(FAST_TAG)/manifest.json
MODEL  := $(wildcard rmaplab/model/*.py)

.PHONY: reproduce test bench lint lab venv kbuild-campaign ceiling-campaign cost-campaign \
        searches search-seeds steered-seeds clean-venv

venv: $(STAMP) $(FAST)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

# mypyc compiles the model's hot modules into build/fast/ (a minute or two).  Without a C
# compiler or Python's headers it warns and the interpreted model runs (same results);
# under RMAPLAB_REQUIRE_FAST=1 (CI) it fails instead.
$(FAST): $(STAMP) $(MODEL)
	$(BIN)/python -m rmaplab.model build

reproduce: $(STAMP) $(FAST)
	$(BIN)/rmaplab reproduce $(ARGS)

test: $(STAMP) $(FAST)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) $(FAST)
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
	rm -rf $(VENV) build/fast build/mypyc rmaplab/model/*.so rmaplab/model/_fast_build.json \
	  build/ops.txt build/rmaplab

# Live-kernel campaigns (root, quiet machine; rerunning resumes an interrupted one).
# kbuild (~50 min): tinyconfig builds, sh vs bash, under perf stat and uninstrumented.
kbuild-campaign: $(STAMP)
	$(BIN)/rmaplab kbuild $(ARGS)

# ceiling (~60 min): the in-vivo ceiling (brackets, sampling, locks) and its validation.
ceiling-campaign: $(STAMP)
	$(BIN)/rmaplab ceiling $(ARGS)

# cost (~5 min): anon_vma and anon_vma_chain priced separately; teardown contention.
cost-campaign: $(STAMP)
	$(BIN)/rmaplab forkcost $(ARGS)

# Invariant searches behind notebook 02 (~22 min on 2 cores, 2026-12-03): regenerates data/traces/.
# Steered (Hypothesis + danger target; the page-mapping-freed searches continue the v5.4
# finding minus its last event), then unsteered (uniform random programs, no prefix).
T      = data/traces
SEARCH = $(BIN)/rmaplab search --summary $(T)/search-summary.json
UAF    = --invariant page-mapping-freed --with-writes --budget 30000 \
         --prefix $(T)/search-v5.4-same-chain.jsonl --drop-last 1
ALL_POLICIES = no-reuse v5.4 v5.5 wei-intended v6.0 v6.0+4e4a9eb v6.0+wei-intended
searches: $(STAMP) $(FAST)
	$(SEARCH) --policy v5.4 -o $(T)/search-v5.4-same-chain.jsonl
	$(SEARCH) --policy v5.4 $(UAF) -o $(T)/search-v5.4-uaf.jsonl
	$(SEARCH) --policy v5.5 -o $(T)/search-v5.5-same-chain.jsonl
	$(SEARCH) --policy wei-intended -o $(T)/search-wei-intended-same-chain.jsonl
	for p in v6.0 no-reuse v6.0+4e4a9eb v6.0+wei-intended; do \
	  $(SEARCH) --policy $$p -o $(T)/search-$$p-same-chain.jsonl || true; done
	for p in v5.5 wei-intended v6.0 no-reuse v6.0+4e4a9eb v6.0+wei-intended; do \
	  $(SEARCH) --policy $$p $(UAF) -o $(T)/search-$$p-uaf.jsonl || true; done
	for p in $(ALL_POLICIES); do \
	  for i in same-anon_vma-same-chain page-mapping-freed; do \
	    $(SEARCH) --policy $$p --invariant $$i --unsteered --budget 100000 \
	      -o $(T)/unsteered-$$p-$$i.jsonl || true; done; done
	$(MAKE) search-seeds
	$(MAKE) steered-seeds

# The unsteered same-chain search over seeds 0-19, every program run (~20 min on 2 cores):
# which programs break each policy, and how soon, as 20 draws rather than one count (notebook 02).
SEEDS         = 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19
SEED_POLICIES = v5.4 v5.5 wei-intended v6.0+4e4a9eb v6.0+wei-intended
search-seeds: $(STAMP) $(FAST)
	for p in $(SEED_POLICIES); do for s in $(SEEDS); do \
	  $(BIN)/rmaplab search --summary $(T)/unsteered-seeds.json --policy $$p --unsteered --violators \
	    --seed $$s --budget 100000 || true; done; done

# The steered same-chain search, one Hypothesis seed at a time (5000 examples, the
# search's examples per seed), seeds 0-9, two searches side by side (--summary is
# written under a lock): how often a seed of the steered search breaks each policy,
# rather than the one count of a search that runs seeds in turn (notebook 02).
STEERED_SEEDS = 0 1 2 3 4 5 6 7 8 9
steered-seeds: $(STAMP) $(FAST)
	for p in $(SEED_POLICIES); do for s in $(STEERED_SEEDS); do echo "$$p $$s"; done; done | \
	  xargs -P 2 -L 1 sh -c '$(BIN)/rmaplab search --summary $(T)/steered-seeds.json \
	    --policy "$$0" --seed "$$1" --budget 5000 --jobs 1 || true'
