# Two commands for a fresh machine: `make demo` and `make test`. Both are idempotent:
# the venv is reused while pyproject.toml is unchanged, and the data is fetched once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
ML100K := $(DATA)/ml-100k/ml-100k.inter

.PHONY: install data demo test test-slow slow lint clean recbole-venv rectools-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

data: $(ML100K)

$(ML100K): | $(STAMP)
	$(BIN)/fusionrank data fetch ml-100k --root $(DATA)

demo: install data
	FUSIONRANK_DATA=$(abspath $(DATA)) $(BIN)/fusionrank run configs/ml100k.yaml

test: install data
	FUSIONRANK_DATA=$(abspath $(DATA)) $(BIN)/python -m pytest -q

# The slow tests: the kill -9 matrix of run/train at every stage, and a headless-Chromium
# screenshot of the run report (skipped without chromium).
test-slow: install data
	FUSIONRANK_DATA=$(abspath $(DATA)) $(BIN)/python -m pytest -q -m slow

slow: test-slow

lint: install
	$(BIN)/ruff check src tests benchmarks notebooks/make_notebooks.py
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs

# The peer: RecBole 1.2.1 in a venv of its own (old pins; kept apart from ours).
RECBOLE_VENV := benchmarks/.recbole-venv
recbole-venv: $(RECBOLE_VENV)/.installed

$(RECBOLE_VENV)/.installed:
	test -x $(RECBOLE_VENV)/bin/python || $(PYTHON) -m venv $(RECBOLE_VENV)
	$(RECBOLE_VENV)/bin/pip install --quiet torch==2.13.0
	$(RECBOLE_VENV)/bin/pip install --quiet recbole==1.2.1 "setuptools<81" numpy==1.26.4 \
		pandas==2.2.3 scipy==1.11.4 scikit-learn==1.5.2
	touch $@

# The peer: RecTools 0.19.0 (its two-stage CandidateRankingModel) in a venv of its own. ItemKNN
# comes from pm-implicit (RecTools' dependency on Python >= 3.10); LightGBM and CatBoost are
# the tutorial's rerankers, ir-measures (pytrec_eval) the independent NDCG cross-check. No torch.
RECTOOLS_VENV := benchmarks/.rectools-venv
rectools-venv: $(RECTOOLS_VENV)/.installed

$(RECTOOLS_VENV)/.installed:
	test -x $(RECTOOLS_VENV)/bin/python || $(PYTHON) -m venv $(RECTOOLS_VENV)
	$(RECTOOLS_VENV)/bin/pip install --quiet rectools==0.19.0 pm-implicit==0.7.3 numpy==1.26.4 \
		pandas==2.3.3 scipy==1.17.1 lightgbm==4.7.0 catboost==1.2.10 ir-measures==0.4.3 \
		pytrec-eval-terrier==0.5.11 pyarrow==21.0.0 scikit-learn==1.9.1
	touch $@
