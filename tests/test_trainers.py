"""The TRL trap: the loss-path log-probs must see the video."""

import pytest
import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from conftest import VIDEO_CFG, KillAfterSave, Killed, records, selected_tokens_grpo_loss
from videoktr.data.model_inputs import encode, load_frames, prompt_text
from videoktr.rl.rewards import AccuracyReward, format_reward_func
from videoktr.rl.run import grpo_config, to_dataset
from videoktr.models.sft import sft_target
from videoktr.models.tiny import vision_token_ids
from videoktr.rl.grpo import VideoGRPOTrainer, split_videos

TRAIN = {"lr": 1e-3, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 2, "max_completion_length": 8,
         "temperature": 1.0, "epochs": 1, "max_steps": 1, "loss_type": "grpo", "save_steps": 1, "logging_steps": 1, "diagnostics_every": 1}


def test_loss_path_logprobs_change_with_the_video_and_match_the_plain_model(world, tiny_model_dir, tmp_path):
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    recs = records(world)[:2]
    trainer = VideoGRPOTrainer(model=model, reward_funcs=[AccuracyReward(), format_reward_func],
                               args=grpo_config(TRAIN, tmp_path, 0, vision_token_ids(model)),
                               train_dataset=to_dataset(recs), processing_class=proc, data_dir=world,
                               video_cfg=VIDEO_CFG)
    text = prompt_text(proc, recs[0]) + sft_target(recs[0]) + "<|im_end|>"
    n = len(proc.tokenizer(sft_target(recs[0]) + "<|im_end|>")["input_ids"])
    logps = {}
    for i, rec in enumerate(recs):
        batch = encode(proc, [text], [load_frames(rec, world, VIDEO_CFG)], VIDEO_CFG["fps"])
        trainer._videos = split_videos(batch)
        with torch.no_grad():
            logps[i], _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model, batch["input_ids"], batch["attention_mask"], n)
            plain = trainer.model(**batch).logits[:, -n - 1:-1].log_softmax(-1)
        assert torch.allclose(logps[i], plain.gather(-1, batch["input_ids"][:, -n:, None])[..., 0], atol=1e-5)
    assert (logps[0] - logps[1]).abs().max() > 1e-4  # another clip, other log-probs: the video is in the loss



