"""The tiny world: seeded short MP4 clips of coloured shapes, with questions in Video-R1's record format.

Every answer needs the video: the question text is the same for every clip of a kind, and labels (so also
the correct letters) are balanced per split and question kind, so a text-only model is at chance.
Colours are saturated and far apart and shapes are about a third of the frame, so the labels survive
H.264 with yuv420p (chroma at half resolution) and can be recovered from decoded pixels.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
# Neutral grey near the vision encoder's pixel mean: an empty patch normalises to ~0 and carries no signal, so a
# tiny randomly initialised encoder sees the shapes instead of a large constant from a black background.
BACKGROUND = (124, 116, 104)
KINDS = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
LETTERS = "ABCDEFGH"

# question kind -> (data_source, problem text, choices; None = numerical answer)
QUESTIONS = {
    "colour": ("appearance", "What colour is the shape in the video?", tuple(COLOURS)),
    "shape": ("appearance", "What shape appears in the video?", KINDS),
    "order": ("temporal", "Which colour appears first?", tuple(COLOURS)),
    "direction": ("temporal", "In which direction does the shape move?", DIRECTIONS),
    "count": ("counting", "How many shapes appear in the video?", None),
}
COUNT_LABELS = (1, 2, 3)
# Train mixes every kind; each held-out split probes one ability.
SPLITS = {
    "train": ("colour", "shape", "order", "direction", "count"),
    "eval_appearance": ("colour", "shape"),
    "eval_temporal": ("order", "direction"),
    "eval_counting": ("count",),
}
# Fixed x264 settings: one thread and no B-frames (no MP4 edit list, which some decoders mishandle).
X264_OPTIONS = {"crf": "18", "preset": "medium", "x264-params": "bframes=0:threads=1"}


def _masks(s: int) -> dict[str, np.ndarray]:
    """Boolean s x s masks; fill ratio of the box: square 1, circle pi/4, triangle 1/2."""
    v, u = (np.mgrid[0:s, 0:s] + 0.5) / s  # pixel centres in [0, 1]
    return {
        "circle": (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25,
        "square": np.ones((s, s), bool),
        "triangle": np.abs(u - 0.5) <= v / 2,  # apex up, base at the bottom
    }


class _Clip:
    """Draws the shapes of one clip; a shape is (kind, colour, first frame, end frame, ys, xs)."""

    def __init__(self, rng: np.random.Generator, frames: int, size: int):
        self.rng, self.T, self.S = rng, frames, size
        self.s = size // 3
        # Events last, and are apart, at least a quarter of the clip: sampling every 4th frame (Video-R1's
        # 2 fps of an 8 fps clip) still sees every shape, and the order in which they appear.
        self.gap = max(1, frames // 4)
        self.shapes: list[tuple] = []

    def add(self, kind, colour, start, end, ys, xs):
        self.shapes.append((kind, colour, start, end, np.broadcast_to(ys, self.T), np.broadcast_to(xs, self.T)))

    def corners(self, n: int) -> list[tuple[int, int]]:
        # Distinct corners keep shapes of several colours well apart (no chroma bleeding between them).
        jitter = max(0, (self.S - 2 * self.s) // 4)
        far = self.S - self.s
        out = []
        for c in self.rng.choice(4, n, replace=False):
            dy, dx = self.rng.integers(0, jitter + 1, 2)
            out.append((far - dy if c // 2 else dy, far - dx if c % 2 else dx))
        return out

    def random_kind(self):
        return KINDS[self.rng.integers(len(KINDS))]

    def render(self) -> np.ndarray:
        video = np.empty((self.T, self.S, self.S, 3), np.uint8)
        video[:] = BACKGROUND
        masks = _masks(self.s)
        for kind, colour, start, end, ys, xs in self.shapes:
            for t in range(start, end):
                y, x = int(ys[t]), int(xs[t])
                video[t, y : y + self.s, x : x + self.s][masks[kind]] = COLOURS[colour]
        return video


def _draw(kind: str, label, clip: _Clip) -> None:
    """Put the shapes that make `label` the answer to question `kind` into `clip`."""
    rng, T, far = clip.rng, clip.T, clip.S - clip.s
    if kind in ("colour", "shape"):  # one static shape, visible throughout
        colour = label if kind == "colour" else list(COLOURS)[rng.integers(4)]
        shape = label if kind == "shape" else clip.random_kind()
        y, x = rng.integers(0, far + 1, 2)
        clip.add(shape, colour, 0, T, y, x)
    elif kind == "direction":  # crosses most of the frame along one axis, in a straight line
        m = far // 4
        a, b = rng.integers(0, m + 1), far - rng.integers(0, m + 1)
        path = np.round(np.linspace(a, b, T)).astype(int)
        if label in ("left", "up"):
            path = path[::-1]
        other = rng.integers(0, far + 1)
        ys, xs = (other, path) if label in ("left", "right") else (path, other)
        clip.add(clip.random_kind(), list(COLOURS)[rng.integers(4)], 0, T, ys, xs)
    elif kind == "order":  # first shape appears, at least `gap` frames later the second; the first may leave
        second = [c for c in COLOURS if c != label][rng.integers(3)]
        t_a = int(rng.integers(0, clip.gap))
        t_b = int(rng.integers(t_a + clip.gap, T - clip.gap + 1))
        end_a = T if rng.random() < 0.5 else int(rng.integers(max(t_a + clip.gap, t_b), T + 1))
        (ya, xa), (yb, xb) = clip.corners(2)
        clip.add(clip.random_kind(), label, t_a, end_a, ya, xa)
        clip.add(clip.random_kind(), second, t_b, T, yb, xb)
    elif kind == "count":  # `label` shapes of distinct colours, each appearing at its own time, some leave
        colours = [list(COLOURS)[i] for i in rng.choice(4, label, replace=False)]
        starts = np.sort(rng.choice(T - clip.gap, label, replace=False))
        for colour, start, (y, x) in zip(colours, starts, clip.corners(label)):
            end = T if rng.random() < 0.5 else int(rng.integers(start + clip.gap, T + 1))
            clip.add(clip.random_kind(), colour, int(start), end, y, x)
    else:
        raise ValueError(f"unknown question kind {kind!r}")


def write_mp4(path, video: np.ndarray, fps: int) -> None:
    """Encode uint8 RGB [T, H, W, 3] as H.264/yuv420p MP4, byte-for-byte reproducible."""
    import av

    if video.ndim != 4 or len(video) == 0 or video.shape[-1] != 3:
        raise ValueError(f"need a non-empty uint8 RGB video [T, H, W, 3], got shape {video.shape}")
    # bitexact: no library version strings or other volatile data in the container; no creation_time set.
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps, options=X264_OPTIONS)
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for i, rgb in enumerate(video):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _balanced(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n values in range(k), each as often as possible (counts differ by at most one), in random order."""
    return rng.permutation(np.arange(n) % k)


