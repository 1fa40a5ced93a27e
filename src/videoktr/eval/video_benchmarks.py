"""The video benchmarks' loaders: Video-R1-format records (the tiny world's splits, Video-R1-eval files),
Video-Holmes, VideoMMMU, MMVU (multiple choice), TempCompass (multi-choice) and Video-MME.

Each reads the benchmark's released file(s) as published into the common record (see videoktr.eval.loaders);
the files each reads and what could not be confirmed are listed in videoktr.eval.benchmarks and
docs/benchmarks.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from videoktr.data.prompts import source_of
from videoktr.eval.loaders import (
    BadRecord,
    Loaded,
    convert_rows,
    is_video_r1,
    lettered,
    mc_record,
    open_record,
    read_any,
    read_rows,
    rel,
    row_get,
)

__all__ = [
    "load_video_r1",
    "load_tiny",
    "load_video_holmes",
    "load_videommmu",
    "load_mmvu",
    "load_tempcompass",
    "load_videomme",
]

VIDEO_R1_REQUIRED = ("problem_id", "problem", "data_type", "problem_type", "options", "solution", "path")


def load_video_r1(records_path: Path, media_root: Path, *, name: str = "video-r1",
                  subtask: Callable[[dict], str] | None = None) -> Loaded:
    """Records already in Video-R1's format (the tiny world's splits, Video-R1-eval JSON files)."""
    rows = read_rows(records_path, "*.json")

    def convert(row, i):
        if not isinstance(row, dict):
            raise BadRecord(f"not a JSON object but {type(row).__name__}")
        missing = [k for k in VIDEO_R1_REQUIRED if k not in row]
        if missing:
            raise BadRecord(f"missing field(s) {', '.join(missing)}")
        rec = dict(row, problem_id=str(row["problem_id"]), path=rel(str(row["path"])))
        rec["subtask"] = str(subtask(rec) if subtask else row.get("subtask", "all"))
        rec.setdefault("data_source", name)
        return rec

    return convert_rows(rows, convert, name, lambda r, i: r.get("problem_id", f"#{i}"),
                        lambda r: subtask(r) if subtask else r.get("subtask", "all"))


def load_tiny(records_path: Path, media_root: Path) -> Loaded:
    """The tiny world's eval_*.json: Video-R1 records, subtask = last part of data_source (as before)."""
    return load_video_r1(records_path, media_root, name="tiny", subtask=source_of)


def load_video_holmes(records_path: Path, media_root: Path) -> Loaded:
    """TencentARC/Video-Holmes Benchmark/test_Video-Holmes.json; clips Benchmark/videos/<video ID>.mp4."""
    rows = read_rows(records_path, "test_Video-Holmes.json")

    def convert(row, i):
        opts = row_get(row, "Options")
        if not isinstance(opts, dict):
            raise BadRecord(f"'Options' must be an object {{letter: text}}, got {type(opts).__name__}")
        options = [(str(k), v) for k, v in opts.items()]
        qtype = row["Question Type"]
        return mc_record(row["Question ID"], row["Question"], options, row["Answer"],
                         path=f"{row['video ID']}.mp4", subtask=qtype, data_source="Video-Holmes",
                         choices={str(k): v for k, v in opts.items()})

    return convert_rows(rows, convert, "Video-Holmes", lambda r, i: r.get("Question ID", f"#{i}"),
                        lambda r: r["Question Type"])


