"""Attribution: pure functions, and the cheap counterfactual passes against a direct reference on the tiny model."""

import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from trl.trainer.utils import add_fused_lm_head

from conftest import VIDEO_CFG, records
from videoktr.attribution import key_token_masks, permute_slices, temporal_permutation, top_fraction_mask
from videoktr.inputs import encode, load_frames, prompt_text
from videoktr.sft import sft_target
from videoktr.trainers import decoder_logps, join_videos, split_videos


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


def test_temporal_permutation_is_never_the_identity():
    g = torch.Generator().manual_seed(1)
    for n in (2, 3, 8):
        for _ in range(50):
            p = temporal_permutation(n, g)
            assert sorted(p.tolist()) == list(range(n)) and p.tolist() != list(range(n))


def _setup(world, model_dir):
    proc = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir).eval()
    rec = records(world)[1]
    frames = load_frames(rec, world, VIDEO_CFG)
    text = prompt_text(proc, rec) + sft_target(rec) + "<|im_end|>"
    n = len(proc.tokenizer(sft_target(rec) + "<|im_end|>")["input_ids"])
    return proc, model, frames, text, n


def _plain_logps(model, batch, n):
    with torch.no_grad():
        logits = model(**batch).logits[:, -n - 1:-1]
    return logits.log_softmax(-1).gather(-1, batch["input_ids"][:, -n:, None])[..., 0]


def test_cheap_counterfactuals_equal_the_direct_reference(world, tiny_model_dir):
    proc, model, frames, text, n = _setup(world, tiny_model_dir)
    batch = encode(proc, [text], [frames], VIDEO_CFG["fps"])
    videos = join_videos(split_videos(batch))
    fused = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    add_fused_lm_head(fused, outputs=("log_probs", "entropy"))
    with torch.no_grad():
        feats = fused.model.get_video_features(videos["pixel_values_videos"], videos["video_grid_thw"]).pooler_output
        full, _ = decoder_logps(fused, batch["input_ids"], batch["attention_mask"], n, feats, videos)
        zero, _ = decoder_logps(fused, batch["input_ids"], batch["attention_mask"], n,
                                [torch.zeros_like(f) for f in feats], videos)
        perm = torch.tensor([3, 0, 7, 1, 2, 6, 5, 4])
        shuf, _ = decoder_logps(fused, batch["input_ids"], batch["attention_mask"], n,
                                [permute_slices(feats[0], videos["video_grid_thw"][0], perm, 2)], videos)
    # full: the plain model on the clip
    assert torch.allclose(full, _plain_logps(model, batch, n), atol=1e-5)
    # temporal: the plain model on re-encoded frames, temporal patches (pairs of frames) in the permuted order
    permuted = frames.reshape(8, 2, *frames.shape[1:])[perm.numpy()].reshape(frames.shape)
    ref_shuf = _plain_logps(model, encode(proc, [text], [permuted], VIDEO_CFG["fps"]), n)
    assert torch.allclose(shuf, ref_shuf, atol=1e-5)
    # visual: the plain model whose vision encoder output is replaced by zeros
    hook = model.model.visual.register_forward_hook(
        lambda mod, args, out: out.__class__(**{**out, "pooler_output": torch.zeros_like(out.pooler_output)}))
    try:
        ref_zero = _plain_logps(model, batch, n)
    finally:
        hook.remove()
    assert torch.allclose(zero, ref_zero, atol=1e-5)
    # the perturbations do move the log-probs (else the scores would be vacuous)
    assert (full - zero).abs().max() > 1e-4 and (full - shuf).abs().max() > 1e-6
