#!/usr/bin/env bash
# Snakemake runs this in the rule's new conda env (--sdm conda), from its working directory: the repository root.
# The package is installed here, not as `-e ../` in the env file: Snakemake copies that file into .snakemake/conda/
# before `conda env create`, where a relative path would point elsewhere.
set -euo pipefail
python -m pip install --no-deps -e .
# DeepSpeed (train.deepspeed, config/deepspeed/zero3.json) ships as a source package whose build imports torch: built
# against the env's torch 2.13.0 (pip checked that the two resolve together), ops compiled at first use.
python -m pip install --no-build-isolation deepspeed==0.19.8
