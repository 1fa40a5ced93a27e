#!/usr/bin/env bash
# Snakemake runs this in the rule's new conda env (--sdm conda), from its working directory: the repository root.
# The package is installed here, not as `-e ../` in the env file: Snakemake copies that file into .snakemake/conda/
# before `conda env create`, where a relative path would point elsewhere.
set -euo pipefail
python -m pip install --no-deps -e .
