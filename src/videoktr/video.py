"""Video decoding: sample RGB frames at a given fps, capped at a number of frames.

Sampling follows Video-R1 / qwen-vl-utils: frame indices come from the stream's frame count and average
rate (constant frame rate assumed), so both backends pick the same indices for the same file.
"""

from __future__ import annotations

import os

import numpy as np


class VideoError(Exception):
    """A clip that cannot be read; the message is "<path>: <reason>"."""


def sample_indices(n_frames: int, rate: float, *, fps: float, max_frames: int) -> np.ndarray:
    """Indices of the frames to keep: every rate/fps-th frame, then at most max_frames spread uniformly."""
    if fps <= 0 or max_frames < 1:
        raise ValueError(f"need fps > 0 and max_frames >= 1, got fps={fps}, max_frames={max_frames}")
    step = rate / fps if rate > 0 else 1.0
    # np.unique: asking for more fps than the clip has must not repeat frames.
    idx = np.unique(np.minimum(np.round(np.arange(0, n_frames, step)), n_frames - 1).astype(int))
    if len(idx) > max_frames:
        idx = np.round(np.linspace(0, n_frames - 1, max_frames)).astype(int)
    return idx


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
    idx = sample_indices(len(vr), float(vr.get_avg_fps()), fps=fps, max_frames=max_frames)
    return vr.get_batch(list(idx)).asnumpy()


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
            return np.stack([frames[i] for i in want])
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


def read_frames(path, *, fps: float, max_frames: int, backend: str = "auto") -> np.ndarray:
    """Frames sampled at `fps` (at most `max_frames`, uniformly spread), as uint8 RGB [T, H, W, 3]."""
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
