# Two commands for a fresh machine: `make demo` and `make test`. Both are idempotent:
# the venv is reused while pyproject.toml is unchanged, and the data is fetched once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
ML100K := $(DATA)/ml-100k/ml-100k.inter

.PHONY: install data demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

data: $(ML100K)

$(ML100K): | $(STAMP)
	$(BIN)/fusionrank data fetch ml-100k --root $(DATA)

demo: install data
	$(BIN)/fusionrank evaluate --dataset ml-100k --model pop --model itemknn --model ease \
		--split ratio --seed 2020 --root $(DATA) --json runs/demo/metrics.json

test: install data
	FUSIONRANK_DATA=$(abspath $(DATA)) $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