def test_a_killed_run_resumes_from_its_checkpoint_and_a_changed_config_starts_afresh(world, tiny_model_dir, tmp_path):
    from videoktr.rl.run import train_run

    run = {"method": "ktr", "ratio": 0.2, "signals": ["E", "V", "T"], "train": dict(TRAIN, max_steps=3)}
    recs = records(world)[:4]
    with pytest.raises(Killed):
        train_run("ktr", run, tiny_model_dir, recs, world, tmp_path / "w", tmp_path / "out", video_cfg=VIDEO_CFG,
                  seed=0, callbacks=[KillAfterSave(2)])
    first = train_run("ktr", run, tiny_model_dir, recs, world, tmp_path / "w", tmp_path / "out",
                      video_cfg=VIDEO_CFG, seed=0)
    assert first["resumed_from"] == ["checkpoint-2"] and first["global_step"] == 3
    shares = [h["ktr/union_share"] for h in first["log_history"] if "ktr/union_share" in h]
    assert shares and all(0.19 <= s <= 0.61 for s in shares)
    # token log: every valid completion token of every step, with scores and selections
    import pandas as pd

    log = pd.read_parquet(tmp_path / "w/token_log")
    assert sorted(log["step"].unique()) == [0, 1, 2]
    assert {"score_E", "score_V", "score_T", "selected_E", "selected_V", "selected_T", "key", "token_str"} <= set(log)
    assert (log["key"] == (log["selected_E"] | log["selected_V"] | log["selected_T"])).all()
    grads = pd.read_csv(tmp_path / "w/gradients.csv")
    assert list(grads["step"]) == [0, 1, 2]  # every step, none twice after the resume (diagnostics_every=1); a random model's rewards tie, so the
    assert (grads.filter(like="grad_norm") >= 0).all().all()  # gradients may be zero here; the demo logs real ones
    assert grads["cos_selected_full"].between(-1, 1).all()
    run["train"]["lr"] = 2e-3  # another config: the old checkpoints are not resumed
    again = train_run("ktr", run, tiny_model_dir, recs, world, tmp_path / "w", tmp_path / "out2",
                      video_cfg=VIDEO_CFG, seed=0)
    assert again["resumed_from"] == [] and again["global_step"] == 3
    # the starting model counts by identity, not by path: the same files elsewhere resume, a rewritten one does not
    import os
    import shutil

    model2 = tmp_path / "model2"
    shutil.copytree(tiny_model_dir, model2)  # copy2 keeps sizes and times: the same model
    same = train_run("ktr", run, model2, recs, world, tmp_path / "w", tmp_path / "out2", video_cfg=VIDEO_CFG, seed=0)
    assert same == again  # a finished run with its model in place is reused, not trained again
    weights = next(model2.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # rewritten in place
    fresh = train_run("ktr", run, model2, recs, world, tmp_path / "w", tmp_path / "out4", video_cfg=VIDEO_CFG, seed=0)
    assert fresh["resumed_from"] == [] and fresh["global_step"] == 3


def _ktr(world, model_dir, tmp_path, **settings):
    from videoktr.rl.ktr import KTRSettings, KTRTrainer

    proc = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
    trainer = KTRTrainer(model=model, reward_funcs=[AccuracyReward(), format_reward_func],
                         args=grpo_config(dict(TRAIN, per_device_batch_size=4), tmp_path, 0, vision_token_ids(model)),
                         train_dataset=to_dataset(records(world)[:2]), processing_class=proc, data_dir=world,
                         video_cfg=VIDEO_CFG, ktr=KTRSettings(**settings))
    trainer.current_gradient_accumulation_steps = 1  # set by train(); these tests call the loss directly
    return trainer


def _rows(world, trainer, n_prompts=2):
    rows = list(trainer.train_dataset.select(range(n_prompts)))
    return [r for r in rows for _ in range(trainer.num_generations)]


def test_all_ones_mask_gives_exactly_the_video_grpo_loss(world, tiny_model_dir, tmp_path):
    trainer = _ktr(world, tiny_model_dir, tmp_path, ratio=1.0)
    trainer.model.train()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(_rows(world, trainer))
    assert torch.equal(out["tool_mask"], out["completion_mask"])
    ktr_loss = trainer._compute_loss(trainer.model, out)
    plain = {k: v for k, v in out.items() if k not in ("tool_mask", "key_mask")}
    grpo_loss = VideoGRPOTrainer._compute_loss(trainer, trainer.model, plain)
    assert torch.equal(ktr_loss, grpo_loss)


def test_the_partial_key_mask_reaches_the_loss_through_trl_tool_mask(world, tiny_model_dir, tmp_path):
    """KTR hands its key mask to TRL's loss as `tool_mask`: loss and gradient are those of the selected tokens
    alone, not of every completion token. A TRL that stops reading `tool_mask` fails here."""
    trainer = _ktr(world, tiny_model_dir, tmp_path)  # r = 0.2: a partial mask
    trainer.model.train()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(_rows(world, trainer))
    valid, key = out["completion_mask"], out["key_mask"]
    assert torch.equal(out["tool_mask"], key)  # the key TRL 1.16's _compute_loss multiplies into its loss mask
    assert 0 < (valid * key).sum() < valid.sum()
    assert trainer.loss_type == "grpo" and "old_per_token_logps" not in out and trainer.beta > 0
    # per-token advantages, so that which tokens count moves the loss value as well as its gradient
    out["advantages"] = torch.randn(valid.shape, generator=torch.Generator().manual_seed(1))
    params = list(trainer.model.model.language_model.layers[-1].parameters())

    def value_and_grad(loss):
        return loss.detach(), torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    ktr = value_and_grad(trainer._compute_loss(trainer.model, out))
    # the GRPO loss written out over the selected tokens only
    selected = value_and_grad(selected_tokens_grpo_loss(trainer, out, key))
    full = value_and_grad(VideoGRPOTrainer._compute_loss(
        trainer, trainer.model, {k: v for k, v in out.items() if k not in ("tool_mask", "key_mask")}))
    for a, b in zip(ktr, selected):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(ktr[0], full[0], rtol=1e-3) and not torch.allclose(ktr[1], full[1], rtol=1e-3)


@pytest.mark.parametrize("settings", [
    {}, {"scope": "sequence"}, {"scope": "batch"}, {"signals": ("V",)}, {"signals": ("E", "T")},
    {"distance": "js"}, {"distance": "hellinger"}, {"visual_perturbation": "zero_half"},
    {"visual_perturbation": "other_clip"}, {"temporal_perturbation": "reverse"},
    {"temporal_perturbation": "segment_shuffle"}, {"signed": True}, {"visual_mode": "drop_attention"},
])
def test_every_knob_selects_r_per_signal_and_masks_the_loss(world, tiny_model_dir, tmp_path, settings):
    trainer = _ktr(world, tiny_model_dir, tmp_path, **settings)
    trainer.model.train()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(_rows(world, trainer))
    valid, key = out["completion_mask"].bool(), out["tool_mask"].bool()
    assert not (key & ~valid).any() and key.any()
    log = trainer._metrics["train"]
    for s in trainer.ktr.signals:
        # per group of G rollouts: round(r * n) tokens, so the batch share is r within one token per group
        assert abs(log[f"ktr/{s}_share"][-1] * valid.sum().item() - 0.2 * valid.sum().item()) <= 2
    assert log["ktr/union_share"][-1] == pytest.approx(key.sum().item() / valid.sum().item())
    assert all(0 <= log[f"ktr/ties_{s}"][-1] <= 1 for s in trainer.ktr.signals)
    # token-level losses (dapo) divide by the count of loss tokens: the key tokens, not every completion token
    assert out["num_items_in_batch"].item() == key.sum().item()
    assert torch.isfinite(trainer._compute_loss(trainer.model, out))


@pytest.mark.parametrize("no_spread", ["top_r", "none"])
def test_a_static_clip_has_no_temporal_spread_its_ties_are_logged_and_none_selects_nothing(world, tiny_model_dir,
                                                                                            tmp_path, no_spread):
    """A colour/shape clip shows one still shape: reordering its frames changes nothing, so every temporal score is
    exactly 0. top_r still picks r of the tokens (by position): ktr/ties_T = 1. none picks no T token; E and V, with
    spread, keep their r (V with no ties)."""
    rec = records(world)[0]
    assert rec["data_source"] == "tinyworld/appearance"
    trainer = _ktr(world, tiny_model_dir, tmp_path, no_spread=no_spread)
    trainer.model.train()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(list(to_dataset([rec]))[:1] * 4)
    log = {k: v[-1] for k, v in trainer._metrics["train"].items() if k.startswith("ktr/")}
    n = out["completion_mask"].sum().item()
    if no_spread == "top_r":
        assert log["ktr/ties_T"] == 1.0 and abs(log["ktr/T_share"] * n - 0.2 * n) <= 1
    else:
        assert log["ktr/T_share"] == 0 and log["ktr/ties_T"] == 0
    assert log["ktr/ties_V"] == 0
    # E may tie: the 4 rollouts of one prompt share their first position's distribution, so its entropy is the
    # same in each; where the top-r threshold falls there, ties are real. Each still keeps its r.
    for s in ("E", "V"):
        assert abs(log[f"ktr/{s}_share"] * n - 0.2 * n) <= 1


@pytest.mark.parametrize("weighting", ["softmax", "sigmoid", "linear", "exponential"])
def test_soft_weights_scale_advantages_with_mean_one(world, tiny_model_dir, tmp_path, weighting):
    trainer = _ktr(world, tiny_model_dir, tmp_path, weighting=weighting)
    trainer.model.train()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(_rows(world, trainer))
    assert out["advantages"].dim() == 2 and "tool_mask" not in out
    assert torch.isfinite(trainer._compute_loss(trainer.model, out))


def test_cost_meter_measures_time_memory_and_forward_flops_of_a_run(world, tiny_model_dir, tmp_path):
    """Table 4's numbers come from the run itself: KTR's attribution passes show as more forward FLOPs and time."""
    from videoktr.rl.run import train_run

    recs = records(world)[:4]
    cost = {}
    for method in ("grpo", "ktr"):
        run = {"method": method, "ratio": 0.2, "signals": ["E", "V", "T"],
               "train": dict(TRAIN, max_steps=2, save_steps=10, max_completion_length=6, diagnostics_every=0)}
        cost[method] = train_run(method, run, tiny_model_dir, recs, world, tmp_path / method, tmp_path / f"{method}_out",
                                 video_cfg=VIDEO_CFG, seed=0)["cost"]
    for c in cost.values():
        assert c["optimizer_steps"] == 2 and c["train_seconds"] > 0 and c["peak_memory_bytes"] > 10 * 2 ** 20
        assert c["samples_per_second"] == pytest.approx(2 * TRAIN["per_device_batch_size"] / c["train_seconds"])
        assert c["forward_latency_seconds"] > 0 and c["forward_flops"] > 0
    # GRPO's policy forward outside generation is the loss forward alone; KTR adds three decoder passes (prompts
    # once per group) and the chunked vocabulary projections
    assert cost["ktr"]["forward_flops"] > 1.2 * cost["grpo"]["forward_flops"]


# -- the paper path's training settings --------------------------------------------------------------------------------
SCHEDULE = ("lr_scheduler_type", "warmup_ratio", "weight_decay", "max_grad_norm")


def _schedule(args):
    return (str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)), args.warmup_steps,
            args.weight_decay, args.max_grad_norm)


