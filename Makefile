# Two commands for a newcomer: `make demo` (the whole tiny study on CPU) and `make test`.
PY      := .venv/bin/python
CORES   ?= 2
export PATH := $(CURDIR)/.venv/bin:$(PATH)   # rules call the package's `videoktr` command
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install clean

.venv/installed: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: .venv/installed

demo: install
	.venv/bin/snakemake --cores $(CORES) all
	@echo "Tables:  results/tiny/tables/"
	@echo "Models:  results/tiny/models/   Evaluations: results/tiny/eval/"

test: install
	$(PY) -m pytest -q

clean:
	rm -rf results .snakemake
