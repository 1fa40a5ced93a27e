"""From a Video-R1 record to model inputs: the conversation, decoded frames, and processor tensors.

One place builds prompts for SFT, filtering, RL and evaluation, so every stage sees the same text and pixels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from videoktr.data.prompts import build_question
from videoktr.data.records import UnsafePath, media_path
from videoktr.data.video import VideoError, read_frames


def conversation(record: dict) -> list[dict]:
    """The user turn: the clip, then the question with options and the think/answer instruction."""
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": build_question(record)}]}]


def prompt_text(processor, record: dict) -> str:
    return processor.apply_chat_template(conversation(record), tokenize=False, add_generation_prompt=True)


# Small: the rollouts of one question, and the questions of one clip, read it back to back; a large cache would hold
# thousands of full-resolution clips at paper scale.
@lru_cache(maxsize=32)
def _frames_cached(path: str, fps: float, max_frames: int, backend: str) -> np.ndarray:
    return read_frames(path, fps=fps, max_frames=max_frames, backend=backend)


def load_frames(record: dict, data_dir: Path, video_cfg: dict, max_frames: int | None = None) -> np.ndarray:
    """Frames of the record's clip; the same clip is decoded once however many rollouts read it.

    A path that leaves `data_dir` (absolute, or climbing out with `..`) is a VideoError, as an unreadable clip."""
    try:
        path = str(media_path(data_dir, record["path"]))
    except UnsafePath as e:
        raise VideoError(str(e)) from None
    frames = max_frames or video_cfg["train_frames"]
    return _frames_cached(path, float(video_cfg["fps"]), int(frames), video_cfg.get("backend", "auto"))


def video_metadata(videos: list[np.ndarray], fps: float) -> list[dict]:
    """The processor's metadata of each clip: its frames at the rate they were sampled at (`Frames.sample_fps`;
    `fps` for a plain array). Without it transformers assumes 24 fps whatever `fps=` says, and every clip gets the
    same, wrong seconds per temporal patch (M-RoPE's time positions)."""
    return [{"total_num_frames": len(v), "fps": float(getattr(v, "sample_fps", None) or fps),
             "frames_indices": list(range(len(v)))} for v in videos]


def encode(processor, texts: list[str], videos: list[np.ndarray], fps: float, padding_side: str = "left"):
    """Processor call for a batch: input ids, mm_token_type_ids, pixel rows, grids and seconds per grid."""
    processor.tokenizer.padding_side = padding_side
    return processor(text=texts, videos=videos, video_metadata=video_metadata(videos, fps), padding=True,
                     return_tensors="pt", return_mm_token_type_ids=True)


def apply_pixel_bounds(processor, video_cfg: dict):
    """Set the config's per-frame pixel bounds (`video.min_pixels`..`video.max_pixels`; the paper trains at
    128*28*28) on the processor's video processor, whatever the checkpoint ships (Qwen2.5-VL: 3136..12,845,056, so a
    720p clip would keep ~4x the paper's video tokens). Also caps a clip's total pixels as qwen-vl-utils does
    (`cap_pixels_per_frame`, unless the checkpoint says otherwise). In place; returns the processor."""
    vp = processor.video_processor
    vp.size = {"shortest_edge": int(video_cfg["min_pixels"]), "longest_edge": int(video_cfg["max_pixels"])}
    for key in ("min_pixels", "max_pixels"):  # legacy attributes some processors still carry
        if getattr(vp, key, None) is not None:
            setattr(vp, key, int(video_cfg[key]))
    if getattr(vp, "cap_pixels_per_frame", None) is None:
        vp.cap_pixels_per_frame = True
    return processor


def mm_token_type_ids(input_ids: torch.Tensor, config) -> torch.Tensor:
    """1 on image tokens, 2 on video tokens: M-RoPE needs it over the whole prompt + completion."""
    ids = torch.zeros_like(input_ids)
    ids[input_ids == config.image_token_id] = 1
    ids[input_ids == config.video_token_id] = 2
    return ids


def video_input_stats(video_grid_thw, *, patch_size: int = 14, merge_size: int = 2,
                      temporal_patch_size: int = 2) -> dict | None:
    """What the model sees of each clip of a processor batch (rows [t, h, w] of `video_grid_thw`, in patches): frames
    fed (t x temporal patch), pixels per frame (h x w x patch^2) and video tokens (t x h x w / merge^2), as
    {clips, frames_max, pixels_per_frame_max, tokens_min, tokens_mean, tokens_max}; None without videos. Logged by
    training (metrics `video/*`) and by the filter and evaluation backends, so the input sizes can be checked."""
    if video_grid_thw is None or len(video_grid_thw) == 0:
        return None
    rows = [[int(x) for x in row] for row in (video_grid_thw.tolist() if hasattr(video_grid_thw, "tolist")
                                               else video_grid_thw)]
    tokens = [t * h * w // merge_size ** 2 for t, h, w in rows]
    return {"clips": len(rows), "frames_max": max(t * temporal_patch_size for t, _, _ in rows),
            "pixels_per_frame_max": max(h * w * patch_size ** 2 for _, h, w in rows),
            "tokens_min": min(tokens), "tokens_mean": sum(tokens) / len(tokens), "tokens_max": max(tokens)}


def merge_video_stats(parts: list[dict | None]) -> dict | None:
    """One video_input_stats over several batches."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    clips = sum(p["clips"] for p in parts)
    return {"clips": clips, "frames_max": max(p["frames_max"] for p in parts),
            "pixels_per_frame_max": max(p["pixels_per_frame_max"] for p in parts),
            "tokens_min": min(p["tokens_min"] for p in parts),
            "tokens_mean": sum(p["tokens_mean"] * p["clips"] for p in parts) / clips,
            "tokens_max": max(p["tokens_max"] for p in parts)}


def format_video_stats(stats: dict) -> str:
    return (f"{stats['clips']} clip(s), at most {stats['frames_max']} frames and {stats['pixels_per_frame_max']} "
            f"pixels per frame, video tokens per clip min/mean/max {stats['tokens_min']}/{stats['tokens_mean']:.1f}/"
            f"{stats['tokens_max']}")


def _patch_sizes(processor) -> dict:
    vp = getattr(processor, "video_processor", None)
    return {"patch_size": int(getattr(vp, "patch_size", 14) or 14),
            "merge_size": int(getattr(vp, "merge_size", 2) or 2),
            "temporal_patch_size": int(getattr(vp, "temporal_patch_size", 2) or 2)}


def processor_video_stats(processor, batch) -> dict | None:
    """video_input_stats of a processor batch, with the processor's patch, merge and temporal patch sizes."""
    return video_input_stats(batch.get("video_grid_thw") if hasattr(batch, "get") else None, **_patch_sizes(processor))


def clip_video_stats(processor, batch) -> list[dict]:
    """video_input_stats of each clip of a processor batch, in order ([] without videos): what a prediction or filter
    row records of its own clip."""
    grid = batch.get("video_grid_thw") if hasattr(batch, "get") else None
    return [] if grid is None else [video_input_stats([row], **_patch_sizes(processor)) for row in grid]
