"""The tiny world and video decoding.

Labels are checked from decoded pixels (read_frames), never from the generator's variables: a bug in
drawing, encoding or labelling shows up as a wrong answer here.
"""

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from videoktr.data.video import VideoError, read_frames, video_duration
from videoktr.data.world import generate_world, write_mp4

SPLITS = ("train", "eval_appearance", "eval_temporal", "eval_counting")
KEYS = {"problem_id", "problem", "data_type", "problem_type", "options", "solution", "path", "data_source"}
SIZE, FRAMES, FPS = 64, 16, 8
MIN_PIXELS = 25  # a shape covers >= ~200 pixels (triangle of 21x21); edge specks stay well below this


def _has_decord():
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = ["pyav", "auto"] + (["decord"] if _has_decord() else [])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    summary = generate_world(out, seed=0, n_train=24, n_eval=8)
    records = {s: json.loads((out / f"{s}.json").read_text()) for s in SPLITS}
    return out, summary, records


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- reading answers back from pixels ---------------------------------------------------------------

def colour_masks(video: np.ndarray) -> dict[str, np.ndarray]:
    """Per colour, a boolean [T, H, W] mask of the pixels of that colour.

    A pixel is lit if its brightest channel clears the black background; its colour is the palette colour
    nearest in chromaticity (rgb / max). Edge pixels are dimmed by yuv420p's half-resolution chroma (dark
    blue especially), so absolute per-channel thresholds would shave the edges off and distort shapes.
    """
    palette = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}
    rgb = [video[..., i].astype(np.float32) for i in range(3)]  # per channel: numpy is slow on axis -1
    peak = np.maximum(np.maximum(rgb[0], rgb[1]), rgb[2])
    chroma = [x / np.maximum(peak, 1) for x in rgb]
    dist = np.stack([sum((x - p) ** 2 for x, p in zip(chroma, ps)) for ps in palette.values()])
    nearest = dist.argmin(0)
    lit = (peak >= 80) & (dist.min(0) < 0.25)  # grey background: distance >= 1
    return {c: lit & (nearest == i) for i, c in enumerate(palette)}


def visible(video):
    """Colour -> boolean [T]: is a shape of that colour on screen in frame t."""
    return {c: m.sum(axis=(1, 2)) >= MIN_PIXELS for c, m in colour_masks(video).items()}


def shape_of(mask: np.ndarray) -> str:
    """Kind of shape from the fill ratio of its bounding box: square 1, circle ~0.79, triangle ~0.5."""
    ys, xs = np.nonzero(mask)
    ratio = mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
    return "square" if ratio > 0.9 else "circle" if ratio > 0.65 else "triangle"


def answer_from_pixels(record, video, strict: bool = True) -> str:
    """The answer text (an option's text, or a number) that the decoded frames support.

    strict: all frames of the clip are given, so shapes must also be seen to appear at distinct times.
    """
    kind = record["problem"]
    vis = visible(video)
    present = [c for c in vis if vis[c].any()]
    if kind.startswith("How many"):
        first = [int(np.argmax(vis[c])) for c in present]
        assert len(set(first)) == len(first) or not strict, "shapes should appear at different times"
        return str(len(present))
    if kind.startswith("Which colour appears first"):
        assert len(present) == 2
        first = {c: int(np.argmax(vis[c])) for c in present}
        assert len(set(first.values())) == 2, "the two shapes should not appear together"
        return min(first, key=first.get)
    # single-shape questions: one colour, on screen in every frame
    assert len(present) == 1, present
    colour = present[0]
    assert vis[colour].all()
    mask = colour_masks(video)[colour]
    if kind.startswith("What colour"):
        return colour
    if kind.startswith("What shape"):
        kinds = Counter(shape_of(m) for m in mask)
        return kinds.most_common(1)[0][0]
    if kind.startswith("In which direction"):
        (y0, x0), (y1, x1) = (np.argwhere(mask[t]).mean(axis=0) for t in (0, -1))
        dy, dx = y1 - y0, x1 - x0
        assert max(abs(dx), abs(dy)) > SIZE / 4 and min(abs(dx), abs(dy)) < 1.5  # straight along one axis
        if abs(dx) > abs(dy):
            return "right" if dx > 0 else "left"
        return "down" if dy > 0 else "up"  # image rows grow downwards
    raise AssertionError(f"unknown question {kind!r}")


def expected_answer(record) -> str:
    """The answer text the record claims."""
    got = record["solution"].removeprefix("<answer>").removesuffix("</answer>")
    if record["problem_type"] == "numerical":
        return got
    by_letter = dict(o.split(". ", 1) for o in record["options"])
    return by_letter[got]


# --- the world -------------------------------------------------------------------------------------

