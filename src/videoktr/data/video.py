"""Video decoding: sample RGB frames at a given fps, capped at a number of frames.

Sampling follows Video-R1 / qwen-vl-utils: frame indices come from the stream's frame count and average
rate (constant frame rate assumed), so both backends pick the same indices for the same file.
"""

from __future__ import annotations

import os

import numpy as np


class VideoError(Exception):
    """A clip that cannot be read; the message is "<path>: <reason>"."""


class Frames(np.ndarray):
    """Decoded frames [T, H, W, 3] (uint8 RGB) that know the rate they were sampled at, `sample_fps` (frames per
    second of the clip). The model's temporal positions depend on it (Qwen2.5-VL: second_per_grid_ts =
    temporal_patch_size / sample_fps); indexing (a shuffle, a subset) keeps it."""

    def __new__(cls, frames, sample_fps: float):
        obj = np.asarray(frames).view(cls)
        obj.sample_fps = float(sample_fps)
        return obj

    def __array_finalize__(self, obj):
        self.sample_fps = getattr(obj, "sample_fps", None)


def sample_indices(n_frames: int, rate: float, *, fps: float, max_frames: int) -> np.ndarray:
    """Indices of the frames to keep, as qwen-vl-utils (Video-R1's vision_process: smart_nframes, then linspace):
    clip seconds x fps frames, at least 4, at most max_frames and the clip's length, an even count (the temporal
    patch is 2 frames), spread uniformly over the whole clip. A clip of one frame keeps it (qwen-vl-utils refuses it).
    """
    if fps <= 0 or max_frames < 1:
        raise ValueError(f"need fps > 0 and max_frames >= 1, got fps={fps}, max_frames={max_frames}")
    upper = min(max_frames, n_frames) // 2 * 2
    if upper < 2:
        return np.arange(min(max_frames, n_frames))
    want = n_frames / rate * fps if rate > 0 else float(n_frames)  # no rate in the header: every frame
    n = int(min(max(want, 4), upper)) // 2 * 2
    return np.round(np.linspace(0, n_frames - 1, n)).astype(int)


def sampled_fps(n_kept: int, n_frames: int, rate: float, fps: float) -> float:
    """The rate of the kept frames over the clip (qwen-vl-utils: nframes / total_frames * video_fps)."""
    return n_kept / n_frames * rate if rate > 0 and n_frames > 0 else fps


def _first_line(e: Exception) -> str:
    # decord's messages carry a multi-line C++ backtrace; the first line is the reason.
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _check_file(path: str) -> None:
    # Checked up front so that the reason is plain, not a library's "invalid data".
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file")


def _read_decord(path: str, fps: float, max_frames: int) -> np.ndarray:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    rate = float(vr.get_avg_fps())
    idx = sample_indices(len(vr), rate, fps=fps, max_frames=max_frames)
    return Frames(vr.get_batch(list(idx)).asnumpy(), sampled_fps(len(idx), len(vr), rate, fps))


def _rate(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _read_pyav(path: str, fps: float, max_frames: int) -> np.ndarray:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        n = stream.frames
        if n <= 0:  # some containers (mkv, webm) store no count: count packets, no decoding
            n = sum(1 for p in container.demux(stream) if p.size)
        rate = _rate(stream)
    # A truncated clip decodes fewer frames than its header says: resample on what really decodes.
    for _ in range(2):
        if n <= 0:
            break
        want = sample_indices(n, rate, fps=fps, max_frames=max_frames)
        frames, count = _decode(path, set(want.tolist()), int(want[-1]))
        if count > want[-1]:
            return Frames(np.stack([frames[i] for i in want]), sampled_fps(len(want), n, rate, fps))
        n = count
    raise VideoError(f"{path}: no decodable frames")


def _decode(path: str, want: set[int], last: int) -> tuple[dict[int, np.ndarray], int]:
    """Decode frames 0..last, keep those in want as RGB; also return how many frames were decoded."""
    import av
    from av.video.reformatter import VideoReformatter

    # One reformatter for the clip: frame.to_ndarray(format=...) builds a new swscale context per frame,
    # which costs more than decoding a small frame.
    to_rgb = VideoReformatter()
    frames, count = {}, 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if count in want:
                    frames[count] = to_rgb.reformat(frame, format="rgb24").to_ndarray()
                count += 1
                if count > last:
                    break
        except av.FFmpegError:
            pass  # a damaged tail: keep what decoded, the caller resamples
    return frames, count


def read_frames(path, *, fps: float, max_frames: int, backend: str = "auto") -> Frames:
    """Frames sampled at `fps` (at most `max_frames`, uniformly spread; `sample_indices`), as uint8 RGB
    [T, H, W, 3] with their `sample_fps`."""
    path = os.fspath(path)
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"unknown backend {backend!r}")
    sample_indices(1, 1.0, fps=fps, max_frames=max_frames)  # bad arguments are a ValueError, not a VideoError
    _check_file(path)
    if backend in ("auto", "decord"):
        try:
            return _read_decord(path, fps, max_frames)
        except ImportError as e:
            if backend == "decord":
                raise VideoError(f"{path}: decord is not installed") from e
        except Exception as e:  # decord raises DECORDError/RuntimeError/IndexError on bad clips
            if backend == "decord":
                raise VideoError(f"{path}: decord cannot read it ({_first_line(e)})") from e
            # auto: PyAV gets a second chance (it also keeps the readable head of a truncated clip)
    try:
        return _read_pyav(path, fps, max_frames)
    except VideoError:
        raise
    except Exception as e:  # av.FFmpegError and friends: the contract is a VideoError, never a bare traceback
        raise VideoError(f"{path}: cannot decode ({_first_line(e)})") from e


def video_duration(path) -> float:
    """Duration in seconds of the first video stream."""
    import av

    path = os.fspath(path)
    _check_file(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / 1_000_000  # AV_TIME_BASE
            if stream.frames and _rate(stream):
                return stream.frames / _rate(stream)
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(f"{path}: cannot open ({_first_line(e)})") from e
    raise VideoError(f"{path}: unknown duration")
