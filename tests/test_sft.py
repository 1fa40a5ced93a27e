"""The tiny world's SFT: targets, the tokens that name the clip, and the weighted loss."""

import torch
from conftest import VIDEO_CFG, records
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration, TrainingArguments

from videoktr.eval.answers import parse_solution
from videoktr.models.sft import SFTCollator, WeightedSFTTrainer, clip_token_flags, sft_target, sft_video_cfg


def flagged_text(tok, record) -> str:
    ids = tok(sft_target(record) + "<|im_end|>", add_special_tokens=False)["input_ids"]
    return "".join(tok.decode([i]) for i, f in zip(ids, clip_token_flags(tok, record)) if f)


def test_the_flagged_tokens_are_the_words_that_name_the_clip_and_the_answer(world, tiny_model_dir):
    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    recs = records(world)
    choice = next(r for r in recs if r["problem_type"] == "multiple choice")
    count = next(r for r in recs if r["problem_type"] == "numerical")
    letter = parse_solution(choice["solution"])
    word = next(o.split(". ", 1)[1] for o in choice["options"] if o.startswith(f"{letter}."))
    assert flagged_text(tok, choice).replace(" ", "") == word + word + letter
    assert flagged_text(tok, count).replace(" ", "") == parse_solution(count["solution"]) * 2
    assert not clip_token_flags(tok, choice)[0]  # "<think>" names nothing


def test_the_collator_weights_the_clip_tokens_only_when_asked(world, tiny_model_dir):
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    recs = records(world)[:3]
    assert "loss_weights" not in SFTCollator(proc, world, VIDEO_CFG)(recs)
    batch = SFTCollator(proc, world, VIDEO_CFG, clip_token_weight=10)(recs)
    w, labels = batch["loss_weights"], batch["labels"]
    assert set(w[labels == -100].tolist()) == {0.0}  # prompt and padding
    for row, rec in enumerate(recs):
        flags = torch.tensor(clip_token_flags(proc.tokenizer, rec))
        target = w[row][labels[row] != -100]
        assert target.tolist() == torch.where(flags, 10.0, 1.0).tolist()


def _loss(tiny_model_dir, batch, tmp_path):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=False)
    trainer = WeightedSFTTrainer(model=model, args=args)
    with torch.no_grad():
        return trainer.compute_loss(model, dict(batch)).item(), model(**{k: v for k, v in batch.items()
                                                                          if k not in ("labels", "loss_weights")})


def test_the_weighted_loss_is_the_weighted_mean_of_the_target_tokens_cross_entropy(world, tiny_model_dir, tmp_path):
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    recs = records(world)[:3]
    plain = SFTCollator(proc, world, VIDEO_CFG)(recs)
    weighted = SFTCollator(proc, world, VIDEO_CFG, clip_token_weight=10)(recs)
    loss_plain, out = _loss(tiny_model_dir, plain, tmp_path)
    loss_weighted, _ = _loss(tiny_model_dir, weighted, tmp_path)
    logits, targets = out.logits[:, :-1].float(), weighted["labels"][:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    w = weighted["loss_weights"][:, 1:] * (targets != -100)
    assert abs(loss_weighted - ((ce * w).sum() / w.sum()).item()) < 1e-5
    valid = targets != -100
    assert abs(loss_plain - ce[valid].mean().item()) < 1e-5  # weight 1: transformers' own loss
    assert abs(loss_weighted - loss_plain) > 1e-3


def test_sft_reads_its_clips_at_sft_frames_and_the_rest_keeps_video_train_frames(world, tiny_model_dir):
    """config sft.frames: the SFT batches carry that many frames a clip (2 frames a temporal patch); unset, SFT
    reads video.train_frames like the filter and RL."""
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    recs = records(world)[:2]
    video = dict(VIDEO_CFG, train_frames=8)
    assert sft_video_cfg(video, {"frames": None}) == video and video["train_frames"] == 8
    for frames, patches in ((None, 4), (16, 8), (4, 2)):
        batch = SFTCollator(proc, world, sft_video_cfg(video, {"frames": frames}))(recs)
        assert batch["video_grid_thw"][:, 0].tolist() == [patches, patches], frames


def test_the_collator_decodes_each_clip_once_within_its_byte_budget(world, tiny_model_dir, monkeypatch):
    """Epoch after epoch the same clips: decoded once and kept, up to CLIP_CACHE_BYTES; past it, read again (the
    batch is the same either way)."""
    import videoktr.models.sft as sft

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    recs = records(world)[:3]
    reads = []
    real = sft.load_frames
    monkeypatch.setattr(sft, "load_frames", lambda r, *a, **k: reads.append(r["path"]) or real(r, *a, **k))
    collate = SFTCollator(proc, world, VIDEO_CFG)
    first, second = collate(recs), collate(recs)
    assert reads == [r["path"] for r in recs]
    assert torch.equal(first["pixel_values_videos"], second["pixel_values_videos"])
    monkeypatch.setattr(sft, "CLIP_CACHE_BYTES", 0)
    reads.clear()
    tight = SFTCollator(proc, world, VIDEO_CFG)
    tight(recs), tight(recs)
    assert reads == [r["path"] for r in recs] * 2
