import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)  # the rules call the `videoktr` CLI of this environment
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "HF_HUB_OFFLINE": "1"}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VIDEO_CFG = {"fps": 8, "train_frames": 16, "min_pixels": 3136, "max_pixels": 3136, "backend": "auto"}


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A small real world: MP4 clips and Video-R1 records."""
    from videoktr.data.world import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, seed=3, n_train=20, n_eval=6)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, world):
    """A random-init tiny Qwen2.5-VL with a tokenizer trained on the world's text."""
    from videoktr.data.prompts import build_question
    from videoktr.models.sft import sft_target
    from videoktr.models.tiny import build_tiny_model

    records = json.loads((world / "train.json").read_text())
    texts = [t for r in records for t in (build_question(r), sft_target(r))]
    out = tmp_path_factory.mktemp("model")
    build_tiny_model(out, texts, vocab_size=400, hidden_size=32, layers=1, heads=1, vision_hidden=32,
                     vision_depth=1, min_pixels=3136, max_pixels=3136, seed=0)
    return out


def records(world: Path, split: str = "train") -> list[dict]:
    return json.loads((world / f"{split}.json").read_text())


class Killed(Exception):
    pass


class KillAfterSave(TrainerCallback):
    """Stands in for a preemption right after the checkpoint of `step` was written."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed


def selected_tokens_grpo_loss(trainer, out: dict, key):
    """The GRPO loss of a generation batch `out` written out over the tokens of `key` only (one policy iteration:
    old log-probs = current), for comparing with the trainer's own loss."""
    import torch

    valid = out["completion_mask"]
    trainer._videos = out["videos"]
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    logps, _, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, ids, torch.cat([out["prompt_mask"], valid], 1), valid.size(1))
    ref = out["ref_per_token_logps"]
    per_token = -torch.exp(logps - logps.detach()) * out["advantages"] + \
        trainer.beta * (torch.exp(ref - logps) - (ref - logps) - 1)
    m = valid * key
    return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()


def workdir(path: Path, items=("Snakefile", "workflow", "config", "envs", "profiles", "scripts")) -> Path:
    """A work dir for a Snakemake run apart from the repository's results: the workflow's files linked in."""
    for item in items:
        os.symlink(ROOT / item, path / item)
    return path


SLURM_LOCAL_SCRIPT = ROOT / "scripts/slurm-local.sh"


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM on this machine with one placeholder GPU; stopped afterwards if this test started it."""
    if not SLURM_LOCAL_SCRIPT.exists():
        pytest.skip("scripts/slurm-local.sh is missing")
    env = {**ENV, "SLURM_LOCAL_GPUS": "1"}
    was_up = subprocess.run([str(SLURM_LOCAL_SCRIPT), "status"], env=env, capture_output=True).returncode == 0
    start = subprocess.run([str(SLURM_LOCAL_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        pytest.skip(f"a local SLURM could not be installed or started:\n{start.stdout[-2000:]}{start.stderr[-2000:]}")
    conf = subprocess.run([str(SLURM_LOCAL_SCRIPT), "env"], env=env, capture_output=True, text=True).stdout
    yield {"SLURM_CONF": conf.strip().split("=", 1)[1]}
    if not was_up:
        subprocess.run([str(SLURM_LOCAL_SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
