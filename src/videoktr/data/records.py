"""Checking Video-R1 records one by one: a bad record or clip is reported with its id and reason, never fatal alone.

The step fails, with every reason listed, only when more than `max_bad_fraction` of the records are bad.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from videoktr.data.prompts import build_question
from videoktr.eval.answers import parse_solution
from videoktr.data.video import VideoError, read_frames

log = logging.getLogger(__name__)

REQUIRED = ("problem_id", "problem", "data_type", "problem_type", "options", "solution", "path", "data_source")


class BadDataError(RuntimeError):
    pass


def check_record(record, data_dir: Path, video_cfg: dict) -> str | None:
    """None if the record is usable, else the reason (the caller adds the id)."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    if record["data_type"] != "video":
        return f"data_type {record['data_type']!r} is not 'video'"
    try:
        build_question(record)
        parse_solution(record["solution"])
    except (ValueError, TypeError) as e:
        return str(e)
    try:
        read_frames(Path(data_dir) / record["path"], fps=video_cfg["fps"], max_frames=video_cfg["train_frames"],
                    backend=video_cfg["backend"])
    except VideoError as e:
        return f"video {e}"
    return None


def record_id(record, index: int) -> str:
    return str(record.get("problem_id", f"#{index}")) if isinstance(record, dict) else f"#{index}"


def clean_records(records: list, data_dir: Path, video_cfg: dict, max_bad_fraction: float, source: str):
    """Split into (good records, skipped entries); raise BadDataError past the allowed fraction."""
    good, skipped = [], []
    for i, record in enumerate(tqdm(records, desc=f"checking {source}", mininterval=5)):
        reason = check_record(record, data_dir, video_cfg)
        if reason is None:
            good.append(record)
        else:
            entry = {"id": record_id(record, i), "reason": reason}
            log.warning("skipped record %s of %s: %s", entry["id"], source, reason)
            skipped.append(entry)
    return good, skipped


def load_json_records(path: Path) -> list:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BadDataError(f"{path}: cannot read the records ({e})") from None
    if not isinstance(data, list):
        raise BadDataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def prepare(records_path: Path, data_dir: Path, out: Path, skipped_out: Path, *, video_cfg: dict,
            max_bad_fraction: float) -> dict:
    records = load_json_records(records_path)
    good, skipped = clean_records(records, data_dir, video_cfg, max_bad_fraction, str(records_path))
    Path(skipped_out).write_text(json.dumps(skipped, indent=1) + "\n")
    bad = len(skipped) / max(1, len(records))
    if bad > max_bad_fraction or not good:
        reasons = "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:10])
        raise BadDataError(f"{records_path}: {len(skipped)} of {len(records)} records are bad ({bad:.0%} > "
                           f"max_bad_fraction {max_bad_fraction:.0%}): {reasons}")
    Path(out).write_text(json.dumps(good, indent=1) + "\n")
    return {"records": len(records), "kept": len(good), "skipped": len(skipped)}
