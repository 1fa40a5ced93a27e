"""Checkpoints for the rehearsal's local hub: tiny weights with the processor, model config, token ids and file
names of the real Qwen2.5-VL (patch 14, merge 2, temporal patch 2, min/max pixels 3136/12845056, vision and video
token ids 151652-151656, vocabulary 152064), warmed up briefly on the think/answer format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

QWEN_BASE_VOCAB = 151643
QWEN_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
              "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
              "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
              "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
QWEN_IDS = {t: QWEN_BASE_VOCAB + i for i, t in enumerate(QWEN_ADDED)}
QWEN_VOCAB_SIZE = 152064
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 3136, 12845056
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# Clips as the real ones come: (width, height, fps, seconds). Tiny in bytes: one distinct picture every 2 s.


def qwen_tokenizer(texts: list[str], *, merges_vocab: int = 2048):
    """A byte-level BPE trained on `texts`, padded with never-produced entries to Qwen2.5's 151643 base entries, then
    Qwen2.5-VL's added tokens at their ids (151643 <|endoftext|> ... 151652 <|vision_start|>, 151653 <|vision_end|>,
    151655 <|image_pad|>, 151656 <|video_pad|>)."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    from videoktr.models.tiny import CHAT_TEMPLATE

    small = Tokenizer(models.BPE())
    small.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    small.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=merges_vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    spec = json.loads(small.to_str())
    vocab: dict = spec["model"]["vocab"]
    merges = spec["model"]["merges"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    i = 0
    while len(vocab) < QWEN_BASE_VOCAB:  # three-character fillers: valid byte-level strings no merge produces
        a, b, c = alphabet[i % 256], alphabet[(i // 256) % 256], alphabet[(i // 65536) % 256]
        i += 1
        tok = "\u0100" + a + b + c  # begins with 'Ā', so no learned merge yields it
        if tok not in vocab:
            vocab[tok] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_ADDED])
    got = {t: tok.token_to_id(t) for t in QWEN_ADDED}
    if got != QWEN_IDS:
        raise RuntimeError(f"added-token ids differ from Qwen2.5-VL's: {got}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=QWEN_ADDED[1:14])
    fast.image_token, fast.video_token = "<|image_pad|>", "<|video_pad|>"
    fast.vision_start_token, fast.vision_end_token = "<|vision_start|>", "<|vision_end|>"
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 131072
    return fast, vocab, merges


def qwen_model(*, hidden_size: int, layers: int, heads: int, vision_hidden: int, vision_depth: int,
               out_hidden: int | None = None, seed: int = 0):
    """A random-init Qwen2.5-VL with the real config's structure and ids, tiny widths."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from videoktr.models.tiny import check_head_dim

    head_dim = check_head_dim(hidden_size, heads, "mirror checkpoint")  # the rehearsal serves it with vLLM
    pairs = head_dim // 2
    hw = pairs * 3 // 8
    text_config = dict(
        vocab_size=QWEN_VOCAB_SIZE, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [pairs - 2 * hw, hw, hw]},
        bos_token_id=QWEN_IDS["<|endoftext|>"], eos_token_id=QWEN_IDS["<|im_end|>"],
        pad_token_id=QWEN_IDS["<|endoftext|>"], tie_word_embeddings=True,
    )
    vision_config = dict(
        depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
        num_heads=max(1, vision_hidden // 16), out_hidden_size=out_hidden or hidden_size, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=112, tokens_per_second=2,
        fullatt_block_indexes=[vision_depth - 1],
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, image_token_id=QWEN_IDS["<|image_pad|>"],
        video_token_id=QWEN_IDS["<|video_pad|>"], vision_start_token_id=QWEN_IDS["<|vision_start|>"],
        vision_end_token_id=QWEN_IDS["<|vision_end|>"], vision_token_id=QWEN_IDS["<|vision_pad|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    g = model.generation_config
    g.eos_token_id = [QWEN_IDS["<|im_end|>"], QWEN_IDS["<|endoftext|>"]]
    g.pad_token_id = QWEN_IDS["<|endoftext|>"]
    g.bos_token_id = QWEN_IDS["<|endoftext|>"]
    g.do_sample, g.temperature, g.top_p, g.top_k, g.repetition_penalty = True, 0.1, 0.001, 1, 1.05
    return model


def format_warmup(model, tokenizer, texts: list[tuple[str, str]], *, steps: int, lr: float = 3e-3,
                  batch: int = 8, seed: int = 0) -> list[float]:
    """A few text-only steps teaching the <think>..</think><answer>..</answer> reply format (no video), so that the
    sampled answers parse and spread over the options as an SFT model's would: the difficulty filter then sees
    questions in its band. The LM head (152064 rows) runs on the reply tokens only. Returns the losses.
    lr 3e-3: at 1e-2 the 64-wide model's loss spiked late with the paper's seed (0.38 per reply token after 150 steps
    against 0.09 at 3e-3 and 200 steps), its samples stopped parsing and no question fell in the filter's band."""
    import torch

    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    losses = []
    tokenizer.padding_side = "right"
    for _ in range(steps):
        pairs = [texts[i] for i in rng.choice(len(texts), size=min(batch, len(texts)), replace=False)]
        enc = tokenizer([p + t for p, t in pairs], return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        target = torch.zeros_like(mask, dtype=torch.bool)  # positions whose NEXT token is a reply token
        for row, (p, _) in enumerate(pairs):
            start, end = len(tokenizer(p)["input_ids"]), int(mask[row].sum())
            target[row, start - 1:end - 1] = True
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[target])
        labels = ids[:, 1:][target[:, :-1]]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def save_checkpoint(out: Path, model, tokenizer, vocab: dict, merges: list, *, shards: int = 2) -> list[str]:
    """The checkpoint under the hub's file names: sharded safetensors (bfloat16, as released) with their index,
    config.json, generation_config.json, preprocessor_config.json, chat_template.json, tokenizer files."""
    import torch
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from videoktr.models.tiny import CHAT_TEMPLATE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    nbytes = sum(p.numel() for p in model.parameters()) * 2
    model.to(torch.bfloat16).save_pretrained(out, max_shard_size=max(nbytes // shards + (1 << 20), 1 << 20))
    model.to(torch.float32)
    size = {"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS}
    common = dict(size=size, patch_size=14, temporal_patch_size=2, merge_size=2, image_mean=IMAGE_MEAN,
                  image_std=IMAGE_STD)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**common), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(**common, do_sample_frames=False),
                                    chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out)
    # the hub's layout of a Qwen2.5-VL checkpoint: preprocessor_config.json (the image processor's keys, which the
    # video processor also reads, plus the legacy min_pixels/max_pixels) and chat_template.json, no processor_config
    saved = json.loads((out / "processor_config.json").read_text()) if (out / "processor_config.json").exists() else {}
    spec = dict(saved.get("image_processor") or processor.image_processor.to_dict())
    spec.update(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS, patch_size=14, temporal_patch_size=2,
                merge_size=2, processor_class="Qwen2_5_VLProcessor", image_processor_type="Qwen2VLImageProcessor")
    for name in ("processor_config.json", "chat_template.jinja", "video_preprocessor_config.json"):
        (out / name).unlink(missing_ok=True)
    (out / "preprocessor_config.json").write_text(json.dumps(spec, indent=2))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return sorted(p.name for p in out.iterdir())


def build_model_mirror(root: Path, repos: dict[str, dict], texts: list[tuple[str, str]], *, seed: int = 0,
                       warmup_steps: int = 200) -> dict:
    """One folder per repo ({repo: size kwargs}); repos of the same size share one warmed-up model."""
    tokenizer, vocab, merges = qwen_tokenizer([p + t for p, t in texts])
    built, files = {}, {}
    for repo, size in repos.items():
        key = json.dumps(size, sort_keys=True)
        if key not in built:
            model = qwen_model(**size, seed=seed)
            losses = format_warmup(model, tokenizer, texts, steps=warmup_steps, seed=seed) if warmup_steps else []
            log.info("model %s: %d parameters, warm-up loss %s -> %s", key, sum(p.numel() for p in model.parameters()),
                     f"{losses[0]:.2f}" if losses else "-", f"{losses[-1]:.2f}" if losses else "-")
            built[key] = model
        files[repo] = save_checkpoint(Path(root) / repo, built[key], tokenizer, vocab, merges)
    return files
