import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from conftest import VIDEO_CFG, records
from videoktr.generation import TransformersBackend
from videoktr.inputs import encode, load_frames, prompt_text
from videoktr.tiny_model import vision_token_ids


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
