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


def sft_target(record: dict) -> str:
    """A short chain of thought that names what the video shows, then the answer."""
    answer = parse_solution(record["solution"])
    if record["problem_type"] == "multiple choice":
        text = next(o.split(". ", 1)[1] for o in record["options"] if o.startswith(f"{answer}."))
        thought = f"Let me think. The video shows {text}, so the answer is {text}."
    else:
        thought = f"Let me count the shapes one by one. I see {answer}."
    return f"<think>{thought}</think><answer>{answer}</answer>"


class SFTCollator:
    """Prompt + target with the clip; the loss covers the target tokens only."""

    def __init__(self, processor, data_dir: Path, video_cfg: dict):
        self.processor, self.data_dir, self.video_cfg = processor, data_dir, video_cfg
        tok = processor.tokenizer
        self.im_start = tok.convert_tokens_to_ids("<|im_start|>")
        self.header_len = len(tok("assistant\n", add_special_tokens=False)["input_ids"])

    def __call__(self, records: list[dict]) -> dict:
        texts = [prompt_text(self.processor, r) + sft_target(r) + "<|im_end|>" for r in records]
        videos = [load_frames(r, self.data_dir, self.video_cfg) for r in records]
        batch = encode(self.processor, texts, videos, self.video_cfg["fps"], padding_side="right")
        labels = batch["input_ids"].clone()
        for row in range(labels.size(0)):
            start = (batch["input_ids"][row] == self.im_start).nonzero()[-1].item() + 1 + self.header_len
            labels[row, :start] = -100
        labels[batch["attention_mask"] == 0] = -100
        batch["labels"] = labels
        return dict(batch)


def train_sft(model_dir: Path, records: list[dict], data_dir: Path, out_dir: Path, *, video_cfg: dict, sft_cfg: dict,
              seed: int) -> dict:
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
    trainer = Trainer(model=model, args=args, train_dataset=records,
                      data_collator=SFTCollator(processor, data_dir, video_cfg))
    result = trainer.train()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    log.info("SFT done: %s", result.metrics)
    return {"train_loss": result.training_loss, **result.metrics,
            "log_history": trainer.state.log_history}