def test_kl_estimator_defaults_to_plain_k3_and_bias_corrected_is_trls(tmp_path):
    from videoktr.config import schema_defaults

    assert schema_defaults("train")["kl_estimator"] == "k3"
    assert grpo_config(TRAIN, tmp_path, 0, []).use_bias_correction_kl is False
    assert grpo_config(dict(TRAIN, kl_estimator="k3"), tmp_path, 0, []).use_bias_correction_kl is False
    assert grpo_config(dict(TRAIN, kl_estimator="bias_corrected"), tmp_path, 0, []).use_bias_correction_kl is True


def test_schedule_keys_default_to_what_the_demo_trained_with_and_paper_yaml_has_the_authors_values(tmp_path):
    import yaml
    from trl import GRPOConfig

    from videoktr.config import schema_defaults

    defaults = {k: v for k, v in schema_defaults("train").items() if k in SCHEDULE}
    trl = GRPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False)
    assert _schedule(grpo_config(dict(TRAIN, **defaults), tmp_path, 0, [])) == _schedule(trl)
    assert _schedule(grpo_config(TRAIN, tmp_path, 0, [])) == _schedule(trl)  # keys absent: the same
    with open("config/paper.yaml") as f:
        paper = yaml.safe_load(f)["train"]
    paper = {**schema_defaults("train"), **paper, "deepspeed": None}
    args = grpo_config(paper, tmp_path, 0, [])
    # the authors' run_grpo_video_ktr.sh: --lr_scheduler_type cosine --weight_decay 0.01 --max_grad_norm 5, no warmup
    assert _schedule(args) == ("cosine", 0, 0.01, 5.0) and args.use_bias_correction_kl is False


