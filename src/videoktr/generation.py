"""Batched decoding with transformers `generate` (the CPU backend; vLLM is the GPU one)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from videoktr.inputs import encode
from videoktr.tiny_model import vision_token_ids


class TransformersBackend:
    """Same prompts and parsing as every other backend; left-padded batches, vision ids never sampled."""

    name = "transformers"

    def __init__(self, model_dir: Path, *, seed: int = 0):
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.seed = seed

    @torch.no_grad()
    def generate(self, texts: list[str], videos: list, *, fps: float, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, num_return_sequences: int = 1) -> list[str]:
        """Decoded completions, `num_return_sequences` consecutive ones per prompt."""
        batch = encode(self.processor, texts, videos, fps, padding_side="left")
        torch.manual_seed(self.seed)
        out = self.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            num_return_sequences=num_return_sequences,
            suppress_tokens=vision_token_ids(self.model),
        )
        completions = out[:, batch["input_ids"].shape[1]:]
        return self.processor.batch_decode(completions, skip_special_tokens=True)