VIDEOMMMU_TRACKS = ("Perception", "Comprehension", "Adaptation")
# lmms-eval tasks/videommmu/utils.py: the released video zip is split by discipline.
VIDEOMMMU_DISCIPLINE = {
    **dict.fromkeys(["Art", "Art_Theory", "Design", "Music"], "Art"),
    **dict.fromkeys(["Biology", "Chemistry", "Geography", "Math", "Physics"], "Science"),
    **dict.fromkeys(["History", "Literature", "Sociology", "Psychology"], "Humanities"),
    **dict.fromkeys(["Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                     "Energy_and_Power", "Materials", "Mechanical_Engineering"], "Engineering"),
    **dict.fromkeys(["Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                     "Pharmacy", "Public_Health"], "Medicine"),
    **dict.fromkeys(["Accounting", "Economics", "Finance", "Manage", "Marketing"], "Business"),
}


def _videommmu_clip(media_root: Path, vid: str) -> str:
    flat = f"{vid}.mp4"
    subject = "_".join(vid.split("_")[1:-1])
    nested = f"{VIDEOMMMU_DISCIPLINE.get(subject, subject)}/{vid}.mp4"
    return nested if (Path(media_root) / nested).exists() and not (Path(media_root) / flat).exists() else flat


def load_videommmu(records_path: Path, media_root: Path) -> Loaded:
    """lmms-lab/VideoMMMU: one folder (parquet) or JSON file per track; or a Video-R1-eval JSON file.

    question_type "multiple-choice" / "perception" with options -> multiple choice; "open" -> numerical or
    free-form (see open_record).  NOT confirmed: how the Adaptation track's question image is shown (it is not
    used here; the question text keeps its "<image 1>" placeholder).
    """
    records_path = Path(records_path)
    if records_path.is_file():
        rows = read_any(records_path)
        if is_video_r1(rows):
            return load_video_r1(records_path, media_root, name="VideoMMMU")
        raise BadRecord(f"{records_path}: not a Video-R1-eval file; give the folder with one entry per track")
    tracks = []
    for track in VIDEOMMMU_TRACKS:
        cands = [records_path / track, records_path / f"{track}.json", records_path / f"{track}.parquet"]
        found = next((c for c in cands if c.exists()), None)
        if found is None:
            raise FileNotFoundError(f"{records_path}: no {track} track (looked for {', '.join(c.name for c in cands)})")
        tracks.extend((track, row) for row in read_rows(found))

    def convert(item, i):
        track, row = item
        vid = row_get(row, "id")
        qtype = row.get("question_type", "multiple-choice")
        options = row.get("options") or []
        common = dict(path=_videommmu_clip(media_root, vid), subtask=track, data_source=f"VideoMMMU/{track}")
        if qtype == "open" or not len(options):
            return open_record(f"{track}/{vid}", row["question"], row["answer"], **common)
        return mc_record(f"{track}/{vid}", row["question"], lettered(list(options)), row["answer"], **common)

    return convert_rows(tracks, convert, "VideoMMMU",
                        lambda t, i: f"{t[0]}/{t[1].get('id', f'#{i}')}" if isinstance(t[1], dict) else f"#{i}",
                        lambda t: t[0])


def load_mmvu(records_path: Path, media_root: Path) -> Loaded:
    """yale-nlp/MMVU validation.json, multiple-choice questions only ("MMVU (mc)", 625 of 1,000)."""
    rows = read_rows(records_path, "validation.json")
    if is_video_r1(rows):
        return load_video_r1(records_path, media_root, name="MMVU")

    def convert(row, i):
        if row_get(row, "question_type") != "multiple-choice":
            return None
        choices = row["choices"]
        if not isinstance(choices, dict):
            raise BadRecord("'choices' must be an object {letter: text}")
        url = str(row["video"])
        path = url.split("/resolve/main/", 1)[1] if "/resolve/main/" in url else url
        return mc_record(row["id"], row["question"], [(str(k), v) for k, v in choices.items()], row["answer"],
                         path=path, subtask=row["metadata"]["subject"], data_source="MMVU")

    return convert_rows(rows, convert, "MMVU", lambda r, i: r.get("id", f"#{i}"),
                        lambda r: r["metadata"]["subject"])


def _split_question_options(question: str) -> tuple[str, list[tuple[str, str]]]:
    """"stem\\nA. x\\nB. y" -> ("stem", [("A", "x"), ("B", "y")]) (TempCompass multi-choice)."""
    lines = question.split("\n")
    first = next((i for i, line in enumerate(lines) if re.match(r"A\.\s", line)), None)
    if first is None:
        raise BadRecord("no options 'A. ...' in the question")
    options = []
    for line in lines[first:]:
        m = re.match(r"([A-Z])\.\s(.*)\Z", line)
        if not m:
            raise BadRecord(f"option line {line!r} is not 'X. text'")
        options.append((m.group(1), m.group(2)))
    return "\n".join(lines[:first]), options


def load_tempcompass(records_path: Path, media_root: Path) -> Loaded:
    """TempCompass multi-choice: the official questions/multi-choice.json or lmms-lab's flattened rows."""
    records_path = Path(records_path)
    data = read_any(records_path) if records_path.is_file() else read_rows(records_path)
    if is_video_r1(data):
        return load_video_r1(records_path, media_root, name="TempCompass")
    if isinstance(data, dict):  # official: {video_id: {dim: [{question, answer}, ...]}}
        rows = [{"video_id": vid, "dim": dim, "question": q.get("question"), "answer": q.get("answer")}
                for vid, dims in data.items() for dim, qs in dims.items() for q in qs]
    else:
        rows = data
    counter: dict = {}
    ids = []
    for row in rows:
        key = (row.get("video_id"), row.get("dim")) if isinstance(row, dict) else None
        counter[key] = counter.get(key, -1) + 1
        ids.append(f"{key[0]}/{key[1]}/{counter[key]}" if key else None)

    def convert(row, i):
        stem, options = _split_question_options(row_get(row, "question"))
        answer = str(row["answer"])
        m = re.match(r"([A-Z])\.", answer)
        if not m:
            raise BadRecord(f"answer {answer!r} is not 'X. text'")
        return mc_record(ids[i], stem, options, m.group(1), path=f"{row['video_id']}.mp4", subtask=row["dim"],
                         data_source="TempCompass")

    return convert_rows(rows, convert, "TempCompass", lambda r, i: ids[i] or f"#{i}", lambda r: r["dim"])


def load_videomme(records_path: Path, media_root: Path) -> Loaded:
    """lmms-lab/Video-MME videomme/test-*.parquet (2,700 questions); clips data/<videoID>.mp4; no subtitles."""
    records_path = Path(records_path)
    rows = read_any(records_path) if records_path.is_file() else read_rows(records_path)
    if is_video_r1(rows):
        return load_video_r1(records_path, media_root, name="VideoMME",
                             subtask=lambda r: r.get("subtask") or r.get("duration") or "all")

    def convert(row, i):
        vid = row_get(row, "videoID")
        path = f"{vid}.mp4"
        for ext in (".mp4", ".MP4", ".mkv", ".webm"):
            if (Path(media_root) / f"{vid}{ext}").exists():
                path = f"{vid}{ext}"
                break
        return mc_record(row["question_id"], row["question"], lettered(list(row["options"])), row["answer"],
                         path=path, subtask=row["duration"], data_source="Video-MME")

    return convert_rows(rows, convert, "Video-MME", lambda r, i: r.get("question_id", f"#{i}"),
                        lambda r: r["duration"])
