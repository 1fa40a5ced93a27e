"""Attribution: pure functions, and the cheap counterfactual passes against a direct reference on the tiny model."""

from types import SimpleNamespace

import numpy as np
import pytest

import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from conftest import VIDEO_CFG, records
from videoktr.rl.attribution import (key_token_masks, temporal_permutation, threshold_mask, ties_at_threshold,
                                     top_fraction_mask)
from videoktr.data.model_inputs import encode, load_frames, prompt_text
from videoktr.models.sft import sft_target
from videoktr.rl.rewards import AccuracyReward, format_reward_func
from videoktr.rl.run import grpo_config, to_dataset
from videoktr.models.tiny import vision_token_ids
from videoktr.rl.grpo import split_videos
from videoktr.rl.ktr import KTRSettings, KTRTrainer

TRAIN = {"lr": 1e-3, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 2, "max_completion_length": 8,
         "temperature": 1.0, "epochs": 1, "max_steps": 1, "loss_type": "grpo", "save_steps": 1, "logging_steps": 1, "diagnostics_every": 1}


def test_top_fraction_selects_r_of_each_group_within_one_token():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(8, 30, generator=g)
    valid = torch.arange(30).expand(8, 30) < torch.randint(5, 31, (8, 1), generator=g)
    groups = torch.arange(8) // 4
    for ratio in (0.1, 0.2, 0.35, 0.5):
        sel = top_fraction_mask(scores, valid, ratio, groups)
        assert not (sel & ~valid).any()
        for grp in (0, 1):
            n = valid[groups == grp].sum().item()
            assert abs(sel[groups == grp].sum().item() - ratio * n) <= 1
            # every selected token outscores every unselected valid token of its group
            s, v, m = scores[groups == grp], valid[groups == grp], sel[groups == grp]
            assert s[m].min() >= s[v & ~m].max()


def test_union_is_the_or_of_the_signals():
    scores = {k: torch.rand(4, 10) for k in "EVT"}
    valid = torch.ones(4, 10, dtype=torch.bool)
    union, per = key_token_masks(scores, valid, 0.2, torch.zeros(4, dtype=torch.long))
    assert torch.equal(union, per["E"] | per["V"] | per["T"])
    only_v, per_v = key_token_masks(scores, valid, 0.2, torch.zeros(4, dtype=torch.long), signals=("V",))
    assert torch.equal(only_v, per["V"]) and set(per_v) == {"V"}


