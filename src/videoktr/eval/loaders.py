"""What every benchmark loader shares: the common record, reading the released files, and building records.

Common record (the Video-R1 shape used everywhere in this package)::

    problem_id   str, unique within the benchmark
    problem      the question text (for multiple choice without the options)
    data_type    "video" or "image"
    problem_type "multiple choice", "numerical", "OCR", "free-form" or "regression"
    options      ["A. text", "B. text", ...] (multiple choice), else []
    solution     "<answer>X</answer>"
    path         the clip, relative to the benchmark's media folder and inside it (images: a label, see `images`)
    data_source  where the record came from (benchmark / file)
    subtask      the benchmark's breakdown field (see videoktr.eval.benchmarks)
    images       image benchmarks only: the image(s) as bytes (as the parquet files embed them) or paths
    choices      Video-Holmes only: {"A": text, ...} as published (its own prompt lists them as "A: text, ...")

A loader turns each published row into one record with :func:`mc_record` or :func:`open_record` inside
:func:`convert_rows`, which collects malformed rows (:class:`BadRecord`) as problems instead of raising.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from videoktr.data.records import check_media_path
from videoktr.eval.answers import parse_number

__all__ = [
    "LETTERS",
    "BadRecord",
    "Loaded",
    "read_any",
    "read_rows",
    "is_video_r1",
    "rel",
    "opened_paths",
    "row_get",
    "mc_record",
    "open_record",
    "lettered",
    "convert_rows",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class BadRecord(ValueError):
    """A record that does not have its benchmark's published shape; the message is the reason."""


class Loaded(NamedTuple):
    records: list[dict]
    problems: list[dict]  # {"id": ..., "reason": ...} for each malformed record, in file order
    excluded: int  # records left out by the benchmark's definition (e.g. MMVU's open-ended questions)


# ------------------------------------------------------------------------------------------------ file reading


def read_any(path: Path):
    """A JSON, JSONL or parquet file as Python objects (parquet and JSONL: a list of row dicts)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def read_rows(path: Path, pattern: str = "*.parquet") -> list:
    """Rows of a file, or of every matching file under a folder (sorted, recursive)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob(pattern))
        if not files:
            raise FileNotFoundError(f"{path}: no {pattern} file in this folder")
        rows = []
        for f in files:
            rows.extend(read_any(f))
        if not rows:
            raise BadRecord(f"{path}: the benchmark is empty (no records in its {pattern} files)")
        return rows
    data = read_any(path)
    if not isinstance(data, list):
        raise BadRecord(f"{path}: expected a list of records, got {type(data).__name__}")
    if not data:
        raise BadRecord(f"{path}: the benchmark is empty (no records)")
    return data


def is_video_r1(rows) -> bool:
    """Whether the rows are Video-R1 records already (a Video-R1-eval file)."""
    return (isinstance(rows, list) and bool(rows) and isinstance(rows[0], dict)
            and "problem_id" in rows[0] and "solution" in rows[0])


def rel(path: str) -> str:
    """Video-R1-eval paths start with "./" (eval_bench.py joins path[1:] onto its Evaluation folder).

    Only that "./" goes: an absolute path, or one that climbs out with "..", stays as written and makes its record a
    problem in :func:`convert_rows` (videoktr.data.records.check_media_path)."""
    return path[2:] if path.startswith("./") else path


def opened_paths(record: dict) -> list:
    """The paths of the record's media that are read from its media folder: the clip, or the images given as paths
    (an image benchmark's `path` is only a label when its images are embedded)."""
    if record.get("data_type") == "image":
        return [i for i in record.get("images") or [record["path"]] if not isinstance(i, (bytes, bytearray))]
    return [record["path"]]


def row_get(row, key):
    """row[key], or BadRecord when the row is not a JSON object."""
    if not isinstance(row, dict):
        raise BadRecord(f"not a JSON object but {type(row).__name__}")
    return row[key]


# ---------------------------------------------------------------------------------------------- record building


