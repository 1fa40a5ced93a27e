import numpy as np
import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from conftest import VIDEO_CFG, records
from videoktr.eval.backends import TransformersBackend
from videoktr.data.model_inputs import encode, load_frames, prompt_text
from videoktr.models.tiny import vision_token_ids


def test_save_load_round_trip_gives_identical_logits(world, tiny_model_dir, tmp_path):
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    rec = records(world)[0]
    batch = encode(proc, [prompt_text(proc, rec)], [load_frames(rec, world, VIDEO_CFG)], VIDEO_CFG["fps"])
    assert (batch["input_ids"] == model.config.video_token_id).sum() == batch["video_grid_thw"].prod() // 4
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    again = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)
    assert AutoProcessor.from_pretrained(tmp_path).tokenizer.get_vocab() == proc.tokenizer.get_vocab()


def test_generates_text_and_never_a_vision_token(world, tiny_model_dir):
    backend = TransformersBackend(tiny_model_dir)
    recs = records(world)[:3]
    texts = [prompt_text(backend.processor, r) for r in recs]
    videos = [load_frames(r, world, VIDEO_CFG) for r in recs]
    batch = encode(backend.processor, texts, videos, VIDEO_CFG["fps"])
    out = backend.model.generate(**batch, max_new_tokens=20, do_sample=True,
                                 suppress_tokens=vision_token_ids(backend.model))
    new = out[:, batch["input_ids"].shape[1]:]
    assert new.shape == (3, 20) or new.shape[1] > 0
    assert not torch.isin(new, torch.tensor(vision_token_ids(backend.model))).any()
    decoded = backend.generate(texts, videos, fps=8, max_new_tokens=8, temperature=1.0)
    assert len(decoded) == 3 and all(isinstance(t, str) for t in decoded)


def test_each_clip_gets_the_seconds_per_temporal_patch_of_its_own_sampling_rate(world, tiny_model_dir):
    """M-RoPE's time positions: second_per_grid_ts = 2 / the clip's sample_fps (qwen-vl-utils), per clip in a batch;
    transformers' own default (24 fps, whatever `fps=` says) would give every clip 2/24."""
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    rec = records(world, "eval_temporal")[0]
    full = load_frames(rec, world, VIDEO_CFG)  # 16 frames of a 2 s clip at 8 fps
    half = load_frames(rec, world, VIDEO_CFG, max_frames=8)  # 8 frames spread over the same 2 s: 4 fps
    assert (full.sample_fps, half.sample_fps) == (8.0, 4.0)
    texts = [prompt_text(proc, rec)] * 2
    batch = encode(proc, texts, [full, half], VIDEO_CFG["fps"])
    assert batch["second_per_grid_ts"].tolist() == [0.25, 0.5]
    # so both clips span the same time: the last temporal patch sits at the same time position
    pos, _ = model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                        video_grid_thw=batch["video_grid_thw"],
                                        second_per_grid_ts=batch["second_per_grid_ts"],
                                        attention_mask=batch["attention_mask"])
    video = batch["mm_token_type_ids"] == 2
    t = [sorted(set(pos[0, row][video[row]].tolist())) for row in range(2)]  # temporal index of the video tokens
    # the same 2 s: 8 patches at 0.25 s x 4 tokens/s = 1 apart, 4 patches at 0.5 s = 2 apart
    assert set(np.diff(t[0])) == {1} and len(t[0]) == 8
    assert set(np.diff(t[1])) == {2} and len(t[1]) == 4
    # a shuffled clip keeps its rate
    assert encode(proc, texts[:1], [full[np.arange(len(full))[::-1]]], VIDEO_CFG["fps"])["second_per_grid_ts"].tolist() == [0.25]
