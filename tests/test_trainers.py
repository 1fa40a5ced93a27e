"""The TRL trap: the loss-path log-probs must see the video."""

import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from conftest import VIDEO_CFG, records
from videoktr.inputs import encode, load_frames, prompt_text
from videoktr.rl import AccuracyReward, format_reward_func, grpo_config, to_dataset
from videoktr.sft import sft_target
from videoktr.tiny_model import vision_token_ids
from videoktr.trainers import VideoGRPOTrainer, split_videos

TRAIN = {"lr": 1e-3, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 2, "max_completion_length": 8,
         "temperature": 1.0, "epochs": 1, "max_steps": 1, "loss_type": "grpo", "save_steps": 1, "logging_steps": 1}


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


def test_a_training_step_runs_and_resumes_from_its_checkpoint(world, tiny_model_dir, tmp_path):
    from videoktr.rl import train_run

    run = {"method": "ktr", "ratio": 0.2, "signals": ["E", "V", "T"], "train": dict(TRAIN, max_steps=2)}
    recs = records(world)[:4]
    first = train_run("ktr", run, tiny_model_dir, recs, world, tmp_path / "w", tmp_path / "out",
                      video_cfg=VIDEO_CFG, seed=0)
    assert first["global_step"] == 2 and first["resumed_from"] is None
    shares = [h["ktr/union_share"] for h in first["log_history"] if "ktr/union_share" in h]
    assert shares and all(0.19 <= s <= 0.61 for s in shares)
    run["train"]["max_steps"] = 3  # a rerun continues from the newest checkpoint
    again = train_run("ktr", run, tiny_model_dir, recs, world, tmp_path / "w", tmp_path / "out2",
                      video_cfg=VIDEO_CFG, seed=0)
    assert again["resumed_from"].endswith("checkpoint-2") and again["global_step"] == 3