def generate_world(out_dir, *, seed: int, n_train: int, n_eval: int, frames: int = 16, size: int = 64,
                   fps: int = 8) -> dict:
    """Write videos/<clip_id>.mp4, train.json and eval_{appearance,temporal,counting}.json under out_dir.

    One clip per record, never shared between records; identical clips are redrawn, so no held-out clip
    also occurs in train. Returns counts per split and per question kind.
    """
    # Below 64 px, shapes are under 21 px and H.264's half-resolution chroma blurs a triangle's steps
    # into a circle's: the shape labels could no longer be read back from decoded frames (tests do that).
    if frames < 4 or size < 64 or size % 2:
        raise ValueError(f"need frames >= 4 and an even size >= 64, got frames={frames}, size={size}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    pid = 0
    summary = {"seed": seed, "clips": 0, "splits": {}, "tasks": {}}
    for split, kinds in SPLITS.items():
        n = n_train if split == "train" else n_eval
        kind_of = [kinds[i] for i in _balanced(rng, n, len(kinds))]
        # Per question kind: balanced labels.
        plans = {}
        for kind in kinds:
            m = kind_of.count(kind)
            plans[kind] = iter(_balanced(rng, m, len(QUESTIONS[kind][2] or COUNT_LABELS)))
        records = []
        for kind in kind_of:
            source, problem, choices = QUESTIONS[kind]
            label_i = next(plans[kind])
            label = (choices or COUNT_LABELS)[label_i]
            while True:  # redraw the rare duplicate clip
                clip = _Clip(rng, frames, size)
                _draw(kind, label, clip)
                video = clip.render()
                digest = hashlib.sha256(video.tobytes()).digest()
                if digest not in seen:
                    seen.add(digest)
                    break
            path = f"videos/{pid:06d}.mp4"
            write_mp4(out / path, video, fps)
            if choices is None:
                options, answer = [], str(label)
            else:
                # Options in one fixed order per question kind: the letter is a function of what the clip shows
                # (a tiny model cannot learn to look letters up), and balanced labels keep text alone at chance.
                options = [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
                answer = LETTERS[choices.index(label)]
            records.append({
                "problem_id": pid,
                "problem": problem,
                "data_type": "video",
                "problem_type": "numerical" if choices is None else "multiple choice",
                "options": options,
                "solution": f"<answer>{answer}</answer>",
                "path": path,
                "data_source": f"tinyworld/{source}",
            })
            pid += 1
        (out / f"{split}.json").write_text(json.dumps(records, indent=1) + "\n")
        summary["splits"][split] = n
        summary["tasks"][split] = dict(Counter(f"{QUESTIONS[k][0]}/{k}" for k in kind_of))
    summary["clips"] = pid
    return summary
