"""Preemption: SIGKILL the training process once a checkpoint exists, rerun the same command. The rerun resumes from
the newest checkpoint and ends with the same metrics.json as a run that was never interrupted, field by field (CPU,
deterministic); and the command run again on a finished run trains nothing and changes no file."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def uninterrupted(world, tiny_model_dir, tmp_path_factory):
    """The rule's command run once to its end: (its records file, its folder: model/, metrics.json, w/)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    records = tmp / "train.json"
    records.write_text(json.dumps(json.loads((world / "train.json").read_text())[:8]))
    whole = tmp / "whole"
    res = subprocess.run(command(world, tiny_model_dir, whole, records), env=ENV, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return records, whole


def files_of(folder: Path) -> dict:
    """Every file under `folder`: its bytes' digest and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_rules_command_on_a_finished_run_trains_nothing_and_changes_no_file(world, tiny_model_dir,
                                                                                 uninterrupted):
    """A requeued or repeated `train` job: Snakemake has written its marker into the model folder (a directory
    output) after the job; the command run again recognises the finished run by its model files, takes no step, and
    leaves every file (model, metrics.json, work dir) as it was, byte for byte and time for time."""
    records, whole = uninterrupted
    (whole / "model/.snakemake_timestamp").write_text("")  # what Snakemake adds to a directory output
    before = files_of(whole)
    res = subprocess.run(command(world, tiny_model_dir, whole, records), env=ENV, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "reusing it, not training again" in res.stderr, res.stderr[-3000:]
    assert "training afresh" not in res.stderr and "resuming" not in res.stderr
    assert files_of(whole) == before


@pytest.mark.parametrize("retry", [["--attempt", "2"], {"SLURM_RESTART_COUNT": "1"}], ids=["retry", "requeue"])
def test_a_retried_or_requeued_job_of_a_finished_run_restores_it_and_changes_no_file(world, tiny_model_dir,
                                                                                      uninterrupted, tmp_path, retry):
    """Snakemake deletes a job's outputs before the job runs, and a profile retry (a later attempt) or a SLURM requeue
    runs the job again with --force: the model folder and metrics.json of the finished run are gone. The work dir
    keeps them (hard links): the command restores them, takes no step, and every file is as the first job wrote it."""
    import shutil

    records, whole = uninterrupted
    job = tmp_path / "job"
    shutil.copytree(whole, job)  # times kept: the copy is the same finished run
    (job / "model/.snakemake_timestamp").unlink(missing_ok=True)
    before = files_of(job)
    shutil.rmtree(job / "model")
    (job / "metrics.json").unlink()
    args, env = (retry, ENV) if isinstance(retry, list) else ([], {**ENV, **retry})
    res = subprocess.run(command(world, tiny_model_dir, job, records) + args, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "restored from" in res.stderr and "not trained again" in res.stderr, res.stderr[-3000:]
    assert "training afresh" not in res.stderr and "resuming" not in res.stderr
    assert files_of(job) == before


def test_sigkill_midway_then_rerun_matches_an_uninterrupted_run(world, tiny_model_dir, tmp_path, uninterrupted):
    records, whole = uninterrupted
    env = ENV
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
    same_as_uninterrupted(resumed, expected, killed_at)

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


# How each metrics.json field of a resumed run compares with the uninterrupted run's. A new field must be added here,
# so that none can cover the last segment only unnoticed.
EQUAL = ("run", "method", "global_step", "trained_with", "scored_answers", "unparseable_answers", "video_input",
         "rollouts", "counted_from_step")
BY_DESIGN = ("resumed_from", "segments")  # what says it was resumed (checked above)
# engine: world size, ZeRO stage, accelerator and parameter share equal; each rank's padded completion widths are of
# this process's generation batches (the last segment's: what issue-level checks read as "one step's widths")
COST_EQUAL = ("optimizer_steps", "forward_flops", "world_size", "device", "unaccounted_steps", "peak_memory_kind",
              "forward")
COST_MEASURED = ("train_seconds", "samples_per_second", "forward_latency_seconds", "peak_memory_bytes", "segments",
                 "per_segment")  # times and memory: measured, summed over the segments (checked above)
TIMING = ("runtime", "per_second", "step_time")  # log_history keys of wall time


def same_as_uninterrupted(resumed: dict, expected: dict, killed_at: int) -> None:
    assert set(resumed) == set(expected) == {*EQUAL, *BY_DESIGN, "engine", "cost", "log_history", "train_loss"}
    strip = lambda e: {**e, "ranks": [{k: v for k, v in r.items() if k != "padded_completion_lengths"}  # noqa: E731
                                      for r in e["ranks"]]}
    assert strip(resumed["engine"]) == strip(expected["engine"])
    assert len(resumed["engine"]["ranks"][0]["padded_completion_lengths"]) == resumed["global_step"] - killed_at
    for key in EQUAL:
        assert resumed[key] == expected[key], key
    assert resumed["counted_from_step"] == 0 and len(resumed["rollouts"]) == resumed["global_step"]
    assert resumed["video_input"]["clips"] == expected["video_input"]["clips"] > 0
    assert resumed["scored_answers"] == resumed["global_step"] * TRAIN["per_device_batch_size"]
    assert set(resumed["cost"]) == {*COST_EQUAL, *COST_MEASURED}
    for key in COST_EQUAL:
        assert resumed["cost"][key] == expected["cost"][key], f"cost.{key}"
    assert resumed["train_loss"] == expected["train_loss"] or abs(resumed["train_loss"] - expected["train_loss"]) < 1e-9

    def untimed(history):
        return [{k: v for k, v in h.items() if not any(t in k for t in TIMING)} for h in history]
    got, want = untimed(resumed["log_history"]), untimed(expected["log_history"])
    assert len(got) == len(want)
    diff = [(i, k, g.get(k), w.get(k)) for i, (g, w) in enumerate(zip(got, want)) for k in set(g) | set(w)
            if g.get(k) != w.get(k)]
    assert not diff, diff