def test_every_label_matches_the_decoded_frames(world):
    out, _, records = world
    n = 0
    for split in SPLITS:
        for rec in records[split]:
            video = read_frames(out / rec["path"], fps=FPS, max_frames=FRAMES)
            assert video.shape == (FRAMES, SIZE, SIZE, 3) and video.dtype == np.uint8
            assert answer_from_pixels(rec, video) == expected_answer(rec), (split, rec)
            n += 1
    assert n == 24 + 3 * 8


def test_labels_survive_video_r1_sampling(world):
    # The pipeline may read 2 fps (Video-R1's default): 4 of the 16 frames. Every shape and the order of
    # appearance must still be visible in them.
    out, _, records = world
    for split in SPLITS:
        for rec in records[split]:
            video = read_frames(out / rec["path"], fps=2, max_frames=16)
            assert len(video) == 4
            assert answer_from_pixels(rec, video, strict=False) == expected_answer(rec), (split, rec)


def test_too_small_worlds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="size"):
        generate_world(tmp_path, seed=0, n_train=1, n_eval=1, size=32)
    with pytest.raises(ValueError, match="frames"):
        generate_world(tmp_path, seed=0, n_train=1, n_eval=1, frames=2)


def test_records_have_exactly_the_video_r1_fields(world):
    out, summary, records = world
    assert [len(records[s]) for s in SPLITS] == [24, 8, 8, 8]
    assert summary["splits"] == {"train": 24, "eval_appearance": 8, "eval_temporal": 8, "eval_counting": 8}
    assert summary["clips"] == 48
    all_recs = [r for s in SPLITS for r in records[s]]
    for rec in all_recs:
        assert set(rec) == KEYS
        assert rec["data_type"] == "video"
        assert (out / rec["path"]).is_file() and rec["path"].startswith("videos/")
        if rec["problem_type"] == "numerical":
            assert rec["options"] == [] and rec["data_source"] == "tinyworld/counting"
            assert rec["solution"] in {f"<answer>{k}</answer>" for k in (1, 2, 3)}
        else:
            assert rec["problem_type"] == "multiple choice"
            letters = [o.split(". ", 1)[0] for o in rec["options"]]
            assert letters == list("ABCD"[: len(letters)]) and len(letters) in (3, 4)
            assert rec["solution"][len("<answer>")] in letters
    ids = [r["problem_id"] for r in all_recs]
    assert len(set(ids)) == len(ids)
    assert {r["data_source"] for r in records["eval_appearance"]} == {"tinyworld/appearance"}
    assert {r["data_source"] for r in records["eval_temporal"]} == {"tinyworld/temporal"}
    assert {r["data_source"] for r in records["eval_counting"]} == {"tinyworld/counting"}
    assert {r["data_source"] for r in records["train"]} == {
        "tinyworld/appearance", "tinyworld/temporal", "tinyworld/counting"}


def test_held_out_clips_are_not_in_train(world):
    out, _, records = world
    train = {r["path"] for r in records["train"]}
    held = [r["path"] for s in SPLITS[1:] for r in records[s]]
    assert not train & set(held)
    # no two records share a clip's content either
    digests = [hashlib.sha256((out / p).read_bytes()).hexdigest() for p in list(train) + held]
    assert len(set(digests)) == len(digests)


def test_correct_letters_and_labels_are_balanced(tmp_path):
    # Per split and question, every letter and every label is the answer equally often (+-1): a model that
    # reads only the text cannot beat chance.
    generate_world(tmp_path, seed=3, n_train=40, n_eval=16, frames=8)
    letters_seen = set()
    for split in SPLITS:
        groups = {}
        for rec in json.loads((tmp_path / f"{split}.json").read_text()):
            groups.setdefault(rec["problem"], []).append(rec)
        for problem, recs in groups.items():
            letters = Counter(r["solution"] for r in recs)
            labels = Counter(expected_answer(r) for r in recs)
            n_choices = len(recs[0]["options"]) or 3  # counting: 1, 2 or 3
            if recs[0]["options"]:
                assert len(letters) == min(n_choices, len(recs)), (split, problem, letters)
                assert max(letters.values()) - min(letters.values()) <= 1, (split, problem, letters)
                letters_seen |= set(letters)
            assert len(labels) == min(n_choices, len(recs)), (split, problem, labels)
            assert max(labels.values()) - min(labels.values()) <= 1, (split, problem, labels)
    assert letters_seen == {f"<answer>{x}</answer>" for x in "ABCD"}


def test_same_seed_same_bytes_other_seed_differs(world, tmp_path):
    out, summary, _ = world
    again = generate_world(tmp_path / "again", seed=0, n_train=24, n_eval=8)
    other = generate_world(tmp_path / "other", seed=1, n_train=24, n_eval=8)
    first = _files(out)
    assert again == summary
    assert _files(tmp_path / "again") == first  # every MP4 and JSON, byte for byte
    second = _files(tmp_path / "other")
    assert second.keys() == first.keys()
    assert sum(first[k] != second[k] for k in first) >= len(first) - 2
    assert other["splits"] == summary["splits"]


