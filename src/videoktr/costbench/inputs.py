"""What the benchmark feeds its trainers: clips resampled to a frame count, a random-init model of another size,
the model's description for the report, and whether this machine has bf16 units (the precision both methods use).
"""

from __future__ import annotations

from pathlib import Path


def frames_data_dir(records: list[dict], data_dir, work: Path, frames: int, video_cfg: dict):
    """A data dir whose clips give `frames` frames at video_cfg's fps: the original one if its clips are long
    enough, otherwise frame-repeated copies of the same clips (only the frame count changes)."""
    import numpy as np

    from videoktr.data.records import media_path
    from videoktr.data.video import read_frames
    from videoktr.data.world import write_mp4

    fps = float(video_cfg["fps"])
    backend = video_cfg.get("backend", "auto")
    clips = {r["path"]: read_frames(media_path(data_dir, r["path"]), fps=fps, max_frames=10**6, backend=backend)
             for r in records}
    if all(len(c) >= frames for c in clips.values()):
        return Path(data_dir)
    out = work / f"clips_f{frames}"
    for path, clip in clips.items():
        idx = np.minimum((np.arange(frames) * len(clip)) // frames, len(clip) - 1)
        dest = media_path(out, path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(dest, clip[idx], fps=max(1, round(fps)))
    return out


def warm_frames(records: list[dict], data_dir, video_cfg: dict) -> None:
    """Decode every record's clip once, so that no timed step pays for the first decoding."""
    from videoktr.data.model_inputs import load_frames

    for r in records:
        load_frames(r, data_dir, video_cfg)


def native_bf16() -> bool:
    """Whether this machine runs bf16 matrix products natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX).

    TRL's GRPOConfig turns bf16 autocast on by default; on a CPU without bf16 units every bf16 product of the loss
    forward and backward is emulated, several times slower than fp32, which inflates the GRPO step (the denominator)
    with a cost a GPU does not have.
    """
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resize_model(src_dir, out_dir, size: dict, seed: int) -> Path:
    """A random-init model of another size with `src_dir`'s tokenizer and processor (benchmarking cost only:
    the weights do not matter when completions have a fixed length)."""
    from transformers import AutoConfig, AutoProcessor

    from videoktr.models.tiny import build_model

    processor = AutoProcessor.from_pretrained(src_dir)
    config = AutoConfig.from_pretrained(src_dir)
    text, vision = config.text_config, config.vision_config
    kwargs = {"hidden_size": text.hidden_size, "layers": text.num_hidden_layers, "heads": text.num_attention_heads,
              "vision_hidden": vision.hidden_size, "vision_depth": vision.depth}
    unknown = set(size) - set(kwargs)
    if unknown:
        raise ValueError(f"unknown model size key {sorted(unknown)[0]!r} (known: {sorted(kwargs)})")
    kwargs.update(size)
    model = build_model(processor.tokenizer, **kwargs, seed=seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return Path(out_dir)


def describe_model(model_dir) -> dict:
    """The model's sizes for the report (parameters approximated from the fp32 safetensors' bytes)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    text, vision = config.text_config, config.vision_config
    weights = sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))
    return {"hidden_size": text.hidden_size, "layers": text.num_hidden_layers, "heads": text.num_attention_heads,
            "kv_heads": text.num_key_value_heads, "intermediate_size": text.intermediate_size,
            "vocab_size": text.vocab_size, "vision_hidden": vision.hidden_size, "vision_depth": vision.depth,
            "parameters_approx": weights // 4}
