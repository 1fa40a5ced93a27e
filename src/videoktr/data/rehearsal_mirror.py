"""A local hub for rehearsing the paper study on CPU: every repository config/paper.yaml downloads, in its published
layout, with made-up but well-formed contents (`videoktr rehearsal-mirror --out DIR`).

    <out>/<repo>/<file>     as data.mirror, model.mirror, sft_models.<name>.mirror, released.<name>.mirror and
                            eval.mirror read it (videoktr.data.hub.fetch)

- the RL data (config data.hub): Video-R1/Video-R1-data (Video-R1-260k.json: video rows of several problem types,
  one image row, clips in <Source>/<Source>_partN.zip) and TencentARC/Video-Holmes
  (Benchmark/train_Video-Holmes.json, Benchmark/videos.zip -> Benchmark/videos_cropped/<video ID>.mp4);
- the nine benchmarks (config eval.hub) in their published layouts, from tests/fixtures/benchmarks (malformed rows,
  missing clips and one zip that is not a zip included: `build_benchmark_mirror`, also used by
  tests/test_bench_hub.py);
- the checkpoints (config model, sft_models, released): tiny weights, but the processor and model config of the real
  Qwen2.5-VL (patch 14, merge 2, temporal patch 2, min/max pixels 3136/12845056, vision and video token ids
  151652-151656, vocabulary 152064) and the hub's file names (config.json, generation_config.json,
  preprocessor_config.json, chat_template.json, tokenizer.json, tokenizer_config.json, vocab.json, merges.txt,
  model-0000N-of-0000M.safetensors + model.safetensors.index.json).

The clips are shaped like the real ones (640x360 and 1280x720, landscape and portrait, 24-30 fps, 3-60 s) and tiny in
bytes (few distinct frames, a high CRF); one training clip is corrupt (a truncated MP4), as real data has.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from videoktr.data.mirror_checkpoints import build_model_mirror

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests/fixtures/benchmarks"
PAPER_CONFIG = ROOT / "config/paper.yaml"

# Qwen2.5-VL's tokenizer: 151643 byte-level BPE entries, then these added tokens (ids 151643..151664), vocabulary
# (embedding rows) padded to 152064.
CLIP_SHAPES = [(640, 360, 30, 3), (1280, 720, 24, 12), (360, 640, 30, 5), (1280, 720, 25, 60),
               (640, 360, 24, 20), (720, 1280, 30, 8), (640, 360, 25, 30), (1280, 720, 30, 4)]
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}


# ------------------------------------------------------------------------------------------------------ clips


def write_clip(path: Path, width: int, height: int, fps: int, seconds: float, seed: int) -> dict:
    """An H.264 MP4 of `seconds` at `fps`: a coloured square that jumps every 2 s on a plain background. Returns
    what it shows (colour, positions) for the questions."""
    import av

    rng = np.random.default_rng(seed)
    bg = rng.integers(30, 120, 3).astype(np.uint8)
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    side = min(width, height) // 4
    n = int(round(fps * seconds))
    changes = max(1, int(np.ceil(seconds / 2)))
    spots = [(int(rng.integers(0, height - side)), int(rng.integers(0, width - side))) for _ in range(changes)]
    pictures = []
    for y, x in spots:
        img = np.empty((height, width, 3), np.uint8)
        img[:] = bg
        img[y:y + side, x:x + side] = COLOURS[colour]
        pictures.append(img)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps),
                                      options={"preset": "ultrafast", "crf": "45", "g": str(10 * fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        frames = {}
        for i in range(n):
            k = min(i // (2 * fps), changes - 1)
            if k not in frames:
                frames[k] = av.VideoFrame.from_ndarray(pictures[k], format="rgb24")
            frame = frames[k]
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return {"colour": colour, "moves": changes - 1, "width": width, "height": height, "fps": fps,
            "seconds": seconds}


def corrupt_clip(path: Path, good: Path) -> None:
    """A truncated copy of a good clip: its header promises frames that are not there."""
    data = good.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: max(64, len(data) // 5)])


# ------------------------------------------------------------------------------------------------- questions


def _mc(rng, stem: str, right: str, wrong: list[str]) -> tuple[list[str], str]:
    opts = [right, *wrong[:3]]
    rng.shuffle(opts)
    letters = "ABCD"
    return [f"{letters[i]}. {o}" for i, o in enumerate(opts)], letters[opts.index(right)]


def video_r1_rows(clips: dict[str, dict], rng) -> list[dict]:
    """Video-R1-260k rows (its fields and problem types) about each clip: colour (multiple choice), moves
    (numerical), orientation (multiple choice), duration (regression), the colour's name (free-form)."""
    rows, pid = [], 0
    for path, info in clips.items():
        others = [c for c in COLOURS if c != info["colour"]]
        opts, ans = _mc(rng, "", info["colour"], others)
        portrait = info["height"] > info["width"]
        oopts, oans = _mc(rng, "", "portrait" if portrait else "landscape",
                          ["landscape" if portrait else "portrait", "square", "circular"])
        source = path.split("/")[1]
        for ptype, problem, options, answer in [
            ("multiple choice", "What colour is the square in the video?", opts, ans),
            ("numerical", "How many times does the square jump to a new place?", [], str(info["moves"])),
            ("multiple choice", "Is the video in landscape or portrait format?", oopts, oans),
            ("regression", "How long is the video, in seconds?", [], f"{info['seconds']:.1f}"),
            ("free-form", "Name the colour of the moving square in one word.", [], info["colour"]),
        ]:
            pid += 1
            rows.append({"problem_id": pid, "problem": problem, "data_type": "video", "problem_type": ptype,
                         "options": options, "process": "<think>Look at the square.</think>",
                         "solution": f"<answer>{answer}</answer>", "path": path,
                         "data_source": f"{source}/rehearsal"})
    return rows


