# `make test` and `make demo` build their own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WHEELS := ../shared/wheels
STAMP := $(VENV)/.installed

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	# torch-scatter / torch-sparse: prebuilt wheels when present, else the
	# sdist (compiled against the torch above, ~25 minutes).
	$(BIN)/pip install -q --no-build-isolation --find-links $(WHEELS) \
		torch-scatter torch-sparse
	$(BIN)/pip install -q -e '.[full]'
	touch $@

test: install
	$(BIN)/python -m pytest tests -q

# COIN (the authors' recipe at width 64, unsearched) against GCN and APPNP on
# Cora's public split, 10 seeds of each model trained in one pass, with a
# verdict per baseline (paired bootstrap over the test nodes); results in
# runs/ (git-ignored). Without the data folder: examples/coin.py on its
# embedded synthetic graph.
DATA ?= $(or $(TORCH_GEOMETRIC_COIN_DATASETS),../shared/datasets)
demo: install
	@if [ -d "$(DATA)/planetoid/Cora/raw" ]; then \
		$(BIN)/python benchmarks/planetoid.py --protocol public \
			--datasets Cora --models COIN GCN APPNP --seeds 10 \
			--threads 2 --root "$(DATA)"; \
	else \
		echo "No $(DATA)/planetoid/Cora: running examples/coin.py"; \
		$(BIN)/python examples/coin.py --epochs 100; \
	fi

clean:
	rm -rf $(VENV)
