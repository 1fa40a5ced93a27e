"""Multi-process on CPU (torchrun, gloo), launched the way the cluster launches it."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from videoktr.trainers import global_batch_mask

HERE = Path(__file__).parent
ENV = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}


def torchrun(*args, timeout=600):
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node", "2", "--master-port", "29533", *args]
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
