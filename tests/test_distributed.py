"""Multi-process on CPU (torchrun, gloo), launched the way the cluster launches it."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from videoktr.rl.counterfactuals import global_batch_mask

HERE = Path(__file__).parent
ENV = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}


def free_port() -> int:
    """A port nobody listens on now: a fixed one collides with another torchrun on the same machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, timeout=600):
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node", "2", "--master-port", str(free_port()),
           *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_global_batch_threshold_of_two_ranks_equals_one_process(tmp_path):
    out = torchrun(str(HERE / "dist/global_threshold.py"), str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    two = torch.cat([torch.load(tmp_path / "mask0.pt"), torch.load(tmp_path / "mask1.pt")])
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(8, 12, generator=g)
    valid = torch.arange(12).expand(8, 12) < torch.randint(3, 13, (8, 1), generator=g)
    one = global_batch_mask(Accelerator(cpu=True), scores, valid, 0.2)
    assert torch.equal(two, one)
    assert abs(one.sum().item() - 0.2 * valid.sum().item()) <= 1


def test_two_process_ktr_training_through_the_launcher_finishes(world, tiny_model_dir, tmp_path):
    import json

    run = {"method": "ktr", "ratio": 0.2, "signals": ["E", "V", "T"], "scope": "batch",
           "train": {"lr": 1e-4, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 2,
                     "max_completion_length": 6, "temperature": 1.0, "epochs": 1, "max_steps": 2, "loss_type": "grpo",
                     "save_steps": 2, "logging_steps": 1, "diagnostics_every": 0}}
    cfg = {"seed": 0, "run": run, "video": {"fps": 8, "train_frames": 16, "backend": "auto"}}
    # the rule's launcher, as on a cluster node: 2 "GPUs" per node -> torchrun --standalone --nproc-per-node 2
    out = subprocess.run([str(HERE.parent / "scripts/launch.sh"), "train", "--cfg", json.dumps(cfg), "--name", "ktr2",
                          "--model", str(tiny_model_dir), "--records", str(world / "train.json"), "--data-dir",
                          str(world), "--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "m"), "--metrics",
                          str(tmp_path / "metrics.json")],
                         env={**ENV, "VIDEOKTR_GPUS_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": ""}, capture_output=True,
                         text=True, timeout=600)
    assert "torchrun" in subprocess.run([str(HERE.parent / "scripts/launch.sh"), "train"], capture_output=True,
                                        text=True, env={**ENV, "VIDEOKTR_GPUS_PER_NODE": "2",
                                                        "VIDEOKTR_LAUNCH_PRINT": "1"}).stdout
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 2
    assert (tmp_path / "m/config.json").exists()
    # each rank wrote its own token-log part for each step
    parts = sorted(p.name for p in (tmp_path / "w/token_log").iterdir())
    assert parts == ["step-000000-rank0.parquet", "step-000000-rank1.parquet",
                     "step-000001-rank0.parquet", "step-000001-rank1.parquet"]
