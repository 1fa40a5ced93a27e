"""GRPO for video on TRL: the video reaches generation, old/ref log-probs and the loss forward.

TRL 1.16's GRPOTrainer wires image inputs only: a video reaches `generate()` and is then silently dropped from every
log-prob forward, so a naive video GRPO trains text-only. `VideoGRPOTrainer` fixes that with three overrides:
- `_tokenize_prompts` encodes each prompt with its decoded clip (and remembers the clip's tensors per sample);
- `_generate_and_score_completions` carries those per-sample tensors in the batch dict, as a list, so TRL's
  shuffling and splitting keep them aligned with their rows;
- `_get_per_token_logps_and_entropies` feeds them (plus mm_token_type_ids over prompt + completion, which M-RoPE
  needs) to every forward: old, reference and the loss.
`KTRTrainer` restricts the policy loss to key tokens (see `videoktr.attribution`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from trl import GRPOTrainer

from transformers.modeling_outputs import BaseModelOutputWithPooling

from videoktr.attribution import key_token_masks, logprob_shift, permute_slices, temporal_permutation
from videoktr.inputs import encode, load_frames, mm_token_type_ids

log = logging.getLogger(__name__)

VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
IMAGE_ONLY_KWARGS = ("pixel_values", "image_grid_thw", "pixel_attention_mask", "spatial_shapes", "image_sizes")


def split_videos(batch) -> list[dict]:
    """The processor's flat video tensors as one dict per sample (one clip each)."""
    rows = batch["video_grid_thw"].prod(-1).tolist()
    pixels = torch.split(batch["pixel_values_videos"], rows)
    return [
        {"pixel_values_videos": p, "video_grid_thw": batch["video_grid_thw"][i:i + 1],
         "second_per_grid_ts": batch["second_per_grid_ts"][i:i + 1]}
        for i, p in enumerate(pixels)
    ]


def join_videos(videos: list[dict]) -> dict:
    return {k: torch.cat([v[k] for v in videos]) for k in VIDEO_KEYS}


def decoder_logps(model, ids, mask, logits_to_keep, features, videos, entropy=False):
    """Completion log-probs (and entropies) given precomputed vision features: a decoder-only pass.

    `model` carries TRL's fused LM head, so the vocabulary projection runs in tiles, never as full logits.
    """
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-logits_to_keep] = -100
    out = model(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm_token_type_ids(ids, model.config),
                video_grid_thw=videos["video_grid_thw"], second_per_grid_ts=videos["second_per_grid_ts"],
                mm_encoder_outputs={"video": BaseModelOutputWithPooling(pooler_output=tuple(features))},
                labels=labels, fused_lm_head=True)
    return out.log_probs[:, -logits_to_keep:], (out.entropy[:, -logits_to_keep:] if entropy else None)


class VideoGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose dataset rows carry a `video` path; every forward sees the clip."""

    def __init__(self, *args, data_dir: Path, video_cfg: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_dir, self.video_cfg = Path(data_dir), video_cfg
        self._batch_rows: list[dict] = []  # dataset rows of the generation batch in flight
        self._videos: list[dict] = []  # per-sample video tensors aligned with the rows being scored

    # -- generation -------------------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        self._batch_rows = inputs
        output = super()._generate_and_score_completions(inputs)
        output["videos"] = self._videos  # a list: TRL shuffles and splits it with the rows
        return output

    def _tokenize_prompts(self, prompts: list):
        texts = [self.processing_class.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 for p in prompts]
        frames = [load_frames(row, self.data_dir, self.video_cfg) for row in self._batch_rows]
        batch = encode(self.processing_class, texts, frames, self.video_cfg["fps"], padding_side="left")
        keep = batch["attention_mask"].bool()
        prompt_ids = [ids[m].tolist() for ids, m in zip(batch["input_ids"], keep)]
        self._videos = split_videos(batch)
        fields = {k: batch[k] for k in VIDEO_KEYS}
        fields["mm_token_type_ids"] = [t[m].tolist() for t, m in zip(batch["mm_token_type_ids"], keep)]
        return prompt_ids, None, fields

    # -- every log-prob forward -------------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **image_kwargs):
        if any(image_kwargs.get(k) is not None for k in IMAGE_ONLY_KWARGS):
            raise ValueError("VideoGRPOTrainer takes video rows only; this batch carries image tensors")
        if len(self._videos) != input_ids.size(0):
            raise RuntimeError(f"{len(self._videos)} clips for {input_ids.size(0)} rows: the video left its batch")
        config = self.accelerator.unwrap_model(model).config
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = start + batch_size
            ids, mask = input_ids[start:end], attention_mask[start:end]
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            out = model(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm_token_type_ids(ids, config),
                        labels=labels, fused_lm_head=True, **join_videos(self._videos[start:end]))
            logps.append(out.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(out.entropy[:, -logits_to_keep:])
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    # -- loss -------------------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        self._videos = inputs["videos"]
        return super()._compute_loss(model, inputs)


class KTRTrainer(VideoGRPOTrainer):
    """Video-KTR: only key tokens (top r% by visual, temporal or entropy score, united) carry the loss.

    Both counterfactual passes reuse the policy's vision features (no second encoder run) and run as one batched
    no-grad decoder forward through TRL's fused LM head, so full [B, L, V] logits are never held.
    """

    def __init__(self, *args, ratio: float = 0.2, signals=("E", "V", "T"), **kwargs):
        super().__init__(*args, **kwargs)
        self.ratio, self.signals = ratio, tuple(signals)
        self._perm_rng = torch.Generator().manual_seed(self.args.seed)

    @torch.no_grad()
    def attribution_scores(self, output: dict) -> dict[str, torch.Tensor]:
        """Visual, temporal and entropy scores per completion token of the batch in flight."""
        model = self.accelerator.unwrap_model(self.model)
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        n = output["completion_ids"].size(1)
        videos = join_videos(self._videos)
        feats = model.model.get_video_features(videos["pixel_values_videos"], videos["video_grid_thw"]).pooler_output
        merge = model.model.visual.spatial_merge_size
        full, entropy = decoder_logps(model, ids, mask, n, feats, videos, entropy=True)
        zeroed = [torch.zeros_like(f) for f in feats]
        shuffled = [permute_slices(f, g, temporal_permutation(int(g[0]), self._perm_rng), merge)
                    for f, g in zip(feats, videos["video_grid_thw"])]
        both = {k: torch.cat([v, v]) for k, v in videos.items()}
        perturbed, _ = decoder_logps(model, torch.cat([ids, ids]), torch.cat([mask, mask]), n,
                                          zeroed + shuffled, both)
        visual, temporal = perturbed.chunk(2)
        return {"V": logprob_shift(full, visual), "T": logprob_shift(full, temporal), "E": entropy}

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        valid = output["completion_mask"].bool()
        groups = torch.arange(valid.size(0), device=valid.device) // self.num_generations
        scores = self.attribution_scores(output)
        key, per_signal = key_token_masks(scores, valid, self.ratio, groups, self.signals)
        mode = "train" if self.model.training else "eval"
        total = valid.sum().clamp(min=1)
        self._metrics[mode]["ktr/union_share"].append((key.sum() / total).item())
        for name, m in per_signal.items():
            self._metrics[mode][f"ktr/{name}_share"].append((m.sum() / total).item())
        # TRL multiplies `tool_mask` into the loss mask only (attention still sees every token); the KL term is
        # restricted too, as in the authors' code.
        key = key.to(output["completion_mask"].dtype)
        output["tool_mask"] = key if "tool_mask" not in output else output["tool_mask"] * key
        return output
