"""Resuming RL training: a finished run is not trained again, a resumed run restores its weights and reports the
whole run (every segment's steps and time), and a checkpoint cut off mid-write is skipped for the one before it."""

import json
import logging
import shutil

import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration, TrainerCallback

from conftest import VIDEO_CFG, KillAfterSave, Killed, records
from videoktr.provenance import model_fingerprint
from videoktr.rl.run import checkpoint_problem, last_checkpoint, train_run

TRAIN = {"lr": 1e-3, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 2, "max_completion_length": 6,
         "temperature": 1.0, "epochs": 1, "max_steps": 3, "loss_type": "grpo", "save_steps": 1, "logging_steps": 1,
         "diagnostics_every": 0}
RUN = {"method": "grpo", "train": TRAIN}



class Nudge(TrainerCallback):
    """Moves every weight after each step, so that a checkpoint's weights differ from the starting model's (the tiny
    random model earns no reward: its own updates are zero)."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)


class WeightsAtStart(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(world, model_dir, tmp_path, out="out", run=RUN, callbacks=()):
    return train_run("grpo", run, model_dir, records(world)[:4], world, tmp_path / "w", tmp_path / out,
                     video_cfg=VIDEO_CFG, seed=0, callbacks=callbacks)


def test_rerun_of_a_finished_run_reuses_it_and_a_forced_rerun_starts_afresh(world, tiny_model_dir, tmp_path, caplog):
    run = dict(RUN, train=dict(TRAIN, max_steps=2))
    first = _train(world, tiny_model_dir, tmp_path, run=run)
    assert first["global_step"] == 2 and first["resumed_from"] == [] and first["segments"] == 1
    assert first["cost"]["optimizer_steps"] == 2 and first["cost"]["unaccounted_steps"] == 0
    assert (tmp_path / "w/complete.json").is_file()
    model_id = model_fingerprint(tmp_path / "out")

    # rerun with its model in place: the same metrics, the model untouched, no step taken
    caplog.set_level(logging.INFO, logger="videoktr.rl.run")
    again = _train(world, tiny_model_dir, tmp_path, run=run)
    assert json.dumps(again, sort_keys=True, default=str) == json.dumps(first, sort_keys=True, default=str)
    assert model_fingerprint(tmp_path / "out") == model_id
    assert "reusing it, not training again" in caplog.text

    # forced rerun: Snakemake deleted the outputs, the work dir stays; trained afresh, not "resumed" at its last step
    shutil.rmtree(tmp_path / "out")
    caplog.clear()
    forced = _train(world, tiny_model_dir, tmp_path, run=run)
    assert "training afresh" in caplog.text
    assert forced["resumed_from"] == [] and forced["segments"] == 1 and forced["global_step"] == 2
    assert forced["cost"]["optimizer_steps"] == 2 and forced["cost"]["forward_flops"] > 0
    steps = [h["step"] for h in forced["log_history"] if "loss" in h]
    assert steps == [1, 2]  # a fresh log, not the old one continued


def test_a_resumed_run_restores_its_weights_and_counts_every_segment(world, tiny_model_dir, tmp_path):
    with pytest.raises(Killed):
        _train(world, tiny_model_dir, tmp_path, callbacks=[Nudge(), KillAfterSave(1)])
    saved = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "w/checkpoints/checkpoint-1",
                                                                dtype=torch.float32).state_dict()
    start = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    assert any(not torch.equal(saved[k], start[k]) for k in saved)

    seen = WeightsAtStart()
    resumed = _train(world, tiny_model_dir, tmp_path, callbacks=[seen])
    # the resumed steps start from the checkpoint's weights, not from the starting model's
    assert set(seen.weights) == set(saved)
    assert all(torch.equal(seen.weights[k], saved[k]) for k in saved)

    assert resumed["global_step"] == 3 and resumed["resumed_from"] == ["checkpoint-1"] and resumed["segments"] == 2
    cost = resumed["cost"]
    first, second = cost["per_segment"]
    assert (first["from_step"], first["to_step"], second["from_step"], second["to_step"]) == (0, 1, 1, 3)
    assert first["resumed_from"] is None and second["resumed_from"] == "checkpoint-1"
    assert cost["optimizer_steps"] == 3 and cost["unaccounted_steps"] == 0 and cost["segments"] == 2
    assert first["seconds"] > 0 and cost["train_seconds"] == pytest.approx(first["seconds"] + second["seconds"])
    assert cost["peak_memory_bytes"] == max(first["peak_memory_bytes"], second["peak_memory_bytes"])
    assert cost["forward_flops"] > 0  # the run's step 2, measured in the second segment
    assert cost["samples_per_second"] == pytest.approx(3 * TRAIN["per_device_batch_size"] / cost["train_seconds"])
    assert [h["step"] for h in resumed["log_history"] if "loss" in h] == [1, 2, 3]
    # answers, clips and rollouts over both segments, not the last one's only
    batch = TRAIN["per_device_batch_size"]
    assert resumed["counted_from_step"] == 0 and len(resumed["rollouts"]) == 3
    assert resumed["scored_answers"] == 3 * batch and resumed["video_input"]["clips"] == 3 * batch
    # a rerun now reuses the finished run
    assert _train(world, tiny_model_dir, tmp_path)["cost"] == cost


def test_a_checkpoint_cut_off_mid_write_is_skipped_for_the_one_before(world, tiny_model_dir, tmp_path, caplog):
    with pytest.raises(Killed):
        _train(world, tiny_model_dir, tmp_path, callbacks=[KillAfterSave(2)])
    ckpts = tmp_path / "w/checkpoints"
    assert checkpoint_problem(ckpts / "checkpoint-1") is None and checkpoint_problem(ckpts / "checkpoint-2") is None

    # what a kill while saving leaves: each file checked on a copy of the complete checkpoint
    probe = tmp_path / "probe"
    for name, cut in [("optimizer.pt", "truncate"), ("model.safetensors", "truncate"), ("rng_state.pth", "delete"),
                      ("trainer_state.json", "truncate"), ("scheduler.pt", "delete")]:
        shutil.rmtree(probe, ignore_errors=True)
        shutil.copytree(ckpts / "checkpoint-2", probe / "checkpoint-2")
        path = probe / "checkpoint-2" / name
        if cut == "delete":
            path.unlink()
        else:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        assert name in checkpoint_problem(probe / "checkpoint-2"), name
    assert checkpoint_problem(ckpts / "checkpoint-2", world_size=2) == "rng_state_0.pth missing"

    (ckpts / "checkpoint-2/trainer_state.json").unlink()  # killed while saving checkpoint-2
    assert last_checkpoint(tmp_path / "w").endswith("checkpoint-1")
    caplog.set_level(logging.INFO, logger="videoktr.rl.run")
    resumed = _train(world, tiny_model_dir, tmp_path)
    assert "skipping" in caplog.text and "checkpoint-2" in caplog.text and "trainer_state.json missing" in caplog.text
    assert resumed["resumed_from"] == ["checkpoint-1"] and resumed["global_step"] == 3
    assert resumed["cost"]["optimizer_steps"] == 3
    assert checkpoint_problem(ckpts / "checkpoint-2") is None  # written again, whole


def test_a_run_stopped_after_its_last_checkpoint_takes_no_step_more(world, tiny_model_dir, tmp_path, caplog):
    """Killed after its final checkpoint, before its model was saved: transformers, resumed there mid-epoch, would
    take one step past max_steps; the model is the final checkpoint's instead."""
    run = dict(RUN, train=dict(TRAIN, max_steps=2))
    with pytest.raises(Killed):
        _train(world, tiny_model_dir, tmp_path, run=run, callbacks=[Nudge(), KillAfterSave(2)])
    saved = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "w/checkpoints/checkpoint-2",
                                                                dtype=torch.float32).state_dict()
    caplog.set_level(logging.INFO, logger="videoktr.rl.run")
    done = _train(world, tiny_model_dir, tmp_path, run=run)
    assert "no step more" in caplog.text
    assert done["global_step"] == 2 and not (tmp_path / "w/checkpoints/checkpoint-3").exists()
    assert done["resumed_from"] == ["checkpoint-2"] and done["segments"] == 1
    assert done["cost"]["optimizer_steps"] == 2 and done["cost"]["forward_flops"] > 0
    assert done["train_loss"] is not None and [h["step"] for h in done["log_history"] if "loss" in h] == [1, 2]
    # the counts of the checkpoint's steps, though this invocation sampled nothing
    assert len(done["rollouts"]) == 2 and done["scored_answers"] == 2 * TRAIN["per_device_batch_size"]
    assert done["video_input"]["clips"] == 2 * TRAIN["per_device_batch_size"] and done["counted_from_step"] == 0
    out = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "out", dtype=torch.float32).state_dict()
    assert all(torch.equal(out[k], saved[k]) for k in saved)


def test_a_checkpoint_without_saved_segments_resumes_and_says_what_its_cost_misses(world, tiny_model_dir, tmp_path):
    """A checkpoint written before segments were recorded (no CostMeter state): resumed all the same, and the cost
    names the steps it cannot account for."""
    run = dict(RUN, train=dict(TRAIN, max_steps=2))
    with pytest.raises(Killed):
        _train(world, tiny_model_dir, tmp_path, run=run, callbacks=[KillAfterSave(1)])
    state_file = tmp_path / "w/checkpoints/checkpoint-1/trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["stateful_callbacks"]["CostMeter"]
    del state["stateful_callbacks"]["RunTally"]
    state_file.write_text(json.dumps(state))
    resumed = _train(world, tiny_model_dir, tmp_path, run=run)
    assert resumed["global_step"] == 2 and resumed["resumed_from"] == ["checkpoint-1"] and resumed["segments"] == 1
    assert resumed["cost"]["optimizer_steps"] == 1 and resumed["cost"]["unaccounted_steps"] == 1
    # the counts begin after the checkpoint, and say so
    assert resumed["counted_from_step"] == 1 and len(resumed["rollouts"]) == 1
    assert checkpoint_problem(tmp_path / "w/checkpoints/checkpoint-2") is None
