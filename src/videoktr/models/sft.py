"""Supervised fine-tuning on think-then-answer targets: the tiny world's stand-in for the paper's CoT-SFT model.

transformers' Trainer does the loop; this module supplies the targets and a collator that feeds the video.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration, Trainer, TrainingArguments

from videoktr.data.model_inputs import encode, load_frames, prompt_text
from videoktr.eval.answers import parse_solution

log = logging.getLogger(__name__)
# SFT reads every clip once an epoch: decoded clips are kept up to this many bytes (the tiny world's 1,280 clips at 16
# frames take ~250 MB; decoding them again each epoch was a quarter of the SFT's time). Past it, clips are re-read.
CLIP_CACHE_BYTES = 1 << 30


def sft_target_parts(record: dict) -> list[tuple[str, bool]]:
    """The target as (text, names the clip) pieces: a short chain of thought that names what the video shows,
    then the answer. The flagged pieces are the only ones that differ between clips of one question."""
    answer = parse_solution(record["solution"])
    if record["problem_type"] == "multiple choice":
        text = next(o.split(". ", 1)[1] for o in record["options"] if o.startswith(f"{answer}."))
        thought = [("Let me think. The video shows ", False), (text, True), (", so the answer is ", False),
                   (text, True), (".", False)]
    else:
        thought = [("Let me count the shapes one by one. I see ", False), (answer, True), (".", False)]
    return [("<think>", False), *thought, ("</think><answer>", False), (answer, True), ("</answer>", False)]


def sft_target(record: dict) -> str:
    return "".join(text for text, _ in sft_target_parts(record))


def clip_token_flags(tokenizer, record: dict) -> list[bool]:
    """For each token of the target (plus <|im_end|>): does it overlap a piece that names the clip?"""
    spans, at = [], 0
    for text, names_clip in sft_target_parts(record):
        if names_clip:
            spans.append((at, at + len(text)))
        at += len(text)
    enc = tokenizer(sft_target(record) + "<|im_end|>", add_special_tokens=False, return_offsets_mapping=True)
    return [any(s < e2 and e > s2 for s2, e2 in spans) for s, e in enc["offset_mapping"]]


class SFTCollator:
    """Prompt + target with the clip; the loss covers the target tokens only, those that name the clip weighted
    `clip_token_weight` times the others (`loss_weights`, only when the weight is not 1)."""

    def __init__(self, processor, data_dir: Path, video_cfg: dict, clip_token_weight: float = 1.0):
        self.processor, self.data_dir, self.video_cfg = processor, data_dir, video_cfg
        self.clip_token_weight = clip_token_weight
        self._clips: dict[str, object] = {}
        self._clip_bytes = 0
        tok = processor.tokenizer
        self.im_start = tok.convert_tokens_to_ids("<|im_start|>")
        self.header_len = len(tok("assistant\n", add_special_tokens=False)["input_ids"])

    def __call__(self, records: list[dict]) -> dict:
        texts = [prompt_text(self.processor, r) + sft_target(r) + "<|im_end|>" for r in records]
        videos = [self._frames(r) for r in records]
        batch = encode(self.processor, texts, videos, self.video_cfg["fps"], padding_side="right")
        labels = batch["input_ids"].clone()
        for row in range(labels.size(0)):
            start = (batch["input_ids"][row] == self.im_start).nonzero()[-1].item() + 1 + self.header_len
            labels[row, :start] = -100
        labels[batch["attention_mask"] == 0] = -100
        batch["labels"] = labels
        if self.clip_token_weight != 1:
            batch["loss_weights"] = self._weights(records, labels)
        return dict(batch)

    def _frames(self, record: dict):
        key = str(record["path"])
        if key not in self._clips:
            frames = load_frames(record, self.data_dir, self.video_cfg)
            if self._clip_bytes + frames.nbytes > CLIP_CACHE_BYTES:
                return frames
            self._clips[key], self._clip_bytes = frames, self._clip_bytes + frames.nbytes
        return self._clips[key]

    def _weights(self, records: list[dict], labels: torch.Tensor) -> torch.Tensor:
        weights = torch.zeros(labels.shape)
        for row, record in enumerate(records):
            positions = (labels[row] != -100).nonzero().flatten()
            flags = clip_token_flags(self.processor.tokenizer, record)
            if len(flags) != len(positions):
                raise ValueError(f"record {record.get('problem_id')!r}: the target tokenises to {len(flags)} tokens "
                                 f"alone but {len(positions)} in the prompt's context")
            weights[row, positions] = torch.tensor([self.clip_token_weight if f else 1.0 for f in flags])
        return weights


def sft_video_cfg(video_cfg: dict, sft_cfg: dict) -> dict:
    """The video settings SFT reads its clips with: `video` with sft.frames (when set) as the frames per clip; the
    filter and RL keep video.train_frames."""
    return {**video_cfg, "train_frames": sft_cfg["frames"]} if sft_cfg.get("frames") else dict(video_cfg)


class WeightedSFTTrainer(Trainer):
    """transformers' Trainer whose loss is the weighted mean of the target tokens' cross-entropy, when the
    collator gives `loss_weights`. Why: in a target of ~30 tokens, the 2-3 that name the clip carry all of the
    video's signal; unweighted, a tiny model fits the template and answers from the prior (measured: colour and
    frame order learnt with the weight, near chance without)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "loss_weights" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        weights, labels = inputs.pop("loss_weights"), inputs.pop("labels")
        outputs = model(**inputs)
        logits, targets = outputs.logits[:, :-1].float(), labels[:, 1:]
        weights = weights[:, 1:].to(logits.device) * (targets != -100)
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
        loss = (ce * weights).sum() / weights.sum().clamp(min=1e-6)
        return (loss, outputs) if return_outputs else loss


def train_sft(model_dir: Path, records: list[dict], data_dir: Path, out_dir: Path, *, video_cfg: dict, sft_cfg: dict,
              seed: int) -> dict:
    video_cfg = sft_video_cfg(video_cfg, sft_cfg)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(Path(out_dir) / "_checkpoints"),
        num_train_epochs=sft_cfg["epochs"],
        per_device_train_batch_size=sft_cfg["batch_size"],
        learning_rate=sft_cfg["lr"],
        warmup_steps=float(sft_cfg["warmup_ratio"]),  # a float < 1 is a ratio of all steps
        lr_scheduler_type="cosine",
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    collator = SFTCollator(processor, data_dir, video_cfg, sft_cfg.get("clip_token_weight", 1.0))
    trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=records, data_collator=collator)
    result = trainer.train()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    log.info("SFT done: %s", result.metrics)
    return {"train_loss": result.training_loss, **result.metrics,
            "log_history": trainer.state.log_history}
