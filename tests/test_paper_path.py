"""The paper path's input and data settings: the training pixel cap on a hub checkpoint's processor (training and
difficulty filtering), and Video-Holmes' training questions past the difficulty filter."""

import numpy as np
from conftest import VIDEO_CFG, records
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

PAPER_VIDEO = dict(VIDEO_CFG, fps=2, min_pixels=128 * 28 * 28, max_pixels=128 * 28 * 28)
FRAMES_720P = np.full((16, 720, 1280, 3), 127, dtype=np.uint8)


def video_tokens(batch) -> int:
    return int(batch["video_grid_thw"].prod(-1).sum()) // 4  # 2x2 patches merge into one token


def hub_like_processor(tiny_model_dir, tmp_path):
    """The tiny processor saved with Qwen2.5-VL's own video bounds (3136..12,845,056) and no total-pixel cap."""
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    proc.video_processor.size = {"shortest_edge": 3136, "longest_edge": 12845056}
    proc.video_processor.cap_pixels_per_frame = None
    out = tmp_path / "hub_processor"
    proc.save_pretrained(out)
    return AutoProcessor.from_pretrained(out)


def test_training_applies_the_paper_pixel_cap_whatever_the_checkpoint_ships(world, tiny_model_dir, tmp_path):
    from videoktr.data.model_inputs import encode
    from videoktr.models.tiny import vision_token_ids
    from videoktr.rl.grpo import VideoGRPOTrainer
    from videoktr.rl.rewards import AccuracyReward, format_reward_func
    from videoktr.rl.run import grpo_config, to_dataset

    proc = hub_like_processor(tiny_model_dir, tmp_path)
    text = "<|vision_start|><|video_pad|><|vision_end|>what?"
    assert video_tokens(encode(proc, [text], [FRAMES_720P], 2)) > 4 * 8 * 128  # the checkpoint's own bounds
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    train = {"lr": 1e-3, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 2, "max_completion_length": 8,
             "temperature": 1.0, "epochs": 1, "max_steps": 1, "loss_type": "grpo", "save_steps": 1, "logging_steps": 1}
    trainer = VideoGRPOTrainer(model=model, reward_funcs=[AccuracyReward(), format_reward_func],
                               args=grpo_config(train, tmp_path, 0, vision_token_ids(model)),
                               train_dataset=to_dataset(records(world)[:2]), processing_class=proc, data_dir=world,
                               video_cfg=PAPER_VIDEO)
    batch = encode(trainer.processing_class, [text], [FRAMES_720P], 2)
    assert video_tokens(batch) <= len(FRAMES_720P) // 2 * PAPER_VIDEO["max_pixels"] // (28 * 28)
    assert video_tokens(batch) >= len(FRAMES_720P) // 2 * 100  # close to the cap, not a thumbnail
    # the caller's processor (saved with the trained model) keeps its bounds
    assert proc.video_processor.size["longest_edge"] == 12845056


def test_difficulty_filter_samples_at_the_paper_pixel_cap(world, tiny_model_dir, tmp_path):
    import shutil

    from videoktr.eval.filtering import filter_backend, run_filter

    model_dir = tmp_path / "hub_model"
    shutil.copytree(tiny_model_dir, model_dir)
    hub_like_processor(tiny_model_dir, tmp_path).save_pretrained(model_dir)
    cap = len(FRAMES_720P) // 2 * PAPER_VIDEO["max_pixels"] // (28 * 28)
    text = "<|vision_start|><|video_pad|><|vision_end|>what?"
    backend = filter_backend("transformers", model_dir, seed=0, filter_cfg={}, video_cfg=PAPER_VIDEO)
    assert video_tokens(backend.encode([text], [FRAMES_720P], 2)) <= cap
    # a backend built without bounds (as the filter's CLI did) gets them from run_filter
    from videoktr.eval.backends import make_backend

    plain = make_backend("transformers", model_dir, seed=0)
    assert video_tokens(plain.encode([text], [FRAMES_720P], 2)) > cap
    run_filter(plain, [], world, tmp_path / "scores.jsonl", k=2, temperature=1.0, max_new_tokens=4, batch_size=2,
               video_cfg=PAPER_VIDEO)
    assert video_tokens(plain.encode([text], [FRAMES_720P], 2)) <= cap


def test_video_holmes_training_questions_bypass_the_difficulty_filter(tmp_path):
    from videoktr.data.hub import video_holmes_records
    from videoktr.eval.filtering import accuracy_histogram, keep_in_band

    holmes, _ = video_holmes_records([{"video ID": f"v{i}", "Question ID": 1, "Question Type": "SR",
                                       "Question": "why?", "Options": {"A": "x", "B": "y"}, "Answer": "A"}
                                      for i in range(3)], "videos")
    accuracy = {"video_r1-1": 0.0, "video_r1-2": 0.5, "video_r1-3": 1.0, "video_r1-4": 0.2, "video_r1-5": 0.875}
    accuracy.update(zip([r["problem_id"] for r in holmes], [0.0, 0.5, 1.0]))
    kept = keep_in_band(accuracy, 0.2, 0.8)
    assert kept == {"video_r1-2", "video_r1-4"} | {r["problem_id"] for r in holmes}
    table = accuracy_histogram(accuracy, 8, 0.2, 0.8, tmp_path / "h.png", tmp_path / "h.csv")
    assert sum(r["questions"] for r in table) == 5  # the band's histogram counts the filtered questions only
