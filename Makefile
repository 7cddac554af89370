# quakeshap: `make` runs the demo pipeline, `make test` runs the test suite.
# Both set up .venv from requirements.txt first when it is missing or out of date.

SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
# stage commands in dvc.yaml call `python`: make them find the project's environment
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all repro test lint study controls bench bench-study release clean-venv

all: repro

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

## the whole pipeline on the bundled demo data (no network)
repro: $(STAMP)
	dvc repro

## lint, format check and the whole test suite (slow end-to-end tests included), on two
## pytest-xdist workers, each test file on one worker (module fixtures are built once)
test: $(STAMP)
	ruff check .
	ruff format --check .
	pytest -n 2 --dist loadfile

lint: $(STAMP)
	ruff check --fix .
	ruff format .

## the study's configuration as a named DVC experiment (downloads the real data);
## extra flags for `dvc exp run` in STUDY_FLAGS, e.g. make study STUDY_FLAGS=--queue
study: $(STAMP)
	args="$$(python -m quakeshap.profiles profiles/study.yaml)" && \
	eval "dvc exp run -n study $(STUDY_FLAGS) $$args"

## the study's controls (profiles/controls/) as named DVC experiments control-<name>, one at a
## time; a subset with CONTROLS="lowpass_10hz matched", on the study with
## CONTROLS_BASE=profiles/study.yaml, flags such as --replace in CONTROLS_FLAGS
controls: $(STAMP)
	python -m quakeshap.controls run $(CONTROLS) $(if $(CONTROLS_BASE),--base $(CONTROLS_BASE)) $(CONTROLS_FLAGS)

## benchmarks against the study's implementation; results in benchmarks/results/
bench: $(STAMP)
	python -m benchmarks.run_all

## the study's workload offline (profiles/study_workload.yaml: demo data of the study's size),
## `dvc repro` in a scratch copy timed per stage; not in `make bench` (far longer); flags
## in BENCH_STUDY_FLAGS, e.g. make bench-study BENCH_STUDY_FLAGS="--device cuda"
bench-study: $(STAMP)
	python -m benchmarks.bench_study $(BENCH_STUDY_FLAGS)

## push the current outputs (model, SHAP maps, ...) to the default DVC remote; refuses
## outputs that differ from dvc.lock (tagging: README, "Working with DVC" → Releases)
release: $(STAMP)
	@dvc status --quiet || { echo "error: outputs differ from dvc.lock: run dvc repro and commit dvc.lock before a release" >&2; exit 1; }
	dvc push

clean-venv:
	rm -rf $(VENV)
