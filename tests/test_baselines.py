"""T-GRPO and TW-GRPO: their rules on hand-built groups, and one real training step of each on the tiny model."""

import math

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from conftest import VIDEO_CFG, records
from videoktr.rl.baselines import (
    TGRPOTrainer,
    TWGRPOTrainer,
    completion_log_softmax,
    group_mean_kl,
    minmax_token_weights,
    shuffle_frame_pairs,
    tgrpo_bonus,
    tgrpo_condition,
    twgrpo_weights,
)
from videoktr.data.model_inputs import encode, load_frames, prompt_text
from videoktr.rl.rewards import AccuracyReward, format_reward_func
from videoktr.rl.run import grpo_config, to_dataset
from videoktr.models.sft import sft_target
from videoktr.models.tiny import vision_token_ids
from videoktr.rl.grpo import join_videos, split_videos

TRAIN = {"lr": 1e-3, "beta": 0.04, "num_generations": 4, "per_device_batch_size": 4, "max_completion_length": 8,
         "temperature": 1.0, "epochs": 1, "max_steps": 1, "loss_type": "grpo", "save_steps": 1, "logging_steps": 1}


# -- T-GRPO rule -----------------------------------------------------------------------------------------------------
def bonus(ordered, groups, shuffled, mu=0.8, alpha=0.3):
    return tgrpo_bonus(torch.tensor(ordered), torch.tensor(groups), torch.tensor(shuffled), mu, alpha)


def test_tgrpo_bonus_goes_to_correct_ordered_rollouts_of_qualifying_groups_only():
    ordered = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]  # group 0: acc 0.75, group 1: acc 0.25
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    b = bonus(ordered, groups, [0.5, 0.5])  # 0.75 >= 0.4 (bonus); 0.25 < 0.4 (none)
    assert torch.allclose(b, torch.tensor([0.3, 0, 0.3, 0.3, 0, 0, 0, 0]))
    b = bonus(ordered, groups, [1.0, 0.0])  # 0.75 < 0.8 (none); shuffled acc 0: 0.25 >= 0 (bonus)
    assert torch.allclose(b, torch.tensor([0, 0, 0, 0, 0, 0, 0.3, 0]))
    assert torch.equal(tgrpo_condition(torch.tensor(ordered), torch.tensor(groups), torch.tensor([1.0, 0.0])),
                       torch.tensor([False, True]))


def test_tgrpo_edge_cases_ties_zero_and_missing_shuffled():
    # Tie at equality: 0.5 == 0.8 * 0.625 (not exact in floats) -> bonus.
    assert torch.allclose(bonus([1.0, 0.0], [0, 0], [0.625]), torch.tensor([0.3, 0.0]))
    # Just below the tie -> none.
    assert bonus([1.0, 0.0], [0, 0], [0.6251]).sum() == 0
    # Shuffled acc 0 and ordered acc 0: the condition holds (0 >= 0) but nobody is correct -> no bonus.
    assert bonus([0.0, 0.0], [0, 0], [0.0]).sum() == 0
    # No shuffled rollouts for a group (NaN) -> no bonus; unscorable ordered rollouts (NaN) never get one.
    assert bonus([1.0, 1.0], [0, 0], [math.nan]).sum() == 0
    assert torch.allclose(bonus([math.nan, 1.0], [0, 0], [0.0]), torch.tensor([0.0, 0.3]))
    # Continuous accuracies: correct means > 0.1, as in Video-R1.
    assert torch.allclose(bonus([0.05, 0.5], [0, 0], [0.0]), torch.tensor([0.0, 0.3]))
    # mu and alpha are honoured.
    assert torch.allclose(bonus([1.0, 0.0], [0, 0], [1.0], mu=0.5, alpha=1.0), torch.tensor([1.0, 0.0]))
    assert bonus([1.0, 0.0], [0, 0], [1.0], mu=0.51).sum() == 0


def test_frame_pairs_move_together():
    frames = np.arange(7)[:, None, None, None] * np.ones((7, 2, 2, 3), dtype=np.uint8)
    out = shuffle_frame_pairs(frames, torch.tensor([2, 0, 1]), patch=2)
    assert out[:, 0, 0, 0].tolist() == [4, 5, 0, 1, 2, 3, 6]
    assert out.shape == frames.shape and out.dtype == frames.dtype


# -- TW-GRPO rule ----------------------------------------------------------------------------------------------------
def random_logprobs(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).mul(3).log_softmax(-1)


def test_twgrpo_identical_rollouts_weigh_one_and_padding_zero():
    one = random_logprobs(1, 6, 11)
    lp = one.expand(3, 6, 11).clone()
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]])
    w = twgrpo_weights(lp, mask, torch.zeros(3, dtype=torch.long))
    assert torch.equal(w, mask.float())
    assert group_mean_kl(lp, mask).abs().max() < 1e-5


