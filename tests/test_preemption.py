"""Preemption: SIGKILL the training process once a checkpoint exists, rerun the same command. The rerun resumes from
the newest checkpoint and ends with the same number of optimizer steps and the same final loss as a run that was
never interrupted (CPU, deterministic)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from conftest import VIDEO_CFG

BIN = Path(sys.executable).parent
TRAIN = {"lr": 1e-3, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 4, "max_completion_length": 32,
         "temperature": 1.0, "epochs": 1, "max_steps": 6, "loss_type": "grpo", "save_steps": 2, "logging_steps": 1,
         "diagnostics_every": 0, "deepspeed": None, "use_vllm": False}


def command(world, model, work: Path, records: Path) -> list[str]:
    run = {"method": "ktr", "ratio": 0.2, "signals": ["E", "V", "T"], "train": TRAIN}
    cfg = {"seed": 0, "run": run, "video": VIDEO_CFG}
    return [str(BIN / "videoktr"), "train", "--cfg", json.dumps(cfg), "--name", "ktr", "--model", str(model),
            "--records", str(records), "--data-dir", str(world), "--work-dir", str(work / "w"), "--out",
            str(work / "model"), "--metrics", str(work / "metrics.json")]


def final(metrics: dict) -> tuple:
    losses = [h for h in metrics["log_history"] if "loss" in h]
    return metrics["global_step"], losses[-1]["step"], losses[-1]["loss"]


def test_sigkill_midway_then_rerun_matches_an_uninterrupted_run(world, tiny_model_dir, tmp_path):
    recs = json.loads((world / "train.json").read_text())[:8]
    records = tmp_path / "train.json"
    records.write_text(json.dumps(recs))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": ""}

    whole = tmp_path / "whole"
    res = subprocess.run(command(world, tiny_model_dir, whole, records), env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    expected = json.loads((whole / "metrics.json").read_text())

    cut = tmp_path / "cut"
    proc = subprocess.Popen(command(world, tiny_model_dir, cut, records), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpts = cut / "w/checkpoints"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        done = [p for p in ckpts.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if done:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the newest complete checkpoint (the kill may have cut the next one off mid-write: the rerun skips that one)
    from videoktr.rl.run import checkpoint_problem

    killed_at = max(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*") if checkpoint_problem(p) is None)
    assert killed_at < TRAIN["max_steps"] and not (cut / "metrics.json").exists()

    res = subprocess.run(command(world, tiny_model_dir, cut, records), env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    resumed = json.loads((cut / "metrics.json").read_text())
    assert resumed["resumed_from"] == [f"checkpoint-{killed_at}"] and resumed["segments"] == 2
    # the cost covers the whole run: the killed segment up to its checkpoint, then the resumed one
    cost = resumed["cost"]
    assert cost["optimizer_steps"] == 6 and cost["unaccounted_steps"] == 0
    assert [(s["from_step"], s["to_step"]) for s in cost["per_segment"]] == [(0, killed_at), (killed_at, 6)]
    assert cost["train_seconds"] > cost["per_segment"][1]["seconds"] and cost["forward_flops"] > 0
    assert final(resumed)[:2] == final(expected)[:2] == (6, 6)
    assert final(resumed)[2] == final(expected)[2], (final(resumed), final(expected))
    # The tiny random model earns no reward, so its loss is 0.0 at every step and the line above compares little;
    # what the resumed steps logged besides (completion lengths, entropies, KTR selection shares: all set by the
    # restored RNG state and weights) must equal the uninterrupted run's, step by step.
    def logged(metrics):
        skip = ("runtime", "per_second", "time", "grad_norm")
        return {h["step"]: {k: v for k, v in h.items() if isinstance(v, (int, float)) and not any(x in k for x in skip)}
                for h in metrics["log_history"] if "loss" in h and h["step"] > killed_at}
    assert any(len(v) > 3 for v in logged(expected).values())
    assert logged(resumed) == logged(expected)
    # and so must every token's scores and selections (the random perturbations are seeded per step and rank)
    import pandas as pd

    def tokens(work):
        log = pd.read_parquet(work / "w/token_log")
        return log[log["step"] >= killed_at].sort_values(["step", "sample_id", "position"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(tokens(cut), tokens(whole))
