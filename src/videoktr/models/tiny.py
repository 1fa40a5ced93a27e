"""A tiny but real Qwen2.5-VL: byte-level BPE tokenizer trained on the world's text, processor, random-init model.

The tiny world runs the very code the paper path runs; only the sizes differ. Everything is built offline and saved as
an ordinary Hugging Face folder that `from_pretrained` loads with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2.5-VL's template, reduced to what the study uses: system/user/assistant turns with images and videos.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE on `texts` with the Qwen special tokens (ids 0..6)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    # Qwen2.5-VL's processor looks these attributes up on the tokenizer.
    fast.image_token = "<|image_pad|>"
    fast.video_token = "<|video_pad|>"
    fast.vision_start_token = "<|vision_start|>"
    fast.vision_end_token = "<|vision_end|>"
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer, *, min_pixels: int, max_pixels: int) -> Qwen2_5_VLProcessor:
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size, do_sample_frames=False, cap_pixels_per_frame=True),
        chat_template=CHAT_TEMPLATE,
    )


# Attention head sizes that vLLM's CPU attention accepts (vllm 0.31 CPUAttentionBackend.get_supported_head_sizes):
# every tiny model is served by vLLM in the tests and the rehearsal, so a size outside these is refused when built.
VLLM_CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def check_head_dim(hidden_size: int, heads: int, where: str = "model.tiny") -> int:
    """hidden_size // heads, or a one-line refusal naming the keys to change."""
    if hidden_size % heads:
        raise ValueError(f"{where}: hidden_size {hidden_size} is not a multiple of heads {heads}")
    head_dim = hidden_size // heads
    if head_dim not in VLLM_CPU_HEAD_DIMS:
        raise ValueError(f"{where}: head size hidden_size/heads = {hidden_size}/{heads} = {head_dim}; vLLM's CPU "
                         f"attention takes {', '.join(map(str, VLLM_CPU_HEAD_DIMS))}: change hidden_size or heads")
    return head_dim


def build_model(tokenizer, *, hidden_size: int, layers: int, heads: int, vision_hidden: int, vision_depth: int,
                seed: int) -> Qwen2_5_VLForConditionalGeneration:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = check_head_dim(hidden_size, heads)
    pairs = head_dim // 2  # M-RoPE splits the rotary pairs over (t, h, w) as Qwen does: 64 -> [16, 24, 24]
    hw = pairs * 3 // 8
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": [pairs - 2 * hw, hw, hw]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )
    vision_config = dict(
        depth=vision_depth,
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 2,
        num_heads=max(1, vision_hidden // 16),
        out_hidden_size=hidden_size,
        fullatt_block_indexes=[vision_depth - 1],
        window_size=56,
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def vision_token_ids(model) -> list[int]:
    """Ids a policy must never sample: a generated <|video_pad|> would break the next forward."""
    c = getattr(model, "config", model)  # a model or its config
    return [c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id]


def build_tiny_model(out_dir: Path, texts: list[str], *, vocab_size: int, hidden_size: int, layers: int, heads: int,
                     vision_hidden: int, vision_depth: int, min_pixels: int, max_pixels: int, seed: int) -> dict:
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, vocab_size)
    processor = build_processor(tokenizer, min_pixels=min_pixels, max_pixels=max_pixels)
    model = build_model(tokenizer, hidden_size=hidden_size, layers=layers, heads=heads, vision_hidden=vision_hidden,
                        vision_depth=vision_depth, seed=seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    summary = {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer)}
    (out_dir / "tiny_model.json").write_text(json.dumps(summary, indent=2))
    return summary
