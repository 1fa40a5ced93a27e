"""Before any long job of a GPU study: can the GPU parts run where this check runs? One line per problem.

Checked: every vLLM backend the config asks for (filter.backend, eval.backend, train.use_vllm) needs vllm and a CUDA
GPU; train.deepspeed needs its config file, deepspeed and CUDA. The hub is checked by the download rules themselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def needs_gpu(config: dict) -> bool:
    runs = [r.get("train", {}) for r in (config.get("runs") or {}).values()]
    trains = [config.get("train", {}), *runs]
    return (config.get("filter", {}).get("backend") == "vllm" or config.get("eval", {}).get("backend") == "vllm"
            or any(t.get("use_vllm") or t.get("deepspeed") for t in trains))


def problems(config: dict, *, cuda: bool | None = None) -> list[str]:
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    found = []
    vllm = importlib.util.find_spec("vllm") is not None
    keys = [k for k, on in (("filter.backend", config.get("filter", {}).get("backend") == "vllm"),
                            ("eval.backend", config.get("eval", {}).get("backend") == "vllm")) if on]
    trains = {"train": config.get("train", {}), **{f"runs.{n}.train": r.get("train", {})
                                                   for n, r in (config.get("runs") or {}).items()}}
    if any(t.get("use_vllm") for t in trains.values()):
        keys.append("train.use_vllm")
    for key in keys:
        if not cuda:
            found.append(f"{key} asks for vLLM, which needs a CUDA GPU, and none is visible here: run on GPU nodes "
                         f"or set {key} to {'false' if key.endswith('use_vllm') else 'transformers'}")
        elif not vllm:
            found.append(f"{key} asks for vLLM, which is not installed here (the pinned envs lack it: vllm 0.33 needs "
                         f"another torch than their 2.14.1): install a vLLM build for the nodes' CUDA, or set {key} "
                         f"to transformers")
    for key, t in trains.items():
        ds = t.get("deepspeed")
        if not ds:
            continue
        if not Path(ds).is_file():
            found.append(f"{key}.deepspeed: {ds} is not a file")
        elif not cuda or importlib.util.find_spec("deepspeed") is None:
            found.append(f"{key}.deepspeed ({ds}) needs CUDA GPUs and deepspeed, but "
                         f"{'no CUDA GPU is visible' if not cuda else 'deepspeed is not installed'} here: run on GPU "
                         f"nodes with the pinned env (envs/train.yaml and its post-deploy script) or set {key}.deepspeed: null")
            break  # one line for the whole grid of runs
    return list(dict.fromkeys(found))