def holmes_rows(clips: dict[str, dict], rng) -> list[dict]:
    """train_Video-Holmes.json rows: "video ID", "Question ID", "Question Type", "Question", "Options", "Answer"."""
    rows = []
    for vid, info in clips.items():
        for qtype, question, right, wrong in [
            ("SR", "Why does the square keep moving?", "It is looking for a place to rest",
             ["It is chased", "The wind pushes it", "It never moves"]),
            ("TCI", "What colour is the square?", info["colour"], [c for c in COLOURS if c != info["colour"]]),
            ("MHR", "What shape jumps around the frame?", "a square", ["a circle", "a star", "a triangle"]),
        ]:
            opts = [right, *wrong[:3]]
            rng.shuffle(opts)
            rows.append({"video ID": vid, "Question ID": f"{vid}_{qtype}_1", "Question Type": qtype,
                         "Question": question, "Options": {"ABCD"[i]: o for i, o in enumerate(opts)},
                         "Answer": "ABCD"[opts.index(right)], "Explanation": "made up for the rehearsal"})
    return rows


def _zip(path: Path, members: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for arcname, src in members.items():
            z.write(src, arcname)


def build_training_mirror(root: Path, data_hub: dict, *, seed: int = 0) -> dict:
    """data.hub's two datasets under `root` in their published layouts; returns counts."""
    rng = np.random.default_rng(seed)
    work = root / ".clips"
    # Video-R1-260k: two sources, the first in two zip parts; one corrupt clip; one image row (dropped on conversion)
    vr1 = root / data_hub["video_r1"]["repo"]
    vr1.mkdir(parents=True, exist_ok=True)
    parts = {"CLEVRER": [[0, 1], [2]], "STAR": [[3, 4]]}
    clips, members = {}, {}
    for source, groups in parts.items():
        for p, group in enumerate(groups, start=1):
            zip_members = {}
            for i in group:
                w, h, fps, sec = CLIP_SHAPES[i]
                name = f"video_{i:04d}.mp4"
                clip = work / source / name
                clips[f"./{source}/{name}"] = write_clip(clip, w, h, fps, sec, seed * 1000 + i)
                zip_members[name] = clip
            members[f"{source}/{source}_part{p}.zip"] = zip_members
    bad = work / "STAR/video_0099.mp4"
    corrupt_clip(bad, work / "STAR/video_0003.mp4")
    members["STAR/STAR_part1.zip"]["video_0099.mp4"] = bad
    for rel, zm in members.items():
        _zip(vr1 / rel, zm)
    rows = video_r1_rows(clips, rng)
    rows.append({"problem_id": len(rows) + 1, "problem": "What colour is the square?", "data_type": "video",
                 "problem_type": "multiple choice", "options": ["A. red", "B. blue"], "process": "",
                 "solution": "<answer>A</answer>", "path": "./STAR/video_0099.mp4", "data_source": "STAR/rehearsal"})
    rows.append({"problem_id": len(rows) + 1, "problem": "What is written on the sign?", "data_type": "image",
                 "problem_type": "OCR", "options": [], "process": "", "solution": "<answer>stop</answer>",
                 "path": "./Spatial/img_0001.jpg", "data_source": "Spatial/rehearsal"})
    (vr1 / data_hub["video_r1"]["records"]).write_text(json.dumps(rows, indent=1))
    # Video-Holmes train: Benchmark/train_Video-Holmes.json, Benchmark/videos.zip -> videos_cropped/<video ID>.mp4
    src = data_hub["video_holmes"]
    holmes = root / src["repo"]
    hclips, hmembers = {}, {}
    inner = Path(src["video_dir"]).relative_to(Path(src["media"][0]).parent)  # videos_cropped
    for j, i in enumerate((5, 6, 7)):
        w, h, fps, sec = CLIP_SHAPES[i]
        vid = f"film{j + 1:03d}"
        clip = work / "holmes" / f"{vid}.mp4"
        hclips[vid] = write_clip(clip, w, h, fps, sec, seed * 1000 + 100 + i)
        hmembers[f"{inner}/{vid}.mp4"] = clip
    _zip(holmes / src["media"][0], hmembers)
    hrows = holmes_rows(hclips, rng)
    (holmes / src["records"]).parent.mkdir(parents=True, exist_ok=True)
    (holmes / src["records"]).write_text(json.dumps(hrows, indent=1))
    shutil.rmtree(work)
    return {"video_r1_rows": len(rows), "video_r1_clips": len(clips) + 1, "holmes_questions": len(hrows),
            "holmes_clips": len(hclips)}


# ------------------------------------------------------------------------------------------------ benchmarks


def _bench_zip(path: Path, members: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for arcname, src in members.items():
            z.write(src, arcname)


def build_benchmark_mirror(root: Path, hub: dict, fixtures: Path = FIXTURES, *, realistic_clips: bool = False,
                           seed: int = 0) -> Path:
    """<root>/<repo>/<file> for each benchmark of `hub` (config eval.hub), in the published layout its entry names
    (records files, clips or clip archives), from the fixtures of tests/fixtures/benchmarks. `realistic_clips`: each
    fixture clip is replaced by one of the real shapes (write_clip) under the same name."""
    root = Path(root)
    counter = iter(range(10_000))

    def clip(src: Path) -> Path:
        if not realistic_clips:
            return src
        i = next(counter)
        w, h, fps, sec = CLIP_SHAPES[i % len(CLIP_SHAPES)]
        sec = min(sec, 30)  # a 60 s clip decoded at 16, 32 and 64 frames by every evaluation: one is enough
        out = root / ".clips" / f"{i}_{src.name}"
        write_clip(out, w, h, fps, sec, seed * 1000 + 500 + i)
        return out

    def repo(name):
        d = root / hub[name]["repo"]
        d.mkdir(parents=True, exist_ok=True)
        return d

    def copy_clips(src_dir: Path, dst_dir: Path):
        for p in sorted(src_dir.rglob("*.mp4")):
            out = dst_dir / p.relative_to(src_dir)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(clip(p), out)

    fix = Path(fixtures)
    if "video_holmes" in hub:  # test_Video-Holmes.json, videos.zip -> videos_cropped/<video ID>.mp4
        d = repo("video_holmes")
        shutil.copy(fix / "video_holmes/test_Video-Holmes.json", d)
        _bench_zip(d / "videos.zip", {f"videos_cropped/{p.name}": clip(p)
                                      for p in sorted((fix / "video_holmes/videos").glob("*.mp4"))})
    if "videommmu" in hub:  # <Track>/test-*.parquet, <Discipline>.zip -> <Discipline>/<id>.mp4
        d = repo("videommmu")
        for track in ("Perception", "Comprehension", "Adaptation"):
            shutil.copytree(fix / "videommmu" / track, d / track)
        shutil.copytree(fix / "videommmu/Comprehension", d / "Comprehension_Engineering")  # not a track: never read
        _bench_zip(d / "Science.zip", {"Science/dev_Biology_3.mp4": clip(fix / "videommmu/videos/Science/dev_Biology_3.mp4"),
                                       "Science/test_Math_7.mp4": clip(fix / "videommmu/videos/test_Math_7.mp4")})
        (d / "Art.zip").write_bytes(b"this is not a zip archive")
    if "mmvu" in hub:  # validation.json, videos/<Subject>/<n>.mp4 as plain files
        d = repo("mmvu")
        shutil.copy(fix / "mmvu/validation.json", d)
        copy_clips(fix / "mmvu/videos", d / "videos")
    if "tempcompass" in hub:  # multi-choice/*.parquet (and another split, not fetched), tempcompass_videos.zip
        d = repo("tempcompass")
        shutil.copytree(fix / "tempcompass/multi-choice", d / "multi-choice")
        shutil.copytree(fix / "tempcompass/multi-choice", d / "yes_no")
        _bench_zip(d / "tempcompass_videos.zip", {f"videos/{p.name}": clip(p)
                                                  for p in sorted((fix / "tempcompass/videos").glob("*.mp4"))})
    if "videomme" in hub:  # videomme/test-*.parquet, videos_chunked_NN.zip -> data/<videoID>.mp4, subtitle.zip
        d = repo("videomme")
        shutil.copytree(fix / "videomme/videomme", d / "videomme")
        _bench_zip(d / "videos_chunked_01.zip", {"data/fFjv93ACGo8.mp4": clip(fix / "videomme/data/fFjv93ACGo8.mp4")})
        (d / "videos_chunked_02.zip").write_bytes(b"PK\x03\x04 truncated")  # would hold data/mediumClip01.mp4
        (d / "subtitle.zip").write_bytes(b"not fetched")
    if "mmmu" in hub:  # <Subject>/{dev,validation,test}-*.parquet
        d = repo("mmmu")
        for subject in ("Art", "Math"):
            shutil.copytree(fix / "mmmu" / subject, d / subject)
            shutil.copy(d / subject / "validation-00000-of-00001.parquet", d / subject / "dev-00000-of-00001.parquet")
    if "ai2d" in hub:
        shutil.copytree(fix / "ai2d/data", repo("ai2d") / "data")
    if "mmstar" in hub:
        shutil.copy(fix / "mmstar/mmstar.parquet", repo("mmstar"))
    if "chartqa" in hub:
        shutil.copytree(fix / "chartqa/data", repo("chartqa") / "data")
    shutil.rmtree(root / ".clips", ignore_errors=True)
    return root


# ------------------------------------------------------------------------------------------------------ all


SIZE_7B = dict(hidden_size=64, layers=2, heads=2, vision_hidden=32, vision_depth=2)  # head size 32: vLLM's CPU attention
SIZE_3B = dict(hidden_size=32, layers=2, heads=1, vision_hidden=32, vision_depth=2)


def warmup_texts(records: list[dict]) -> list[tuple[str, str]]:
    """(prompt, reply) pairs: the evaluation/training prompt without its clip, and a reply in the think/answer
    format whose answer is a random option (or a plausible number/word), as a weak SFT model's would be."""
    from videoktr.data.prompts import build_question

    rng = np.random.default_rng(0)
    out = []
    for r in records:
        opts = r.get("options") or []
        if opts:
            ans = str(opts[int(rng.integers(len(opts)))]).split(".")[0]
        elif r["problem_type"] in ("numerical", "regression"):
            ans = str(int(rng.integers(0, 30)))
        else:
            ans = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        prompt = ("<|im_start|>user\n<|vision_start|><|vision_end|>" + build_question(r)
                  + "<|im_end|>\n<|im_start|>assistant\n")
        out.append((prompt, f"<think>I look at the clip.</think><answer>{ans}</answer><|im_end|>"))
    return out


def build_rehearsal_mirror(out: Path, config: dict | None = None, *, seed: int = 0, warmup_steps: int = 200) -> dict:
    """Every repository `config` (default config/paper.yaml) downloads, under `out`; returns a summary."""
    import yaml

    from videoktr.data.hub import video_holmes_records, video_r1_records

    config = config or yaml.safe_load(PAPER_CONFIG.read_text())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"data": build_training_mirror(out, config["data"]["hub"], seed=seed)}
    build_benchmark_mirror(out, config["eval"]["hub"], realistic_clips=True, seed=seed)
    summary["benchmarks"] = sorted(config["eval"]["hub"])
    # the records the models are warmed up on: the training questions in our record format
    dh = config["data"]["hub"]
    rows = json.loads((out / dh["video_r1"]["repo"] / dh["video_r1"]["records"]).read_text())
    hrows = json.loads((out / dh["video_holmes"]["repo"] / dh["video_holmes"]["records"]).read_text())
    records = video_r1_records(rows)[0] + video_holmes_records(hrows, dh["video_holmes"]["video_dir"])[0]
    repos = {config["model"]["hub"]["repo"]: SIZE_7B}
    for name, sec in (config.get("sft_models") or {}).items():
        repos[sec["hub"]["repo"]] = SIZE_3B if "3b" in name.lower() or "3B" in sec["hub"]["repo"] else SIZE_7B
    for name, sec in (config.get("released") or {}).items():
        if (sec.get("hub") or {}).get("repo") and not sec.get("mirror_from"):
            repos.setdefault(sec["hub"]["repo"], SIZE_7B)
    summary["models"] = build_model_mirror(out, repos, warmup_texts(records), seed=seed, warmup_steps=warmup_steps)
    (out / "rehearsal_mirror.json").write_text(json.dumps(summary, indent=1))
    return summary
