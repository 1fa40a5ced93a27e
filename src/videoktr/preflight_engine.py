"""What preflight starts rather than infers: a one-rank DeepSpeed engine from the study's ZeRO config (a toy model, one
step), and, when CUDA is not usable, the NVIDIA driver's version (the pinned torch wheels are CUDA 13 builds, which
need driver 580 or newer)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

MIN_DRIVER = 580  # CUDA 13 (the pinned torch 2.x wheels' CUDA) needs an NVIDIA driver of the 580 series or newer

# One rank, one step of a toy model through deepspeed.initialize with the config's ZeRO section ("auto" values
# resolved as the HF integration would for a batch of one); prints the stage and DeepSpeed's accelerator.
_START = r"""
import json, sys, torch, deepspeed
from deepspeed.accelerator import get_accelerator
AUTO = {"train_batch_size": 1, "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0, "reduce_bucket_size": 1e6, "stage3_prefetch_bucket_size": 1e6,
        "stage3_param_persistence_threshold": 0}
def fill(d):
    for k, v in list(d.items()):
        if isinstance(v, dict):
            fill(v)
        elif v == "auto":
            d[k] = False if k == "enabled" else AUTO[k]
cfg = json.load(open(sys.argv[1]))
fill(cfg)
cfg["zero_allow_untested_optimizer"] = True
model = torch.nn.Linear(64, 64)
engine, *_ = deepspeed.initialize(model=model, config=cfg, optimizer=torch.optim.AdamW(model.parameters()))
loss = engine(torch.randn(2, 64, device=engine.device)).float().pow(2).mean()
engine.backward(loss)
engine.step()
print("ENGINE " + json.dumps({"stage": engine.zero_optimization_stage(), "accelerator": get_accelerator().device_name()}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deepspeed_start(config_path: Path, timeout: int = 600) -> tuple[dict | None, str]:
    """({stage, accelerator}, "") when DeepSpeed started an engine from `config_path` and took a step, else
    (None, the reason in one line). Its own process: a process group must not outlive the check."""
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    try:
        done = subprocess.run([sys.executable, "-c", _START, str(config_path)], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"DeepSpeed did not start an engine from {config_path} within {timeout} s"
    for line in done.stdout.splitlines():
        if line.startswith("ENGINE "):
            return json.loads(line[len("ENGINE "):]), ""
    lines = [re.sub(r"^\[rank\d+\]:\s*", "", ln) for ln in done.stderr.strip().splitlines()]
    errors = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b", ln)]
    last = errors[-1] if errors else (lines or ["no output"])[-1]
    return None, f"DeepSpeed failed to start an engine from {config_path} (exit {done.returncode}): {last[:300]}"


def nvidia_driver() -> str | None:
    """The NVIDIA driver version of this node (nvidia-smi, else /proc/driver/nvidia/version), or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    proc = Path("/proc/driver/nvidia/version")
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", proc.read_text()) if proc.is_file() else None
    return m.group(1) if m else None


def why_no_cuda(driver: str | None = None) -> str:
    """Why torch sees no CUDA GPU here, naming the driver: absent, too old for CUDA 13, or present and unusable."""
    import torch

    driver = nvidia_driver() if driver is None else driver
    built = f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none: a CPU build'})"
    if not driver:
        return f"no NVIDIA driver on this node (no nvidia-smi, no /proc/driver/nvidia/version) for {built}"
    if int(driver.split(".")[0]) < MIN_DRIVER:
        return f"NVIDIA driver {driver} is older than {MIN_DRIVER}, which {built} needs"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (f"NVIDIA driver {driver} is present but {built} sees no GPU"
            + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""))
