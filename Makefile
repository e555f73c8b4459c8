# Two commands matter: `make demo` (the main job) and `make test` (what CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q
NOTEBOOK_TIMEOUT ?= 900

.PHONY: setup setup-dev demo test test-all bench lint strip hosted clean-demo

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

## Main job: demo twin + every notebook executed with the demo profile into runs/executed/.
demo: setup
	FACES_PROFILE=demo $(PY) -m helpers.nbrun notebooks --out runs/executed --timeout $(NOTEBOOK_TIMEOUT)

## Unit tests + every notebook executed on the demo twin.
test: setup-dev
	FACES_PROFILE=demo $(PY) -m pytest

## The same plus the slow tests (forward/backward of the largest timm backbones).
test-all: setup-dev
	FACES_PROFILE=demo $(PY) -m pytest --runslow

## Loader alone, end to end on real JPEGs, engine vs plain loops; ends with one SUMMARY line (~11 min on 2 cores).
bench: setup-dev
	$(PY) bench/bench_loader.py
	$(PY) bench/bench_end_to_end.py
	$(PY) bench/bench.py

lint: setup-dev
	$(PY) -m ruff check helpers tests bench

## Remove outputs from the notebooks before committing.
strip: setup-dev
	$(VENV)/bin/nbstripout notebooks/*.ipynb

## Point every notebook's setup cell (and pyproject.toml) at your copy: make hosted URL=https://github.com/you/repo.git
hosted: setup
	$(PY) -m helpers.setup_cell --url $(URL)

clean-demo:
	rm -rf data/demo runs/executed
