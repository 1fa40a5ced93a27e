"""DeepSpeed ZeRO-3 over two ranks on DeepSpeed's CPU accelerator (gloo), as the paper's GPU runs train: through
`train_run`, config/deepspeed/zero3.json, with completions of one rank 5x longer than the other's (issue 22).

Every run is bounded by a timeout: ranks whose collectives differ hang (or gloo reports a collective mismatch)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_distributed import free_port

pytest.importorskip("deepspeed")
HERE = Path(__file__).parent
LONG, SHORT = 160, 32
# DeepSpeed's CPU accelerator; OMP 1: two ranks on a shared machine
ENV = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
       "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def zero3(method, model, world, out, steps=1, diagnostics=0, timeout=300) -> list[dict]:
    """Both ranks' metrics of a 2-rank ZeRO-3 run; a hang fails after `timeout` seconds."""
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node", "2", "--master-port", str(free_port()),
           str(HERE / "dist/zero3_train.py"), method, str(model), str(world), str(out), str(LONG), str(SHORT),
           str(steps), str(diagnostics)]
    try:
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{method}: 2-rank ZeRO-3 run still going after {timeout} s (a collective hang): "
                    f"{(e.stderr or b'')[-2000:]}")
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((out / f"metrics{r}.json").read_text()) for r in (0, 1)]


def check_engine(metrics: list[dict]) -> dict:
    engine = metrics[0]["engine"]
    assert engine == metrics[1]["engine"]
    assert engine["world_size"] == 2 and engine["deepspeed_zero_stage"] == 3 and engine["accelerator"] == "cpu"
    widths = [r["padded_completion_lengths"][0] for r in engine["ranks"]]
    assert widths[0] >= 4 * widths[1] and widths[0] >= LONG, widths  # ragged: several times longer on rank 0
    # loaded partitioned (zero.Init: the config was built before the model): each rank holds about half
    assert all(abs(r["local_parameter_share"] - 0.5) < 0.05 for r in engine["ranks"]), engine["ranks"]
    return engine


@pytest.mark.parametrize("method", ["twgrpo", "tgrpo", "grpo"])
def test_two_zero3_ranks_with_ragged_completions_train(method, world, tiny_model_dir, tmp_path):
    metrics = zero3(method, tiny_model_dir, world, tmp_path)
    check_engine(metrics)
    assert metrics[0]["global_step"] == 1


def test_ktr_on_zero3_ragged_with_gradient_diagnostics_and_resume(world, tiny_model_dir, tmp_path):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    first = zero3("ktr", tiny_model_dir, world, tmp_path, steps=2, diagnostics=1)
    check_engine(first)
    assert first[0]["global_step"] == 2
    # appendix B.1's diagnostics on partitioned parameters: whole final-layer gradients, finite, not all zero
    import pandas as pd

    rows = pd.read_csv(tmp_path / "w/gradients.csv")
    layer = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    n = sum(p.numel() for p in layer.model.language_model.layers[-1].parameters())
    assert list(rows["step"]) == [0, 1] and (rows["grad_elements"] == n).all()
    for col in ("grad_norm_full", "grad_norm_selected", "cos_selected_full", "cos_residual_full"):
        assert all(math.isfinite(v) for v in rows[col]) and rows[col].abs().sum() > 0, col
    # resume from a ZeRO-3 checkpoint (DeepSpeed's partitioned optimizer state): step 2 lost, taken again
    ckpts = tmp_path / "w/checkpoints"
    assert (ckpts / "checkpoint-1/global_step1").is_dir()
    shutil.rmtree(ckpts / "checkpoint-2")
    (tmp_path / "w/complete.json").unlink()
    resumed = zero3("ktr", tiny_model_dir, world, tmp_path, steps=2, diagnostics=1)
    assert resumed[0]["global_step"] == 2 and resumed[0]["resumed_from"] == ["checkpoint-1"]
    assert sorted(p.name for p in ckpts.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