# --- read_frames -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    """A 40-frame 10 fps clip (4 s) whose frame i is a flat grey of level 5 * i: indices readable back."""
    path = tmp_path_factory.mktemp("ramp") / "ramp.mp4"
    video = np.repeat(np.arange(40, dtype=np.uint8)[:, None, None, None] * 5, 32, axis=1)
    write_mp4(path, np.broadcast_to(video, (40, 32, 32, 3)).copy(), 10)
    return path


def frame_ids(video):
    return [int(round(v / 5)) for v in video.reshape(len(video), -1).mean(axis=1)]


def spread(n_frames, n):
    """qwen-vl-utils' frame indices: n spread uniformly over the whole clip."""
    return [int(i) for i in np.round(np.linspace(0, n_frames - 1, n))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_frames_samples_as_qwen_vl_utils(ramp, backend):
    # 4 s at 10 fps: seconds x fps frames, spread over the whole clip (its tail included), at their own rate
    v = read_frames(ramp, fps=10, max_frames=100, backend=backend)
    assert frame_ids(v) == list(range(40)) and v.sample_fps == pytest.approx(10)
    v = read_frames(ramp, fps=2, max_frames=100, backend=backend)
    assert frame_ids(v) == spread(40, 8) and v.sample_fps == pytest.approx(2)
    assert frame_ids(read_frames(ramp, fps=4, max_frames=100, backend=backend)) == spread(40, 16)
    # more fps than the clip has: each frame once
    assert len(read_frames(ramp, fps=30, max_frames=100, backend=backend)) == 40
    # the cap: an even count (the temporal patch is 2 frames) over the whole clip, at the rate that gives
    v = read_frames(ramp, fps=10, max_frames=5, backend=backend)
    assert frame_ids(v) == spread(40, 4) and v.sample_fps == pytest.approx(4 / 40 * 10)
    # at least 4 frames however low the fps
    assert frame_ids(read_frames(ramp, fps=0.1, max_frames=16, backend=backend)) == spread(40, 4)
    v = read_frames(ramp, fps=2, max_frames=3, backend=backend)
    assert v.shape == (2, 32, 32, 3) and v.dtype == np.uint8
    # a shuffle or a subset keeps the rate (the temporal counterfactual reads the same clip)
    assert v[::-1].sample_fps == v.sample_fps
    assert video_duration(ramp) == pytest.approx(4.0)


def test_backends_agree(world):
    if not _has_decord():
        pytest.skip("decord not installed")
    out, _, records = world
    path = out / records["eval_temporal"][0]["path"]
    a = read_frames(path, fps=4, max_frames=16, backend="pyav")
    b = read_frames(path, fps=4, max_frames=16, backend="decord")
    assert a.shape == b.shape == (8, SIZE, SIZE, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def _bad_files(tmp_path, ramp):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    cut = tmp_path / "cut.mp4"  # header lost (the MP4 index is at the end)
    cut.write_bytes(ramp.read_bytes()[:600])
    return [tmp_path / "missing.mp4", empty, noise, cut]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreadable_clips_raise_video_error_naming_the_path(tmp_path, ramp, backend):
    for path in _bad_files(tmp_path, ramp):
        with pytest.raises(VideoError) as err:
            read_frames(path, fps=2, max_frames=8, backend=backend)
        assert str(path) in str(err.value) and len(str(err.value)) > len(str(path)) + 2
        with pytest.raises(VideoError, match=str(path).replace(".", r"\.")):
            video_duration(path)


def _faststart_clip(path):
    """16 frames at 8 fps with the MP4 index at the front, so that cutting the file keeps the header."""
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264", rate=8)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for i in range(16):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 10 * i, np.uint8), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path.read_bytes()


def test_a_clip_without_decodable_frames_raises(tmp_path):
    # The header promises 16 frames, the frame data is cut off: none decode.
    path = tmp_path / "hollow.mp4"
    data = _faststart_clip(path)
    path.write_bytes(data[: data.index(b"mdat") + 4])
    for backend in BACKENDS:
        with pytest.raises(VideoError, match="hollow"):
            read_frames(path, fps=8, max_frames=16, backend=backend)


def test_a_truncated_clip_gives_the_frames_that_decode(tmp_path):
    # PyAV (and auto, which falls back to it) keep the readable head and sample over it.
    path = tmp_path / "tail.mp4"
    data = _faststart_clip(path)
    path.write_bytes(data[: len(data) - 120])
    for backend in ("pyav", "auto"):
        video = read_frames(path, fps=8, max_frames=16, backend=backend)
        assert 1 <= len(video) < 16
        ids = frame_ids(video / 2)  # frame i is grey 10 i
        assert ids == spread(ids[-1] + 1, len(video))  # spread over the head that decodes, in order