def test_trained_with_reads_the_built_trainer(world, tiny_model_dir, tmp_path):
    from videoktr.rl.ktr import KTRSettings, KTRTrainer
    from videoktr.rl.run import trained_with

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    train = dict(TRAIN, lr_scheduler_type="cosine", weight_decay=0.01, max_grad_norm=5.0, warmup_ratio=0.1,
                 kl_estimator="bias_corrected")
    trainer = KTRTrainer(model=model, reward_funcs=[AccuracyReward(), format_reward_func],
                         args=grpo_config(train, tmp_path, 0, vision_token_ids(model)),
                         train_dataset=to_dataset(records(world)[:2]), processing_class=proc, data_dir=world,
                         video_cfg=VIDEO_CFG, ktr=KTRSettings(ratio=0.3, signals=("V", "T"), temporal_unit="patch"))
    got = trained_with(trainer)
    assert got["learning_rate"] == 1e-3 and got["beta"] == 0.04 and got["num_generations"] == 2
    assert got["temperature"] == 1.0 and got["lr_scheduler_type"] == "cosine" and got["warmup_steps"] == 0.1
    assert got["weight_decay"] == 0.01 and got["max_grad_norm"] == 5.0 and got["kl_estimator"] == "bias_corrected"
    assert got["ratio"] == 0.3 and got["signals"] == ["V", "T"] and got["temporal_unit"] == "patch"
    assert got["video_pixels"] == [3136, 3136]
    import json

    json.dumps(got)  # goes into metrics.json


def test_gradient_diagnostics_stay_out_of_the_measured_cost(world, tiny_model_dir, tmp_path, monkeypatch):
    """Table 4: only Video-KTR runs gradient diagnostics; their time and forwards are not in its measured cost."""
    import time

    from videoktr.rl import ktr as ktr_module
    from videoktr.rl.cost_meter import CostMeter
    from videoktr.rl.ktr import KTRSettings, KTRTrainer

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    trainer = KTRTrainer(model=model, reward_funcs=[AccuracyReward(), format_reward_func],
                         args=grpo_config(dict(TRAIN, max_steps=2), tmp_path, 0, vision_token_ids(model)),
                         train_dataset=to_dataset(records(world)[:2]), processing_class=proc, data_dir=world,
                         video_cfg=VIDEO_CFG, ktr=KTRSettings(signals=("E",)), diagnostics_every=1)
    meter = CostMeter(trainer)
    trainer.add_callback(meter)
    seen = []

    def slow_diagnostics(tr, mdl, inputs):  # a metered module's forward that takes 0.5 s
        head = tr.accelerator.unwrap_model(mdl).lm_head
        hook = head.register_forward_pre_hook(lambda *a: time.sleep(0.5))
        before = meter.forward_seconds
        try:
            with torch.no_grad():
                head(torch.zeros(1, head.in_features))
        finally:
            hook.remove()
        seen.append(meter.forward_seconds - before)
        return {"step": tr.state.global_step}

    monkeypatch.setattr(ktr_module.gradients, "diagnostics", slow_diagnostics)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    assert len(seen) == 2 and seen == [0.0, 0.0]  # no forward time of the diagnostics in the meter
    assert trainer.diagnostics_seconds >= 1.0
    assert meter.summary()["train_seconds"] <= wall - 1.0  # the meter's wall clock leaves the diagnostics out
