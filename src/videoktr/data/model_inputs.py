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