def test_twgrpo_weights_span_one_to_alpha_with_alpha_at_the_largest_divergence():
    lp = random_logprobs(8, 10, 13)
    mask = torch.ones(8, 10, dtype=torch.long)
    mask[1, 6:] = 0
    mask[5, 3:] = 0
    groups = torch.arange(8) // 4
    w = twgrpo_weights(lp, mask, groups, alpha=1.7)
    valid = mask.bool()
    assert (w[~valid] == 0).all()
    assert (w[valid] >= 1 - 1e-6).all() and (w[valid] <= 1.7 + 1e-6).all()
    # Direct reference: KL of each rollout from its group's mean distribution over the rollouts valid there.
    p = lp.exp()
    div = torch.zeros(8, 10)
    for i in range(8):
        g = groups == groups[i]
        for t in range(10):
            if not valid[i, t]:
                continue
            mean = p[g & valid[:, t], t].mean(0)
            div[i, t] = (p[i, t] * (lp[i, t] - mean.log())).sum()
    assert torch.allclose(group_mean_kl(lp[:4], mask[:4]), div[:4], atol=1e-5)
    for i in range(8):
        d = div[i][valid[i]]
        assert math.isclose(w[i, div[i].masked_fill(~valid[i], -1).argmax()].item(), 1.7, rel_tol=1e-6)
        assert math.isclose(w[i][valid[i]][d.argmin()].item(), 1.0, rel_tol=1e-6)
        ref = 1 + 0.7 * (d - d.min()) / (d.max() - d.min())
        assert torch.allclose(w[i][valid[i]], ref, atol=1e-5)
    # Only one group's [G, T, V] at a time: the lazy form gives the same weights.
    seen = []
    lazy = twgrpo_weights(lambda rows: seen.append(rows) or lp[rows], mask, groups, alpha=1.7)
    assert torch.equal(lazy, w) and seen == [slice(0, 4), slice(4, 8)]
    # A position held by one rollout only diverges by 0 from its own "mean"; a one-token rollout weighs 1.
    single = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert group_mean_kl(lp[:2, :3], single)[0, 1:].abs().max() < 1e-6
    assert twgrpo_weights(lp[:2, :3], single, torch.zeros(2, dtype=torch.long))[1].tolist() == [1.0, 0.0, 0.0]


def test_twgrpo_group_scope_shares_one_weight_per_position():
    lp = random_logprobs(4, 5, 7, seed=1)
    mask = torch.ones(4, 5, dtype=torch.long)
    w = twgrpo_weights(lp, mask, torch.zeros(4, dtype=torch.long), scope="group")
    assert torch.allclose(w, w[:1].expand_as(w)) and math.isclose(w.max().item(), 1.7, rel_tol=1e-6)
    with pytest.raises(ValueError):
        minmax_token_weights(torch.zeros(2, 2), torch.ones(2, 2), scope="batch")


# -- trainers on the tiny model --------------------------------------------------------------------------------------
def make(cls, world, tiny_model_dir, tmp_path, recs, reward_funcs=None, train=TRAIN, **kwargs):
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return cls(model=model, reward_funcs=reward_funcs or [AccuracyReward(), format_reward_func],
               args=grpo_config(train, tmp_path, 0, vision_token_ids(model)), train_dataset=to_dataset(recs),
               processing_class=proc, data_dir=world, video_cfg=VIDEO_CFG, **kwargs)


def logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


def test_tgrpo_step_runs_shuffled_rollouts_and_logs(world, tiny_model_dir, tmp_path):
    recs = [r for r in records(world) if len({f.tobytes() for f in load_frames(r, world, VIDEO_CFG)[::2]}) == 8][:1]
    assert recs, "the world needs a clip whose 8 frame pairs all differ"
    trainer = make(TGRPOTrainer, world, tiny_model_dir, tmp_path, recs, temporal_unit="patch")
    calls = []
    sample = trainer._generate_single_turn

    def spy(prompt_ids, images, fields, n):
        calls.append((len(prompt_ids), fields["video_grid_thw"].clone(), fields["pixel_values_videos"].clone()))
        return sample(prompt_ids, images, fields, n)

    trainer._generate_single_turn = spy
    trainer.train()
    # One ordered call for the 4 rollouts of the one prompt, then G // 2 = 2 shuffled rollouts.
    assert [c[0] for c in calls] == [4, 2]
    assert torch.equal(calls[1][1], calls[0][1][:2])  # same clip geometry, frames reordered
    t, h, w = calls[0][1][0].tolist()
    ordered, shuffled = (c[2][: t * h * w].view(t, h * w, -1) for c in calls)
    assert torch.equal(calls[1][2][: t * h * w], calls[1][2][t * h * w:])  # one shuffle order per group
    order = [next(j for j in range(t) if torch.equal(s, ordered[j])) for s in shuffled]
    assert sorted(order) == list(range(t)) and order != list(range(t))  # whole temporal patches, permuted
    assert logged(trainer, "tgrpo/bonus_applied")[0] in (0.0, 1.0)
    assert 0.0 <= logged(trainer, "tgrpo/shuffled_accuracy")[0] <= 1.0
    assert trainer.state.global_step == 1


