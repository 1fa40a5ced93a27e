"""One rank of a 2-rank ZeRO-3 RL run on DeepSpeed's CPU accelerator (torchrun; DS_ACCELERATOR=cpu), through
`videoktr.rl.run.train_run` as the cluster runs it, with ragged completions: rank 1 samples at most SHORT tokens,
rank 0 up to LONG, so TRL pads the two ranks' batches to widths several times apart.

    torchrun --nproc-per-node 2 zero3_train.py METHOD MODEL_DIR WORLD_DIR OUT_DIR LONG SHORT [MAX_STEPS] [DIAG]
"""

import json
import os
import sys
from pathlib import Path

import videoktr.rl.run as run_mod

ROOT = Path(__file__).resolve().parents[2]
method, model_dir, world, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
long, short = int(sys.argv[5]), int(sys.argv[6])
max_steps = int(sys.argv[7]) if len(sys.argv) > 7 else 1
diagnostics = int(sys.argv[8]) if len(sys.argv) > 8 else 0
rank = int(os.environ["RANK"])

grpo_config = run_mod.grpo_config


def ragged(train, *args, **kwargs):  # the one harness change: rank 1's completions capped at SHORT tokens
    cfg = grpo_config(train, *args, **kwargs)
    if rank == 1:
        cfg.max_completion_length = short
    return cfg


run_mod.grpo_config = ragged
if diagnostics:  # a tiny random policy earns no reward: one that differs within every group of 2 gives advantages
    def alternating_reward(completions, **kwargs):
        return [float(i % 2) for i in range(len(completions))]

    run_mod.format_reward_func = alternating_reward
train = {"lr": 1e-4, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 2, "max_completion_length": long,
         "temperature": 1.0, "epochs": 1, "max_steps": max_steps, "loss_type": "grpo", "save_steps": 1,
         "logging_steps": 1, "diagnostics_every": diagnostics, "save_total_limit": 2,
         "deepspeed": str(ROOT / "config/deepspeed/zero3.json")}
run = {"method": method, "train": train, "ratio": 0.2, "signals": ["E", "V", "T"], "scope": "batch",
       "twgrpo_alpha": 1.7, "tgrpo_mu": 0.8, "tgrpo_alpha": 1.0, "temporal_unit": "frame"}
if method == "ktr":
    from videoktr.config import ktr_knob_defaults

    run = {**ktr_knob_defaults(), **run}
records = json.loads((world / "train.json").read_text())
video = {"fps": 8, "train_frames": 16, "min_pixels": 3136, "max_pixels": 3136, "backend": "auto"}
metrics = run_mod.train_run(method, run, model_dir, records, world, out / "w", out / "m", video_cfg=video, seed=0)
(out / f"metrics{rank}.json").write_text(json.dumps(metrics, default=str))
