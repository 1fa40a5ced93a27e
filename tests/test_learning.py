"""The tiny world as an instrument: tests that a trainer which does nothing fails.

- a short RL run raises the accuracy reward on its own training questions, for GRPO and for Video-KTR;
- an all-zero key mask leaves every weight as it was; a partial one reaches loss and gradient only through the
  selected tokens (every parameter).
"""

import time

import pytest
import torch
from conftest import VIDEO_CFG, records, selected_tokens_grpo_loss
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from videoktr.data.model_inputs import encode, load_frames, prompt_text
from videoktr.models.tiny import vision_token_ids
from videoktr.rl.grpo import VideoGRPOTrainer
from videoktr.rl.ktr import KTRSettings, KTRTrainer
from videoktr.rl.rewards import AccuracyReward
from videoktr.rl.run import grpo_config, to_dataset

# The learning runs: two questions of the fixture world whose answer is B, their SFT mix 3/8 B, 5/8 A (below); G = 4,
# two questions per step. (Questions with different right letters do not work as well: the fixture model, hidden
# size 32 and one layer, barely tells the questions apart, so one letter moving up moves for both.)
QUESTIONS = (1, 5)  # "Which colour appears first?", "In which direction does the shape move?": both B
WRONG = {"B": "A"}  # the SFT mix's wrong letter
LEARN = {"lr": 3e-3, "beta": 0.0, "num_generations": 4, "per_device_batch_size": 8, "max_completion_length": 14,
         "temperature": 1.0, "epochs": 1, "max_steps": 32, "loss_type": "grpo", "save_steps": 1000,
         "logging_steps": 1, "diagnostics_every": 0, "lr_scheduler_type": "constant_with_warmup",
         "warmup_ratio": 0.125, "weight_decay": 0.0}
SFT_STEPS, SFT_LR = 100, 1e-2

TRAIN = {"lr": 1e-3, "beta": 0.0, "num_generations": 2, "per_device_batch_size": 4, "max_completion_length": 8,
         "temperature": 1.0, "epochs": 1, "max_steps": 1, "loss_type": "grpo", "save_steps": 100, "logging_steps": 1,
         "diagnostics_every": 0, "weight_decay": 0.0}


def length_reward(prompts, completions, **kwargs):
    """A reward that differs between a random model's rollouts (their lengths), so advantages are not all 0."""
    return [float(len(c[-1]["content"] if isinstance(c, list) else c)) for c in completions]


class NoKeyTokens(KTRTrainer):
    """Video-KTR whose key mask is empty: nothing is selected, whatever the scores."""

    def select(self, scores, valid):
        key, per_signal = super().select(scores, valid)
        return torch.zeros_like(key), {k: torch.zeros_like(m) for k, m in per_signal.items()}


def _trainer(cls, world, model_dir, tmp_path, train=None, **settings):
    proc = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    return cls(model=model, reward_funcs=[length_reward, AccuracyReward()],
               args=grpo_config(dict(TRAIN, **(train or {})), tmp_path, 0, vision_token_ids(model)),
               train_dataset=to_dataset(records(world)[:2] * 2), processing_class=proc, data_dir=world,
               video_cfg=VIDEO_CFG, ktr=KTRSettings(**settings))


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cls", [NoKeyTokens, KTRTrainer])
def test_an_empty_key_mask_leaves_every_weight_unchanged_and_a_real_one_moves_them(world, tiny_model_dir, tmp_path,
                                                                                    cls):
    """beta 0 and no weight decay: only the policy term could move a weight. With no key token (NoKeyTokens) an
    optimizer step leaves every parameter bit for bit as it was; the same step with KTR's own selection moves them
    (the rollouts' rewards differ, so the advantages are not 0): the check can fail."""
    trainer = _trainer(cls, world, tiny_model_dir, tmp_path)
    before = _weights(trainer.model)
    trainer.train()
    after = _weights(trainer.model)
    log = trainer.state.log_history[0]
    assert log["reward_std"] > 0  # advantages that are not all 0
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    if cls is NoKeyTokens:
        assert log["ktr/union_share"] == 0 and log["loss"] == 0
        assert moved == []
    else:
        assert log["ktr/union_share"] > 0 and len(moved) > len(before) // 2