def test_tgrpo_frame_unit_shuffles_decoded_frames_before_the_processor(world, tiny_model_dir, tmp_path):
    """temporal_unit 'frame' (default, Video-R1's code): the shuffled rollouts see the processor's output for the
    clip's frames in a new order (not whole 2-frame patches)."""
    from videoktr.rl.attribution import temporal_permutation

    recs = records(world)[:1]
    trainer = make(TGRPOTrainer, world, tiny_model_dir, tmp_path, recs)
    assert trainer.temporal_unit == "frame"
    calls = []
    sample = trainer._generate_single_turn

    def spy(prompt_ids, images, fields, n):
        calls.append(fields["pixel_values_videos"].clone())
        return sample(prompt_ids, images, fields, n)

    trainer._generate_single_turn = spy
    trainer.train()
    frames = load_frames(recs[0], world, VIDEO_CFG)
    perm = temporal_permutation(len(frames), torch.Generator().manual_seed(0))  # seed 0, step 0, group 0
    assert (perm.view(-1, 2)[:, 1] != perm.view(-1, 2)[:, 0] + 1).any()  # not a permutation of frame pairs
    expected = encode(trainer.processing_class, [prompt_text(trainer.processing_class, recs[0])],
                      [frames[perm.numpy()]], VIDEO_CFG["fps"])["pixel_values_videos"]
    rows = expected.size(0)
    assert len(calls) == 2 and torch.equal(calls[1][:rows], expected) and torch.equal(calls[1][rows:], expected)


def test_tgrpo_bonus_lands_in_the_accuracy_column(world, tiny_model_dir, tmp_path):
    def accuracy(completions, **kwargs):  # everyone correct, ordered and shuffled: 1 >= 0.8 * 1 -> bonus for all
        return [1.0] * len(completions)

    accuracy.__name__ = "accuracy"
    trainer = make(TGRPOTrainer, world, tiny_model_dir, tmp_path, records(world)[:2],
                   reward_funcs=[format_reward_func, accuracy], alpha=0.3)
    trainer.train()
    assert logged(trainer, "tgrpo/bonus_applied") == [1.0]
    assert logged(trainer, "tgrpo/shuffled_accuracy") == [1.0]
    assert math.isclose(logged(trainer, "rewards/accuracy/mean")[0], 1.3, rel_tol=1e-6)
    assert logged(trainer, "rewards/format/mean")[0] < 1.3  # the format column is untouched
    with pytest.raises(ValueError, match="accuracy"):
        make(TGRPOTrainer, world, tiny_model_dir, tmp_path, records(world)[:2], reward_funcs=[format_reward_func])


def test_twgrpo_log_probs_see_the_video_and_match_the_loss_path(world, tiny_model_dir, tmp_path):
    recs = records(world)[:2]
    trainer = make(TWGRPOTrainer, world, tiny_model_dir, tmp_path, recs)
    proc = trainer.processing_class
    texts = [prompt_text(proc, r) + sft_target(recs[0]) + "<|im_end|>" for r in recs]
    n = len(proc.tokenizer(sft_target(recs[0]) + "<|im_end|>")["input_ids"])
    batch = encode(proc, texts, [load_frames(r, world, VIDEO_CFG) for r in recs], VIDEO_CFG["fps"])
    trainer._videos = split_videos(batch)
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        loss_path, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, batch["input_ids"], batch["attention_mask"], n)
        chunks = list(completion_log_softmax(model, batch["input_ids"], batch["attention_mask"], n,
                                             join_videos(trainer._videos), chunk=3))
    full = torch.cat([lp for _, lp in chunks], dim=1)
    assert len(chunks) == math.ceil(n / 3) and full.shape[:2] == (2, n)
    picked = full.gather(-1, batch["input_ids"][:, -n:, None])[..., 0]
    assert torch.allclose(picked, loss_path, atol=1e-5)
    # Same text, other clips: the distributions differ, so the divergence carries the video.
    assert group_mean_kl(full, torch.ones(2, n)).max() > 1e-6


def test_twgrpo_step_weights_the_advantages_and_logs(world, tiny_model_dir, tmp_path):
    def accuracy(completions, **kwargs):  # alternating rewards: nonzero advantages to weigh
        return [float(i % 2) for i in range(len(completions))]

    accuracy.__name__ = "accuracy"
    trainer = make(TWGRPOTrainer, world, tiny_model_dir, tmp_path, records(world)[:2], reward_funcs=[accuracy])
    seen = []
    compute = trainer._compute_loss

    def spy(model, inputs):
        seen.append({k: inputs[k].clone() for k in ("advantages", "completion_mask")})
        return compute(model, inputs)

    trainer._compute_loss = spy
    trainer.train()
    adv, mask = seen[0]["advantages"], seen[0]["completion_mask"].bool()
    assert adv.shape == mask.shape and (adv[~mask] == 0).all()
    spans = []
    for row, m in zip(adv, mask):
        a = row[m].abs()  # one sign per rollout; magnitudes within [|A|, 1.7 |A|], 1.7 |A| where it diverges most
        assert (row[m] > 0).all() or (row[m] < 0).all()
        spans.append((a.max() / a.min()).item())
    assert all(s <= 1.7 + 1e-5 for s in spans) and max(spans) > 1.7 - 1e-4
    weight = logged(trainer, "twgrpo/mean_weight")
    assert weight and 1.0 < weight[0] < 1.7
