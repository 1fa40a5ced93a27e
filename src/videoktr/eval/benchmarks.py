"""The benchmark registry: each evaluation benchmark's modality, default protocol, loader, and released files.

A loader reads the benchmark's released file(s) as published into one common record (its fields: see
videoktr.eval.loaders); the video loaders are in videoktr.eval.video_benchmarks, the image ones in
videoktr.eval.image_benchmarks, and the protocols (prompt, answer parser, scorer) in videoktr.eval.protocols.

Formats, as published (checked against the public files or the evaluation code that reads them; see the report
of each loader for what could not be confirmed):

| benchmark     | file(s) read                                         | id            | subtask            | count |
|---------------|------------------------------------------------------|---------------|--------------------|-------|
| video_holmes  | test_Video-Holmes.json ("Question ID", "Question     | Question ID   | Question Type      | 1,837 |
|               | Type", "Question", "Options" {A..F}, "Answer",       |               | (SR IMC TCI TA MHR |       |
|               | "video ID"); clips videos/<video ID>.mp4             |               |  PAR CTI)          |       |
| videommmu     | lmms-lab/VideoMMMU: <Track>/*.parquet or <Track>.json| <Track>/<id>  | track (Perception, |   900 |
|               | (id, question, options, answer, question_type);      |               | Comprehension,     |       |
|               | clips <id>.mp4 or <Discipline>/<id>.mp4              |               | Adaptation)        |       |
| mmvu          | yale-nlp/MMVU validation.json (id, video URL,        | id            | metadata.subject   |   625 |
|               | question_type, question, choices {A..E}, answer);    |               |                    | (mc)  |
|               | only question_type == "multiple-choice"; clips at    |               |                    |       |
|               | videos/<Subject>/<n>.mp4 (the URL's path)            |               |                    |       |
| tempcompass   | llyx97/TempCompass questions/multi-choice.json       | <video>/<dim>/| dim (action, speed,| 1,580 |
|               | ({video: {dim: [{question, answer}]}}) or lmms-lab   | <k>           | direction, order,  |       |
|               | multi-choice parquet (video_id, question, answer,    |               | attribute_change)  |       |
|               | dim); clips videos/<video_id>.mp4                    |               |                    |       |
| videomme      | lmms-lab/Video-MME videomme/test-*.parquet (videoID, | question_id   | duration (short,   | 2,700 |
|               | question_id, duration, question, options, answer);   |               | medium, long)      |       |
|               | clips data/<videoID>.mp4; no subtitles               |               |                    |       |
| mmmu          | MMMU/MMMU validation parquet (id, question, options  | id            | subject (from id)  |   900 |
|               | as a Python-literal string, image_1..image_7,        |               |                    |       |
|               | answer, question_type)                               |               |                    |       |
| ai2d          | lmms-lab/ai2d test parquet (question, options,       | ai2d_<row>    | all                | 3,088 |
|               | answer = option index, image)                        |               |                    |       |
| mmstar        | Lin-Chen/MMStar mmstar.parquet (index, question with | index         | category           | 1,500 |
|               | "Options: A: .., B: ..", image, answer, category)    |               |                    |       |
| chartqa       | lmms-lab/ChartQA test parquet (type, question,       | chartqa_<row> | type (human_test,  | 2,500 |
|               | answer, image)                                       |               | augmented_test)    |       |

Video-R1-eval JSON files (``eval_videommmu.json``, ``eval_mmvu.json``, ``eval_tempcompass.json``,
``eval_videomme.json`` from the Video-R1/Video-R1-eval dataset) are accepted in place of the published files of
the same benchmark: they are Video-R1 records already; their ``path`` ("./Evaluation/VideoMMMU/<id>.mp4") is taken
relative to the media folder.  Their subtask field could NOT be confirmed (VideoMMMU's ``data_source`` there is a
YouTube URL): a ``subtask`` key is used if present, else "all".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from videoktr.eval.image_benchmarks import load_ai2d, load_chartqa, load_mmmu, load_mmstar, load_tiny_image
from videoktr.eval.loaders import BadRecord, Loaded
from videoktr.eval.video_benchmarks import (
    load_mmvu,
    load_tempcompass,
    load_tiny,
    load_video_holmes,
    load_videommmu,
    load_videomme,
)

__all__ = [
    "Benchmark",
    "BENCHMARKS",
    "get_benchmark",
    "load_benchmark",
    "eval_paths",
    "hub_dir",
    "hub_files_dir",
]


@dataclass(frozen=True)
class Benchmark:
    name: str
    modality: str  # "video" or "image"
    protocol: str  # default protocol (PROTOCOLS key)
    loader: Callable[[Path, Path], Loaded]
    subtask: str  # what the subtask breakdown is
    records: str | None = None  # default records path under config eval.data_dir (file or folder)
    media: str | None = None  # default media folder under eval.data_dir (None: images embedded in records)
    published: int | None = None  # questions in the published split
    tiny_split: str | None = None  # the tiny world's split (records from results/<run>/data/clean/<split>.json)
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("tiny_appearance", "video", "tiny", load_tiny, "data_source", tiny_split="eval_appearance",
                  source="videoktr.data.world"),
        Benchmark("tiny_temporal", "video", "tiny", load_tiny, "data_source", tiny_split="eval_temporal",
                  source="videoktr.data.world"),
        Benchmark("tiny_counting", "video", "tiny", load_tiny, "data_source", tiny_split="eval_counting",
                  source="videoktr.data.world"),
        # the appearance split again, one frame per question as an image (Table 3 in the tiny world)
        Benchmark("tiny_image", "image", "tiny", load_tiny_image, "data_source", tiny_split="eval_appearance",
                  source="videoktr.data.world (middle frame of each appearance clip)"),
        Benchmark("video_holmes", "video", "video_holmes", load_video_holmes, "Question Type",
                  "Video-Holmes/test_Video-Holmes.json", "Video-Holmes/videos", 1837,
                  source="TencentARC/Video-Holmes (GitHub evaluate.py; HF dataset)"),
        Benchmark("videommmu", "video", "video_r1", load_videommmu, "track", "VideoMMMU", "VideoMMMU/videos", 900,
                  source="lmms-lab/VideoMMMU"),
        Benchmark("mmvu", "video", "video_r1", load_mmvu, "metadata.subject", "MMVU/validation.json", "MMVU", 625,
                  source="yale-nlp/MMVU data/validation.json"),
        Benchmark("tempcompass", "video", "video_r1", load_tempcompass, "dim",
                  "TempCompass/questions/multi-choice.json", "TempCompass/videos", 1580,
                  source="llyx97/TempCompass questions/multi-choice.json; lmms-lab/TempCompass multi-choice"),
        Benchmark("videomme", "video", "video_r1", load_videomme, "duration", "Video-MME/videomme",
                  "Video-MME/data", 2700, source="lmms-lab/Video-MME"),
        Benchmark("mmmu", "image", "video_r1", load_mmmu, "subject", "MMMU", None, 900, source="MMMU/MMMU"),
        Benchmark("ai2d", "image", "video_r1", load_ai2d, "none", "ai2d/data", None, 3088, source="lmms-lab/ai2d"),
        Benchmark("mmstar", "image", "video_r1", load_mmstar, "category", "MMStar/mmstar.parquet", None, 1500,
                  source="Lin-Chen/MMStar"),
        Benchmark("chartqa", "image", "video_r1_relaxed", load_chartqa, "type", "ChartQA/data", None, 2500,
                  source="lmms-lab/ChartQA"),
    ]
}


def eval_paths(name: str, eval_cfg: dict, *, out: str, world: str) -> tuple[str, str]:
    """(records file or folder, media folder) of a benchmark for the workflow; record paths are relative to the
    media folder.  Tiny splits: <out>/data/clean/<split>.json and the world folder.  A benchmark of config
    `eval.hub`: its download under <out>/data/benchmarks/<name>/files/ (`records` and `media_dir` of its entry).
    The others: the released files under config `eval.data_dir` in their published layout (Benchmark.records /
    .media), each overridable with `eval.files.<name>.records` / `.media` (relative to eval.data_dir, or absolute)."""
    import os

    b = get_benchmark(name)
    if b.tiny_split:
        return f"{out}/data/clean/{b.tiny_split}.json", world
    hub = (eval_cfg.get("hub") or {}).get(name)
    if hub:  # downloaded by the DAG into <out>/data/benchmarks/<name>/files/ in its published layout
        files = hub_files_dir(name, out)
        records = os.path.normpath(os.path.join(files, hub["records"]))
        media = os.path.normpath(os.path.join(files, hub.get("media_dir") or "."))
        return records, media if b.media else os.path.normpath(files)  # image benchmarks embed their images
    root = eval_cfg.get("data_dir", "data/benchmarks")
    given = (eval_cfg.get("files") or {}).get(name) or {}
    records = os.path.join(root, given.get("records", b.records))
    if given.get("media"):
        media = os.path.join(root, given["media"])
    else:
        media = os.path.join(root, b.media) if b.media else os.path.dirname(records)
    return records, media


def hub_dir(name: str, out: str) -> str:
    """Where rules bench_records / bench_media put a benchmark of config eval.hub: manifests here, files in files/
    (outside the rule outputs, so an interrupted download resumes)."""
    return f"{out}/data/benchmarks/{name}"


def hub_files_dir(name: str, out: str) -> str:
    return f"{hub_dir(name, out)}/files"


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def load_benchmark(name: str, records_path: Path, media_root: Path) -> Loaded:
    """Read a benchmark's released file(s); malformed records come back as problems (id, reason), never raise.

    A file that cannot be read at all raises videoktr.data.records.BadDataError (the whole benchmark is unusable).
    """
    from videoktr.data.records import BadDataError

    bench = get_benchmark(name)
    try:
        return bench.loader(Path(records_path), Path(media_root))
    except (OSError, json.JSONDecodeError, BadRecord, ImportError) as e:
        raise BadDataError(f"{name}: cannot read {records_path} ({e})") from None
    except Exception as e:  # pyarrow errors and the like: still one line naming the file
        raise BadDataError(f"{name}: cannot read {records_path} ({type(e).__name__}: {e})") from None