def mc_record(pid, question, options: list[tuple[str, str]], answer: str, *, path: str, subtask: str,
              data_source: str, data_type: str = "video", **extra) -> dict:
    """A multiple-choice record; BadRecord unless the question, the options (A, B, C, ... in order, none empty)
    and the answer (one of their letters) are well formed."""
    if not isinstance(question, str) or not question.strip():
        raise BadRecord("empty or missing question")
    if not options:
        raise BadRecord("no options")
    letters = [k for k, _ in options]
    if letters != list(LETTERS[:len(letters)]):
        raise BadRecord(f"option letters {''.join(letters)!r} are not A, B, C, ... in order")
    for k, text in options:
        if not isinstance(text, str) or not text.strip():
            raise BadRecord(f"option {k} is empty")
    answer = str(answer).strip() if answer is not None else ""
    if answer not in letters:
        raise BadRecord(f"answer {answer!r} is not one of the option letters {''.join(letters)}")
    return {
        "problem_id": str(pid),
        "problem": question,
        "data_type": data_type,
        "problem_type": "multiple choice",
        "options": [f"{k}. {text}" for k, text in options],
        "solution": f"<answer>{answer}</answer>",
        "path": path,
        "data_source": data_source,
        "subtask": str(subtask),
        **extra,
    }


def open_record(pid, question, answer, *, path, subtask, data_source, data_type="video", **extra) -> dict:
    """An open question: numerical if the answer is a number, else free-form (scored 0 by Video-R1's eval)."""
    if not isinstance(question, str) or not question.strip():
        raise BadRecord("empty or missing question")
    answer = str(answer).strip()
    if not answer:
        raise BadRecord("empty answer")
    return {"problem_id": str(pid), "problem": question, "data_type": data_type,
            "problem_type": "numerical" if parse_number(answer) is not None else "free-form", "options": [],
            "solution": f"<answer>{answer}</answer>", "path": path, "data_source": data_source,
            "subtask": str(subtask), **extra}


def lettered(options: list) -> list[tuple[str, str]]:
    """["A. x", "B. y"] or ["x", "y"] -> [("A", "x"), ("B", "y")] (as lmms-eval's parse_options)."""
    if not isinstance(options, (list, tuple)):
        raise BadRecord(f"options must be a list, got {type(options).__name__}")
    if len(options) > len(LETTERS):
        raise BadRecord(f"{len(options)} options, more than there are letters")
    options = [str(o) for o in options]
    if all(o.startswith(f"{LETTERS[i]}.") for i, o in enumerate(options)):
        return [(LETTERS[i], o[2:].strip()) for i, o in enumerate(options)]
    return [(LETTERS[i], o) for i, o in enumerate(options)]


def convert_rows(rows, convert: Callable, name: str, id_of: Callable, sub_of: Callable | None = None) -> Loaded:
    """Apply convert(row, index) to each row; a malformed row becomes a problem with its id (and its subtask when
    that can be read); duplicate ids too, and a record whose media path leaves the media folder (absolute, or
    climbing out with ".."; see videoktr.data.records.check_media_path).  convert returns None for a row the
    benchmark leaves out."""
    records, problems, excluded, seen = [], [], 0, set()
    for i, row in enumerate(rows):
        try:
            rid = id_of(row, i)
        except Exception:  # noqa: BLE001 - an id that cannot even be read
            rid = f"#{i}"
        try:
            rec = convert(row, i)
            for path in opened_paths(rec) if rec is not None else ():
                check_media_path(path)  # the one rule of prepare and of every place media is opened
        except (BadRecord, KeyError, TypeError, ValueError, AttributeError, SyntaxError) as e:
            reason = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            try:
                sub = str(sub_of(row)) if sub_of else "unknown"
            except Exception:  # noqa: BLE001
                sub = "unknown"
            problems.append({"id": str(rid), "subtask": sub, "reason": f"malformed {name} record: {reason}"})
            continue
        if rec is None:
            excluded += 1
            continue
        if rec["problem_id"] in seen:
            problems.append({"id": rec["problem_id"], "subtask": rec["subtask"],
                             "reason": "duplicate id (the first record is kept)"})
            continue
        seen.add(rec["problem_id"])
        records.append(rec)
    return Loaded(records, problems, excluded)
