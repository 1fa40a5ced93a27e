#!/usr/bin/env bash
# Runs `videoktr SUBCOMMAND ARGS...` on every GPU of the job it is in: the one launcher a rule calls.
#
#   scripts/launch.sh train --cfg ... --name ktr ...
#
#   * inside a SLURM job with more than one node (profiles/slurm `train`: nodes 4, tasks 4, mpi): one torchrun per
#     node through `srun --ntasks-per-node=1`, c10d rendezvous on the job's first node;
#   * one node with G > 1 GPUs: `torchrun --standalone --nproc-per-node G`;
#   * otherwise (one GPU, or CPU as in the tiny world): plain `videoktr`.
#
# G (GPUs per node) is VIDEOKTR_GPUS_PER_NODE if set, else the devices in CUDA_VISIBLE_DEVICES (SLURM sets it for
# --gpus), else what `nvidia-smi -L` lists, else 0. The node count comes from `scontrol show job $SLURM_JOB_ID`:
# Snakemake's SLURM job step drops SLURM_NNODES and friends from the rule's environment, but keeps SLURM_JOB_ID.
# VIDEOKTR_LAUNCH_PRINT=1 prints the command instead of running it. MASTER_PORT (default 29500) is the rendezvous port.
set -euo pipefail

[ "$#" -ge 1 ] || { echo "usage: $0 SUBCOMMAND [ARGS...]" >&2; exit 2; }

gpus=${VIDEOKTR_GPUS_PER_NODE:-}
if [ -z "$gpus" ]; then
    if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
        gpus=$(awk -F, '{print NF}' <<<"$CUDA_VISIBLE_DEVICES")
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        gpus=$(nvidia-smi -L | grep -c '^GPU' || true)
    else
        gpus=0
    fi
fi

nodes=1
head=localhost
if [ -n "${SLURM_JOB_ID:-}" ] && command -v scontrol >/dev/null 2>&1; then
    job=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null || true)
    n=$(grep -o 'NumNodes=[0-9]*' <<<"$job" | head -n1 | cut -d= -f2 || true)
    [ -n "$n" ] && nodes=$n
    if [ "$nodes" -gt 1 ]; then
        list=$(grep -o ' NodeList=[^ ]*' <<<"$job" | head -n1 | cut -d= -f2)
        head=$(scontrol show hostnames "$list" | head -n1)
    fi
fi

if [ "$nodes" -gt 1 ]; then
    per_node=$((gpus > 0 ? gpus : 1))
    cmd=(srun --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=1
         torchrun --nnodes="$nodes" --nproc-per-node="$per_node" --rdzv-backend=c10d
         --rdzv-endpoint="$head:${MASTER_PORT:-29500}" --rdzv-id="${SLURM_JOB_ID}"
         -m videoktr.cli "$@")
elif [ "$gpus" -gt 1 ]; then
    cmd=(torchrun --standalone --nproc-per-node="$gpus" -m videoktr.cli "$@")
else
    cmd=(videoktr "$@")
fi

if [ "${VIDEOKTR_LAUNCH_PRINT:-0}" = 1 ]; then
    echo "${cmd[@]}"
else
    exec "${cmd[@]}"
fi
