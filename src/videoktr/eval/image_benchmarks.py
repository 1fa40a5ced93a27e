"""The image benchmarks' loaders (MMMU, AI2D, MMStar, ChartQA, and the tiny world's one-frame image split) and
reading a record's image(s) for the model (:func:`load_images`, :class:`MediaError`).

Each loader reads the benchmark's released parquet file(s) as published into the common record (see
videoktr.eval.loaders), the images embedded as bytes; docs/benchmarks.md lists the files and fields.
"""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import numpy as np

from videoktr.data.records import UnsafePath, media_path
from videoktr.eval.answers import parse_number
from videoktr.eval.loaders import (
    LETTERS,
    BadRecord,
    Loaded,
    convert_rows,
    lettered,
    mc_record,
    open_record,
    read_rows,
    row_get,
)
from videoktr.eval.video_benchmarks import load_tiny

__all__ = [
    "load_mmmu",
    "load_ai2d",
    "load_mmstar",
    "load_chartqa",
    "load_tiny_image",
    "MediaError",
    "load_images",
]

def _image_cell(cell):
    """A parquet image cell ({"bytes", "path"}) -> bytes, or a path string."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path"):
            return cell["path"]
        raise BadRecord("image cell holds neither bytes nor a path")
    if isinstance(cell, (bytes, str)) and cell:
        return cell
    raise BadRecord(f"no image (got {type(cell).__name__})")


def load_mmmu(records_path: Path, media_root: Path) -> Loaded:
    """MMMU/MMMU validation parquet (per subject, or lmms-lab/MMMU merged): 900 questions, images embedded.

    Every image_k of a question is given, in order (Qwen2.5-VL takes several images); the question keeps its
    "<image k>" placeholders.  Open questions: numerical or free-form (see open_record).
    """
    rows = read_rows(records_path, "validation-*.parquet")

    def convert(row, i):
        rid = row_get(row, "id")
        images = [_image_cell(row[f"image_{k}"]) for k in range(1, 8) if row.get(f"image_{k}") is not None]
        if not images:
            raise BadRecord("no image")
        subject = "_".join(str(rid).split("_")[1:-1]) or "all"
        common = dict(path=f"{rid}.png", subtask=subject, data_source="MMMU", data_type="image", images=images)
        if row.get("question_type") == "open":
            return open_record(rid, row["question"], row["answer"], **common)
        options = row["options"]
        if isinstance(options, str):
            options = ast.literal_eval(options)
        return mc_record(rid, row["question"], lettered(list(options)), row["answer"], **common)

    return convert_rows(rows, convert, "MMMU", lambda r, i: r.get("id", f"#{i}"),
                        lambda r: "_".join(str(r["id"]).split("_")[1:-1]) or "unknown")


def load_ai2d(records_path: Path, media_root: Path) -> Loaded:
    """lmms-lab/ai2d test parquet (3,088): the answer is the index of the right option."""
    rows = read_rows(records_path, "test-*.parquet")

    def convert(row, i):
        options = list(row_get(row, "options"))
        idx = int(str(row["answer"]).strip())
        if not 0 <= idx < len(options):
            raise BadRecord(f"answer index {idx} outside the {len(options)} options")
        return mc_record(f"ai2d_{i}", row["question"], lettered(options), LETTERS[idx], path=f"ai2d_{i}.png",
                         subtask="all", data_source="AI2D", data_type="image", images=[_image_cell(row["image"])])

    return convert_rows(rows, convert, "AI2D", lambda r, i: f"ai2d_{i}", lambda r: "all")


def _mmstar_split(question: str) -> tuple[str, list[tuple[str, str]]]:
    """MMStar: "stem\\nOptions: A: x, B: y, C: z" -> ("stem", [("A", "x"), ...])."""
    at = question.rfind("Options:")
    if at < 0:
        raise BadRecord("no 'Options:' in the question")
    stem, tail = question[:at].rstrip(), question[at + len("Options:"):].strip()
    parts = re.split(r"(?:^|,\s*)([A-Z]):\s*", tail)
    if len(parts) < 3 or parts[0].strip():
        raise BadRecord(f"options {tail!r} are not 'A: x, B: y, ...'")
    return stem, [(parts[k], parts[k + 1].strip()) for k in range(1, len(parts) - 1, 2)]


def load_mmstar(records_path: Path, media_root: Path) -> Loaded:
    """Lin-Chen/MMStar mmstar.parquet (1,500; six categories)."""
    rows = read_rows(records_path, "*.parquet")

    def convert(row, i):
        stem, options = _mmstar_split(row_get(row, "question"))
        return mc_record(row["index"], stem, options, row["answer"], path=f"mmstar_{row['index']}.png",
                         subtask=row["category"], data_source="MMStar", data_type="image",
                         images=[_image_cell(row["image"])])

    return convert_rows(rows, convert, "MMStar", lambda r, i: r.get("index", f"#{i}"),
                        lambda r: r["category"])


def load_chartqa(records_path: Path, media_root: Path) -> Loaded:
    """lmms-lab/ChartQA test parquet (2,500 = human_test + augmented_test); relaxed accuracy."""
    rows = read_rows(records_path, "test-*.parquet")

    def convert(row, i):
        answer = str(row_get(row, "answer")).strip()
        if not answer:
            raise BadRecord("empty answer")
        question = row["question"]
        if not isinstance(question, str) or not question.strip():
            raise BadRecord("empty or missing question")
        return {"problem_id": f"chartqa_{i}", "problem": question, "data_type": "image",
                "problem_type": "numerical" if parse_number(answer) is not None else "free-form", "options": [],
                "solution": f"<answer>{answer}</answer>", "path": f"chartqa_{i}.png", "data_source": "ChartQA",
                "subtask": str(row["type"]), "images": [_image_cell(row["image"])]}

    return convert_rows(rows, convert, "ChartQA", lambda r, i: f"chartqa_{i}", lambda r: r["type"])


def load_tiny_image(records_path: Path, media_root: Path) -> Loaded:
    """The tiny world's appearance questions asked about ONE image: the middle frame of each clip (the shape of an
    appearance clip is static and visible throughout), embedded as PNG bytes; the tiny world's image benchmark
    (Table 3).  A clip that cannot be read makes its question a problem (id, reason), as any malformed record."""
    from PIL import Image

    from videoktr.data.video import VideoError, read_frames

    loaded = load_tiny(records_path, media_root)
    records, problems = [], list(loaded.problems)
    for r in loaded.records:
        try:  # every frame at the clip's own rate (far above it here), then the middle one
            frames = read_frames(media_path(media_root, r["path"]), fps=1000.0, max_frames=10_000)
        except (VideoError, UnsafePath) as e:
            problems.append({"id": r["problem_id"], "reason": f"clip {e}"})
            continue
        buf = io.BytesIO()
        Image.fromarray(frames[len(frames) // 2]).save(buf, format="PNG")
        # the question text stays as trained ("... in the video?"): only the input changes, clip -> one image
        records.append(dict(r, data_type="image", images=[buf.getvalue()]))
    return Loaded(records, problems, loaded.excluded)


# ------------------------------------------------------------------------------------------------------ media


class MediaError(Exception):
    """An image that cannot be read; the message names it."""


def load_images(record: dict, data_dir: Path) -> list[np.ndarray]:
    """The record's image(s) as uint8 RGB [H, W, 3] arrays (bytes decoded, paths relative to data_dir; one that
    leaves data_dir is a MediaError)."""
    from PIL import Image

    items = record.get("images") or [record["path"]]
    out = []
    for k, item in enumerate(items):
        if not isinstance(item, (bytes, bytearray)):
            try:
                item = media_path(data_dir, item)
            except UnsafePath as e:
                raise MediaError(f"image {k + 1}: {e}") from None
        try:
            if isinstance(item, (bytes, bytearray)):
                img = Image.open(io.BytesIO(item))
            else:
                img = Image.open(item)
            out.append(np.array(img.convert("RGB")))
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds; the contract is one MediaError
            where = f"image {k + 1}" if isinstance(item, (bytes, bytearray)) else str(item)
            raise MediaError(f"{where}: cannot read ({type(e).__name__}: {e})") from None
    return out
