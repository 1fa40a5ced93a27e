#!/usr/bin/env bash
# Runs `videoktr SUBCOMMAND ARGS...` on every GPU of the job it is in: the one launcher a rule calls.
#
#   scripts/launch.sh train --cfg ... --name ktr ...
#
#   * inside a SLURM job with more than one node (profiles/slurm `train`: nodes 4, tasks 4, mpi): one torchrun per
#     node through `srun --ntasks-per-node=1`, c10d rendezvous on the job's first node;
#   * one node with G > 1 GPUs: `torchrun --standalone --nproc-per-node G`;
#   * no GPU and VIDEOKTR_CPU_RANKS=N > 1 (the rehearsal): `torchrun --standalone --nproc-per-node N` with
#     DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu, gloo): the GPU nodes' ranks and ZeRO-3, on CPU cores;
#   * otherwise (one GPU, or CPU as in the tiny world): plain `videoktr`.
#
# G (GPUs per node) is VIDEOKTR_GPUS_PER_NODE if set, else the devices in CUDA_VISIBLE_DEVICES (SLURM sets it for
# --gpus), else what `nvidia-smi -L` lists, else 0. The node count comes from `scontrol show job $SLURM_JOB_ID`:
# Snakemake's SLURM job step drops SLURM_NNODES and friends from the rule's environment, but keeps SLURM_JOB_ID.
# Multi-node, the srun step asks for the job's GPUs per node (its TRES gres/gpu / NumNodes) and CPUs per task. A job
# holding GPUs on a node where G is 0 is refused with one line naming the node (it would train in one CPU process).
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
job_gpus=0     # GPUs the SLURM job holds (its TRES gres/gpu), all nodes together
cpus_task=""   # CPUs of the job's task on each node (CPUs/Task, else NumCPUs / NumNodes)
if [ -n "${SLURM_JOB_ID:-}" ] && command -v scontrol >/dev/null 2>&1; then
    job=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null || true)
    n=$(grep -o 'NumNodes=[0-9]*' <<<"$job" | head -n1 | cut -d= -f2 || true)
    [ -n "$n" ] && nodes=$n
    g=$(grep -o 'TRES=[^ ]*' <<<"$job" | head -n1 | grep -o 'gres/gpu[^=,]*=[0-9]*' | head -n1 | cut -d= -f2 || true)
    [ -n "$g" ] && job_gpus=$g
    cpus_task=$(grep -o 'CPUs/Task=[0-9]*' <<<"$job" | head -n1 | cut -d= -f2 || true)
    if [ -z "$cpus_task" ]; then
        c=$(grep -o 'NumCPUs=[0-9]*' <<<"$job" | head -n1 | cut -d= -f2 || true)
        [ -n "$c" ] && cpus_task=$((c / nodes))
    fi
    if [ "$nodes" -gt 1 ]; then
        list=$(grep -o ' NodeList=[^ ]*' <<<"$job" | head -n1 | cut -d= -f2)
        head=$(scontrol show hostnames "$list" | head -n1)
    fi
fi

# a GPU job on a node that shows no GPU would silently train in one CPU process: refused, naming the node
if [ "$job_gpus" -gt 0 ] && [ "$gpus" -eq 0 ]; then
    echo "launch.sh: SLURM job $SLURM_JOB_ID holds $job_gpus GPU(s) but node ${SLURMD_NODENAME:-$(uname -n)} shows none" \
         "(CUDA_VISIBLE_DEVICES unset, nvidia-smi lists no GPU): refusing to start one CPU process" >&2
    exit 1
fi

if [ "$nodes" -gt 1 ]; then
    per_node=$((gpus > 0 ? gpus : 1))
    [ "$job_gpus" -gt 0 ] && per_node=$((job_gpus / nodes))
    # the step asks for the job's GPUs per node and CPUs per task: what a nested step sees is otherwise the site's call
    step=()
    [ "$job_gpus" -gt 0 ] && step+=(--gpus-per-node="$per_node")
    [ -n "$cpus_task" ] && step+=(--cpus-per-task="$cpus_task")
    cmd=(srun --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=1 "${step[@]}"
         torchrun --nnodes="$nodes" --nproc-per-node="$per_node" --rdzv-backend=c10d
         --rdzv-endpoint="$head:${MASTER_PORT:-29500}" --rdzv-id="${SLURM_JOB_ID}"
         -m videoktr.cli "$@")
elif [ "$gpus" -gt 1 ]; then
    cmd=(torchrun --standalone --nproc-per-node="$gpus" -m videoktr.cli "$@")
elif [ "$gpus" -eq 0 ] && [ "${VIDEOKTR_CPU_RANKS:-1}" -gt 1 ]; then
    export DS_ACCELERATOR=cpu
    cmd=(torchrun --standalone --nproc-per-node="$VIDEOKTR_CPU_RANKS" -m videoktr.cli "$@")
else
    cmd=(videoktr "$@")
fi

if [ "${VIDEOKTR_LAUNCH_PRINT:-0}" = 1 ]; then
    echo "${cmd[@]}"
else
    exec "${cmd[@]}"
fi