def test_a_partial_key_mask_reaches_loss_and_every_gradient_only_through_the_selected_tokens(world, tiny_model_dir,
                                                                                              tmp_path):
    """Over every parameter (vision encoder included): the KTR gradient is the gradient of the GRPO loss written
    out over the selected tokens alone, it differs from the full GRPO gradient, and advantages changed on the
    unselected tokens change neither the loss nor any gradient. (test_trainers.py's tool_mask test checks value and
    the last decoder layer.)"""
    trainer = _trainer(KTRTrainer, world, tiny_model_dir, tmp_path, train={"beta": 0.04})
    trainer.current_gradient_accumulation_steps = 1  # set by train(); the loss is called directly here
    trainer.model.train()
    torch.manual_seed(0)
    rows = [r for r in trainer.train_dataset.select(range(2)) for _ in range(trainer.num_generations)]
    out = trainer._generate_and_score_completions(rows)
    valid, key = out["completion_mask"], out["key_mask"]
    assert 0 < (valid * key).sum() < valid.sum()
    out["advantages"] = torch.randn(valid.shape, generator=torch.Generator().manual_seed(1))
    names, params = zip(*[(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad])

    def value_and_grads(loss):
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    ktr_loss, ktr_grads = value_and_grads(trainer._compute_loss(trainer.model, out))
    # the same batch, advantages redrawn on the unselected tokens only
    noisy = dict(out, advantages=torch.where(key.bool(), out["advantages"],
                                             100 * torch.randn(valid.shape, generator=torch.Generator().manual_seed(2))))
    noisy_loss, noisy_grads = value_and_grads(trainer._compute_loss(trainer.model, noisy))
    # GRPO over the selected tokens alone, written out
    sel_loss, sel_grads = value_and_grads(selected_tokens_grpo_loss(trainer, out, key))
    _, full_grads = value_and_grads(VideoGRPOTrainer._compute_loss(
        trainer, trainer.model, {k: v for k, v in out.items() if k not in ("tool_mask", "key_mask")}))

    assert torch.equal(noisy_loss, ktr_loss) and torch.allclose(ktr_loss, sel_loss, rtol=1e-5, atol=1e-7)
    nonzero = 0
    for name, g, g_noisy, g_sel, g_full in zip(names, ktr_grads, noisy_grads, sel_grads, full_grads):
        g, g_noisy, g_sel = (x if x is not None else torch.zeros_like(p) for x, p in
                             zip((g, g_noisy, g_sel), [trainer.model.get_parameter(name)] * 3))
        assert torch.allclose(g, g_noisy, rtol=1e-6, atol=1e-9), name
        assert torch.allclose(g, g_sel, rtol=1e-4, atol=1e-8), name
        nonzero += bool(g.abs().max() > 0)
    assert nonzero > len(names) // 2  # the gradient reaches most parameters, the vision encoder's among them
    assert any(g is not None and g.abs().max() > 0 for n, g in zip(names, ktr_grads) if "visual" in n)
    flat = lambda gs: torch.cat([(g if g is not None else torch.zeros(1)).flatten() for g in gs])
    assert not torch.allclose(flat(ktr_grads), flat(full_grads), rtol=1e-3)  # not the full GRPO gradient


# -- learning: a short RL run raises the accuracy reward on its own training questions ---------------------------------
def sft_target_letter(letter: str) -> str:
    return f"<think></think><answer>{letter}</answer>"


@pytest.fixture(scope="module")
def mixed_sft_model(world, tiny_model_dir, tmp_path_factory):
    """The fixture model (random init) fine-tuned on the learning questions with a short think-then-answer target
    whose answer is the right letter 3 times in 8 and a wrong one 5 times (a weighted loss over one row of each):
    an SFT model with accuracy about 3/8 on each, as the demo's SFT model has on the questions the filter keeps.
    Full-batch Adam, fixed seed."""
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    texts, clips, starts, weights = [], [], [], []
    for rec in (records(world)[i] for i in QUESTIONS):
        right = rec["solution"][len("<answer>"):-len("</answer>")]
        prompt = prompt_text(proc, rec)
        for letter, w in ((right, 3 / 8), (WRONG[right], 5 / 8)):
            texts.append(prompt + sft_target_letter(letter) + "<|im_end|>")
            clips.append(load_frames(rec, world, VIDEO_CFG))
            starts.append(len(proc.tokenizer(prompt)["input_ids"]))
            weights.append(w)
    batch = encode(proc, texts, clips, VIDEO_CFG["fps"], padding_side="right")
    ids = batch["input_ids"]
    target = torch.zeros(ids.shape)
    for row, start in enumerate(starts):
        target[row, start:] = weights[row]
    target = (target * batch["attention_mask"])[:, 1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=SFT_LR)
    for _ in range(SFT_STEPS):
        logp = model(**batch).logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        loss = -(logp * target).sum() / target.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out = tmp_path_factory.mktemp("mixed_sft")
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def accuracy_quarters(metrics: dict) -> tuple[float, float, list[float]]:
    """Mean accuracy reward over the first and the last quarter of the steps, and every step's."""
    acc = [h["rewards/accuracy/mean"] for h in metrics["log_history"] if "rewards/accuracy/mean" in h]
    q = len(acc) // 4
    return sum(acc[:q]) / q, sum(acc[-q:]) / q, acc


@pytest.mark.parametrize("method", ["grpo", "ktr", "ktr_without_key_tokens"])
def test_a_short_rl_run_raises_the_accuracy_reward_on_its_training_questions(world, mixed_sft_model, tmp_path,
                                                                            monkeypatch, method):
    """32 steps at lr 3e-3 (4 of warmup), beta 0, on 16 copies of the two questions: GRPO and Video-KTR (r = 0.2,
    E+V+T) raise the accuracy reward from about 3/8 (first quarter of the steps) to at least 0.75 over the last
    quarter, +0.35 or more. The control, Video-KTR with an empty key mask (a trainer that updates nothing), stays
    where the SFT model is (the last quarter's 64 answers at p = 3/8: mean 0.375, sd 0.06), and the same criterion
    fails on it. (lr 1e-3 moves this tiny model too slowly for 32 steps; 5e-3 breaks its format.)"""
    from videoktr.rl.run import train_run

    if method == "ktr_without_key_tokens":
        monkeypatch.setattr("videoktr.rl.run.KTRTrainer", NoKeyTokens)
    run = {"method": "grpo" if method == "grpo" else "ktr", "ratio": 0.2, "signals": ["E", "V", "T"],
           "train": LEARN}
    recs = [records(world)[i] for i in QUESTIONS] * 16
    start = time.process_time()
    metrics = train_run(method, run, mixed_sft_model, recs, world, tmp_path / "work", tmp_path / "model",
                        video_cfg=VIDEO_CFG, seed=0)
    first, last, acc = accuracy_quarters(metrics)
    print(f"{method}: accuracy reward first quarter {first:.3f}, last quarter {last:.3f}, per step {acc}, "
          f"{time.process_time() - start:.1f} s CPU")
    assert len(acc) == LEARN["max_steps"] and 0.1 <= first <= 0.6  # the SFT model: neither 0 nor solved
    learned = last >= 0.75 and last - first >= 0.35
    assert learned == (method != "ktr_without_key_tokens"), (first, last, acc)


def test_two_methods_sample_the_same_first_batch_and_different_rollouts_once_updated(world, mixed_sft_model,
                                                                                    tmp_path):
    """GRPO and Video-KTR from one model and seed: batch 1 is sampled before any update, so its digest is the same;
    the updates differ (all tokens against the key tokens), so later batches part. training_summary says where.
    (Measured: here they part at batch 7 of 8; the shared seed keeps most draws alike while the weights differ a
    little, and both updates are dominated by the answer letter.)"""
    from videoktr.report.training import training_summary
    from videoktr.rl.run import train_run

    recs = [records(world)[i] for i in QUESTIONS] * 4
    metrics = {}
    for method in ("grpo", "ktr"):
        run = {"method": method, "ratio": 0.2, "signals": ["E", "V", "T"], "train": dict(LEARN, max_steps=8)}
        metrics[method] = train_run(method, run, mixed_sft_model, recs, world, tmp_path / method / "work",
                                    tmp_path / method / "model", video_cfg=VIDEO_CFG, seed=0)
    g, k = metrics["grpo"]["rollouts"], metrics["ktr"]["rollouts"]
    assert len(g) == len(k) == 8 and g[0] == k[0] and g != k
    row = training_summary(metrics, {"grpo": "sft", "ktr": "sft"})["runs"]["ktr"]
    assert row["compared_with"] == "grpo" and row["rollouts_differ_from_batch"] == next(
        i + 1 for i in range(8) if g[i] != k[i]) > 1
