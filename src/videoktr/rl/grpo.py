"""GRPO for video on TRL: the video reaches generation, old/ref log-probs and the loss forward.

TRL 1.16's GRPOTrainer wires image inputs only: a video reaches `generate()` and is then silently dropped from every
log-prob forward, so a naive video GRPO trains text-only. `VideoGRPOTrainer` fixes that with three overrides:
- `_tokenize_prompts` encodes each prompt with its decoded clip (and remembers the clip's tensors per sample);
- `_generate_and_score_completions` carries those per-sample tensors in the batch dict, as a list, so TRL's
  shuffling and splitting keep them aligned with their rows;
- `_get_per_token_logps_and_entropies` feeds them (plus mm_token_type_ids over prompt + completion, which M-RoPE
  needs) to every forward: old, reference and the loss.
`videoktr.rl.ktr.KTRTrainer` builds on it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path

import torch
from trl import GRPOTrainer

from videoktr.data.model_inputs import (apply_pixel_bounds, encode, format_video_stats, load_frames,
                                        mm_token_type_ids, processor_video_stats)
from videoktr.rl.logits import entropy, tempered_log_softmax
from videoktr.rl.rewards import BY_SOURCE

VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
log = logging.getLogger(__name__)
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


def encode_prompts(processor, prompts: list, frames: list, fps: float) -> tuple[list, dict, dict]:
    """Chat prompts with their clips as TRL's generation takes them: unpadded prompt ids, the video fields (with
    mm_token_type_ids per row), and the processor's padded batch."""
    texts = [processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    batch = encode(processor, texts, frames, fps, padding_side="left")
    keep = batch["attention_mask"].bool()
    prompt_ids = [ids[m].tolist() for ids, m in zip(batch["input_ids"], keep)]
    fields = {k: batch[k] for k in VIDEO_KEYS}
    fields["mm_token_type_ids"] = [t[m].tolist() for t, m in zip(batch["mm_token_type_ids"], keep)]
    return prompt_ids, fields, batch


def join_videos(videos: list[dict]) -> dict:
    return {k: torch.cat([v[k] for v in videos]) for k in VIDEO_KEYS}


class VideoGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose dataset rows carry a clip `path` (relative to `data_dir`); every forward sees the clip.

    The processor it gets is copied and given `video_cfg`'s pixel bounds (`apply_pixel_bounds`): a hub checkpoint's
    own bounds never reach training (the caller's processor, saved with the trained model, is left as it is)."""

    def __init__(self, *args, data_dir: Path, video_cfg: dict, **kwargs):
        if kwargs.get("processing_class") is not None and "min_pixels" in video_cfg:
            kwargs["processing_class"] = apply_pixel_bounds(copy.deepcopy(kwargs["processing_class"]), video_cfg)
        super().__init__(*args, **kwargs)
        self.data_dir, self.video_cfg = Path(data_dir), video_cfg
        self._batch_rows: list[dict] = []  # dataset rows of the generation batch in flight
        self._videos: list[dict] = []  # per-sample video tensors aligned with the rows being scored
        self._frames: list = []  # decoded frames of the generation batch's rows (frame-level counterfactuals)
        self.video_input: list[dict] = []  # video_input_stats of every generation batch (metrics.json video_input)
        self.rollouts: list[str] = []  # a digest of every generation batch's completions (metrics.json rollouts)
        self.completion_widths: list[int] = []  # each generation batch's padded completion length on this rank

    # -- generation -------------------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        self._batch_rows = inputs
        counted = [f for f in self.reward_funcs if hasattr(f, "unparseable")]
        before = sum(f.unparseable for f in counted)
        output = super()._generate_and_score_completions(inputs)
        output["videos"] = self._videos  # a list: TRL shuffles and splits it with the rows
        # Which tokens were sampled, as a digest: two runs from one model and seed sample the same first batch, and
        # differ from the first update that changes a sampled token (videoktr.report.training compares them).
        ids = output["completion_ids"] * output["completion_mask"]
        self.rollouts.append(hashlib.sha256(ids.cpu().numpy().astype("int64").tobytes()).hexdigest()[:16])
        self.completion_widths.append(int(ids.size(1)))
        mode = "train" if self.model.training else "eval"
        if counted:  # answers without a parseable <answer> score 0; their count is logged per step
            self._metrics[mode]["rewards/unparseable"].append(sum(f.unparseable for f in counted) - before)
        for f in self.reward_funcs:  # the accuracy reward per question source (appearance, counting, ...) per step
            for source, values in (getattr(f, "by_source", None) or {}).items():
                self._metrics[mode][f"{BY_SOURCE}{source}"].append(sum(values) / len(values))
        return output

    def _tokenize_prompts(self, prompts: list):
        frames = [load_frames(row, self.data_dir, self.video_cfg) for row in self._batch_rows]
        self._frames = frames
        prompt_ids, fields, batch = encode_prompts(self.processing_class, prompts, frames, self.video_cfg["fps"])
        self._videos = split_videos(batch)
        stats = processor_video_stats(self.processing_class, batch)
        if stats:  # what the policy saw of each clip: logged per step (metrics.json log_history, `video/*`)
            mode = "train" if self.model.training else "eval"
            for key in ("frames_max", "pixels_per_frame_max", "tokens_min", "tokens_mean", "tokens_max"):
                self._metrics[mode][f"video/{key}"].append(float(stats[key]))
            self.video_input.append(stats)
            log.info("video input: %s", format_video_stats(stats))
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
            kw = dict(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm_token_type_ids(ids, config),
                      **join_videos(self._videos[start:end]))
            if ids.device.type == "cpu":
                # TRL's fused head scores every position off-GPU (its compact path needs Triton): the prompt's too,
                # 8 x 1,100 positions x 152,064 entries at the real vocabulary, 20x the completion's. Here only the
                # completion's positions go through the head.
                logits = model(**kw, logits_to_keep=logits_to_keep + 1).logits[:, :-1]
                logq = tempered_log_softmax(logits, self.temperature)
                logps.append(logq.gather(-1, ids[:, -logits_to_keep:, None])[..., 0])
                if compute_entropy:
                    entropies.append(entropy(logq.detach()))
                continue
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            out = model(**kw, labels=labels, fused_lm_head=True)
            logps.append(out.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(out.entropy[:, -logits_to_keep:])
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    # -- loss -------------------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        self._videos = inputs["videos"]
        return super()._compute_loss(model, inputs)