def test_a_flat_signal_selects_r_by_position_or_nothing_and_its_ties_are_counted():
    """A static clip's temporal scores are all 0: top_r still takes round(r * n) tokens (by position), every one
    of them a tie at the threshold; no_spread 'none' takes none. A signal with spread is untouched by the switch."""
    valid = torch.ones(4, 10, dtype=torch.bool)
    valid[1, 7:] = False
    groups = torch.tensor([0, 0, 1, 1])
    flat = torch.zeros(4, 10)
    spread = torch.arange(40.0).view(4, 10)
    spread[2:] = 0  # group 1 flat, group 0 with spread
    sel = top_fraction_mask(flat, valid, 0.2, groups)
    assert sel.sum() == round(0.2 * 17) + round(0.2 * 20)
    assert torch.equal(ties_at_threshold(flat, sel, valid, groups), sel)  # every pick is a tie
    assert not top_fraction_mask(flat, valid, 0.2, groups, no_spread="none").any()
    noisy = flat.clone()
    noisy[0, 3] = noisy[3, 1] = 4.8e-7  # float noise of two passes (TIE_ATOL): still no spread, still ties
    picked = top_fraction_mask(noisy, valid, 0.2, groups)
    assert torch.equal(ties_at_threshold(noisy, picked, valid, groups), picked)
    assert not top_fraction_mask(noisy, valid, 0.2, groups, no_spread="none").any()
    mixed = top_fraction_mask(spread, valid, 0.2, groups, no_spread="none")
    assert torch.equal(mixed[:2], top_fraction_mask(spread, valid, 0.2, groups)[:2]) and not mixed[2:].any()
    # continuous scores: no ties, and the switch changes nothing
    scores = torch.rand(4, 10, generator=torch.Generator().manual_seed(0))
    for no_spread in ("top_r", "none"):
        union, per = key_token_masks({"E": scores, "T": flat}, valid, 0.2, groups, ("E", "T"), no_spread)
        assert not ties_at_threshold(scores, per["E"], valid, groups).any()
        assert torch.equal(per["E"], top_fraction_mask(scores, valid, 0.2, groups))
        assert torch.equal(union, per["E"] | per["T"]) and per["T"].any() == (no_spread == "top_r")
    # a partial tie: the cut falls inside three equal scores, two of them selected (by position)
    row = torch.tensor([[5.0, 3.0, 3.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    one = torch.ones(1, 10, dtype=torch.bool)
    pick = top_fraction_mask(row, one, 0.3, torch.zeros(1, dtype=torch.long))
    tied = ties_at_threshold(row, pick, one, torch.zeros(1, dtype=torch.long))
    assert pick.sum() == 3 and tied.sum() == 2 and not tied[0, 0]
    with pytest.raises(ValueError, match="no_spread"):
        top_fraction_mask(row, one, 0.3, torch.zeros(1, dtype=torch.long), no_spread="all")


def test_batch_scope_takes_the_whole_tie_and_none_takes_nothing_on_a_flat_signal():
    valid = torch.ones(2, 5, dtype=torch.bool)
    flat = torch.zeros(2, 5)
    everything = flat[valid]
    assert threshold_mask(flat, valid, 0.2, everything).all()  # >= threshold: the whole tie
    assert ties_at_threshold(flat, valid, valid, all_valid_scores=everything, ratio=0.2).all()
    assert not threshold_mask(flat, valid, 0.2, everything, no_spread="none").any()
    scores = torch.arange(10.0).view(2, 5)
    sel = threshold_mask(scores, valid, 0.2, scores[valid], no_spread="none")
    assert sel.sum() == 2 and not ties_at_threshold(scores, sel, valid, all_valid_scores=scores[valid], ratio=0.2).any()


def test_temporal_permutation_is_never_the_identity():
    g = torch.Generator().manual_seed(1)
    for n in (2, 3, 8):
        for _ in range(50):
            p = temporal_permutation(n, g)
            assert sorted(p.tolist()) == list(range(n)) and p.tolist() != list(range(n))


def _plain_logps(model, batch, n):
    with torch.no_grad():
        logits = model(**batch).logits[:, -n - 1:-1]
    logp = logits.log_softmax(-1)
    return logp.gather(-1, batch["input_ids"][:, -n:, None])[..., 0], -(logp.exp() * logp).sum(-1)


def ktr_trainer(world, model_dir, tmp_path, **settings):
    proc = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
    train = dict(TRAIN, num_generations=2, per_device_batch_size=2)
    return KTRTrainer(model=model, reward_funcs=[AccuracyReward(), format_reward_func],
                      args=grpo_config(train, tmp_path, 0, vision_token_ids(model)),
                      train_dataset=to_dataset(records(world)[:2]), processing_class=proc, data_dir=world,
                      video_cfg=VIDEO_CFG, ktr=KTRSettings(**settings))


def test_trainer_scores_equal_the_direct_reference(world, tiny_model_dir, tmp_path):
    """Zeroed features / re-encoded shuffled frames through the plain model give the trainer's scores to 1e-5."""
    trainer = ktr_trainer(world, tiny_model_dir, tmp_path, chunk=5, temporal_unit="patch")
    proc, plain = trainer.processing_class, Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    rec = records(world)[1]
    frames = load_frames(rec, world, VIDEO_CFG)
    prompt = prompt_text(proc, rec)
    completion = sft_target(rec) + "<|im_end|>"
    batch = encode(proc, [prompt + completion], [frames], VIDEO_CFG["fps"])
    n = len(proc.tokenizer(completion)["input_ids"])
    trainer._videos = split_videos(batch)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    output = {"prompt_ids": ids[:, :-n], "prompt_mask": mask[:, :-n], "completion_ids": ids[:, -n:],
              "completion_mask": mask[:, -n:]}
    scores = trainer.attribution_scores(output)

    full, entropy = _plain_logps(plain, batch, n)
    perm = temporal_permutation(8, torch.Generator().manual_seed(0))  # the trainer's first draw
    shuffled = frames.reshape(8, 2, *frames.shape[1:])[perm.numpy()].reshape(frames.shape)  # pairs = one patch
    shuf, _ = _plain_logps(plain, encode(proc, [prompt + completion], [shuffled], VIDEO_CFG["fps"]), n)
    hook = plain.model.visual.register_forward_hook(
        lambda mod, args, out: out.__class__(**{**out, "pooler_output": torch.zeros_like(out.pooler_output)}))
    try:
        zero, _ = _plain_logps(plain, batch, n)
    finally:
        hook.remove()
    assert torch.allclose(scores["E"], entropy, atol=1e-5)
    assert torch.allclose(scores["V"], (full - zero).abs(), atol=1e-5)
    assert torch.allclose(scores["T"], (full - shuf).abs(), atol=1e-5)
    assert scores["V"].max() > 1e-4 and scores["T"].max() > 1e-6  # the perturbations do move the log-probs


def _row_logps(model, ids, videos, n, frames=None):
    """Log-probs of the last n tokens and entropies, one unpadded row through the plain model."""
    with torch.no_grad():
        logp = model(input_ids=ids[None], mm_token_type_ids=(ids == model.config.video_token_id).long()[None] * 2,
                     **videos).logits[0, -n - 1:-1].log_softmax(-1)
    return logp.gather(-1, ids[-n:, None])[:, 0], -(logp.exp() * logp).sum(-1)


def test_shared_prompt_passes_equal_per_row_reference_on_a_padded_batch(world, tiny_model_dir, tmp_path):
    """Two questions x two rollouts of different lengths: the group-shared prompt cache, the reuse of generation's
    vision features and the batched variants give every row the scores of its own plain forward (1e-5)."""
    trainer = ktr_trainer(world, tiny_model_dir, tmp_path, chunk=4, temporal_unit="patch")
    proc, plain = trainer.processing_class, Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    recs = records(world)[:2]
    frames = [load_frames(r, world, VIDEO_CFG) for r in recs]
    prompts = encode(proc, [prompt_text(proc, r) for r in recs for _ in range(2)],
                     [f for f in frames for _ in range(2)], VIDEO_CFG["fps"], padding_side="left")
    texts = [sft_target(r) + "<|im_end|>" for r in recs]
    completions = [proc.tokenizer(t)["input_ids"] for t in texts]
    completions = [c for full in completions for c in (full, full[: len(full) // 2])]  # 2 rollouts per question
    n = max(map(len, completions))
    cids = torch.tensor([c + [proc.tokenizer.pad_token_id] * (n - len(c)) for c in completions])
    cmask = torch.tensor([[1] * len(c) + [0] * (n - len(c)) for c in completions])
    output = {"prompt_ids": prompts["input_ids"], "prompt_mask": prompts["attention_mask"], "completion_ids": cids,
              "completion_mask": cmask}
    trainer._videos = split_videos(prompts)
    scores = trainer.attribution_scores(output)
    # the vision features generation kept give the same scores as the attribution's own encoder run
    trainer._tap = SimpleNamespace(features=plain.model.visual(prompts["pixel_values_videos"],
                                                               grid_thw=prompts["video_grid_thw"]).pooler_output,
                                   scores=lambda n: None)
    again = trainer.attribution_scores(output)
    for key in scores:
        assert torch.allclose(scores[key], again[key], atol=1e-6)

    rng = torch.Generator().manual_seed(0)
    perms = [temporal_permutation(8, rng) for _ in recs]  # one draw per question group, in batch order
    zero = plain.model.visual.register_forward_hook(
        lambda mod, args, out: out.__class__(**{**out, "pooler_output": torch.zeros_like(out.pooler_output)}))
    for row, completion in enumerate(completions):
        q, m = row // 2, len(completion)
        ids = torch.cat([prompts["input_ids"][row][prompts["attention_mask"][row].bool()], torch.tensor(completion)])
        clip = encode(proc, [prompt_text(proc, recs[q])], [frames[q]], VIDEO_CFG["fps"])
        shuffled = frames[q].reshape(8, 2, *frames[q].shape[1:])[perms[q].numpy()].reshape(frames[q].shape)
        shuf_clip = encode(proc, [prompt_text(proc, recs[q])], [shuffled], VIDEO_CFG["fps"])
        videos = lambda c: {k: c[k] for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")}
        zero.remove()
        full, entropy = _row_logps(plain, ids, videos(clip), m)
        shuf, _ = _row_logps(plain, ids, videos(shuf_clip), m)
        zero = plain.model.visual.register_forward_hook(
            lambda mod, args, out: out.__class__(**{**out, "pooler_output": torch.zeros_like(out.pooler_output)}))
        blind, _ = _row_logps(plain, ids, videos(clip), m)
        assert torch.allclose(scores["E"][row, :m], entropy, atol=1e-5)
        assert torch.allclose(scores["V"][row, :m], (full - blind).abs(), atol=1e-5)
        assert torch.allclose(scores["T"][row, :m], (full - shuf).abs(), atol=1e-5)
    zero.remove()


def test_generation_tap_gives_the_full_pass_scores(world, tiny_model_dir, tmp_path):
    """The log-probs and entropies kept from generation's own decoding steps equal a full forward's (so the full
    pass is skipped), and the batch's scores come out the same either way."""
    trainer = ktr_trainer(world, tiny_model_dir, tmp_path)
    rows = [r for r in trainer.train_dataset.select(range(2)) for _ in range(trainer.num_generations)]
    output = trainer._generate_and_score_completions(rows)
    n = output["completion_ids"].size(1)
    assert trainer._tap.scores(n) is not None and trainer._tap.features is not None
    tapped = trainer.attribution_scores(output)
    trainer._tap.logps = []  # no generation scores: the full pass runs
    full = trainer.attribution_scores(output)
    valid = output["completion_mask"].bool()
    for key in ("E", "V", "T"):
        assert torch.allclose(tapped[key][valid], full[key][valid], atol=1e-4), key
    assert valid.sum() > 4 and full["T"][valid].max() > 1e-6


def test_frame_unit_temporal_counterfactual_is_the_processed_permuted_frames(world, tiny_model_dir, tmp_path):
    """temporal_unit 'frame' (default): the T pass sees exactly what the processor makes of the reordered decoded
    frames (the paper, Video-R1, the authors' code), and the scores equal the plain model on those frames."""
    trainer = ktr_trainer(world, tiny_model_dir, tmp_path, chunk=5)
    assert trainer.ktr.temporal_unit == "frame"
    proc, plain = trainer.processing_class, Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    rec = records(world)[1]
    frames = load_frames(rec, world, VIDEO_CFG)
    prompt, completion = prompt_text(proc, rec), sft_target(rec) + "<|im_end|>"
    batch = encode(proc, [prompt + completion], [frames], VIDEO_CFG["fps"])
    n = len(proc.tokenizer(completion)["input_ids"])
    trainer._videos, trainer._frames = split_videos(batch), [frames]
    ids, mask = batch["input_ids"], batch["attention_mask"]
    output = {"prompt_ids": ids[:, :-n], "prompt_mask": mask[:, :-n], "completion_ids": ids[:, -n:],
              "completion_mask": mask[:, -n:]}
    perm = temporal_permutation(len(frames), torch.Generator().manual_seed(0))  # the trainer's first draw
    trainer._perm_rng.manual_seed(0)
    shuffled_input = trainer.frame_shuffled_clips([0])[0]
    assert np.array_equal(shuffled_input, frames[perm.numpy()])
    assert sorted(perm.tolist()) == list(range(16)) and (perm.view(8, 2)[:, 1] != perm.view(8, 2)[:, 0] + 1).any()
    shuffled = encode(proc, [prompt + completion], [frames[perm.numpy()]], VIDEO_CFG["fps"])
    processed = proc.video_processor(videos=[shuffled_input], return_tensors="pt")
    assert torch.equal(processed["pixel_values_videos"], shuffled["pixel_values_videos"])

    scores = trainer.attribution_scores(output)
    full, _ = _plain_logps(plain, batch, n)
    shuf, _ = _plain_logps(plain, shuffled, n)
    assert torch.allclose(scores["T"], (full - shuf).abs(), atol=1e-5) and scores["T"].max() > 1e-6


def test_other_clip_with_one_prompt_group_takes_another_video_of_the_dataset(world, tiny_model_dir, tmp_path):
    """Fig. 10 visual-replace in the paper's layout (one question group per device): no error; the V pass sees the
    encoded clip of another training video at this clip's grid, and the scores equal the plain model fed those
    features."""
    from videoktr.rl.attribution import visual_perturbation

    with pytest.raises(ValueError, match="two prompt groups"):
        visual_perturbation([torch.ones(4, 3)], "other_clip", torch.Generator(), 1)
    trainer = ktr_trainer(world, tiny_model_dir, tmp_path, chunk=5, signals=("V",), visual_perturbation="other_clip")
    proc, plain = trainer.processing_class, Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    rec = records(world)[0]
    assert records(world)[1]["path"] != rec["path"]
    frames = load_frames(rec, world, VIDEO_CFG)
    prompt, completion = prompt_text(proc, rec), sft_target(rec) + "<|im_end|>"
    batch = encode(proc, [prompt + completion] * 2, [frames] * 2, VIDEO_CFG["fps"])  # one group of 2 rollouts
    n = len(proc.tokenizer(completion)["input_ids"])
    trainer._videos, trainer._frames, trainer._batch_rows = split_videos(batch), [frames] * 2, [rec] * 2
    ids, mask = batch["input_ids"], batch["attention_mask"]
    output = {"prompt_ids": ids[:, :-n], "prompt_mask": mask[:, :-n], "completion_ids": ids[:, -n:],
              "completion_mask": mask[:, -n:]}
    donated = []
    donor_features = trainer.donor_features
    trainer.donor_features = lambda model, reps: donated.append(donor_features(model, reps)) or donated[-1]
    scores = trainer.attribution_scores(output)
    assert len(donated) == 1 and len(donated[0]) == 1
    own = plain.model.visual(batch["pixel_values_videos"][: batch["pixel_values_videos"].size(0) // 2],
                             grid_thw=batch["video_grid_thw"][:1]).pooler_output
    assert donated[0][0].shape == own.shape and not torch.allclose(donated[0][0], own)
    full, _ = _plain_logps(plain, batch, n)
    hook = plain.model.visual.register_forward_hook(lambda mod, args, out: out.__class__(
        **{**out, "pooler_output": torch.cat([donated[0][0]] * 2)}))
    try:
        other, _ = _plain_logps(plain, batch, n)
    finally:
        hook.remove()
    assert torch.allclose(scores["V"], (full - other).abs(), atol=1e-5) and scores["V"].max() > 1e-5
