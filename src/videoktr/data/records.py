"""Checking Video-R1 records one by one: a bad record or clip is reported with its id and reason, never fatal alone.

The step fails, with every reason listed, only when more than `max_bad_fraction` of the records are bad.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from videoktr.data.video import VideoError, read_frames
from videoktr.eval.protocols import PROTOCOLS, check

log = logging.getLogger(__name__)

REQUIRED = ("problem_id", "problem", "data_type", "problem_type", "options", "solution", "path", "data_source")


class BadDataError(RuntimeError):
    pass


class UnsafePath(ValueError):
    """A record's media path that does not stay inside its media folder; the message is the reason."""


def check_media_path(path) -> str:
    """The record's media `path`, normalised, if it stays inside the media folder; else UnsafePath (the reason).

    One rule for every place a record's clip or image is opened (`prepare`, each benchmark loader,
    videoktr.data.model_inputs.load_frames, videoktr.eval.image_benchmarks.load_images): a relative path, resolved
    lexically (`a/../b` is `b`); absolute, or climbing out with `..`, it is refused. Symlinks are not resolved: what is
    confined is the record's text, and a media folder may link its clips in from shared storage or a mirror.
    """
    if not isinstance(path, str) or not path.strip():
        raise UnsafePath(f"path {path!r} names no file")
    if "\x00" in path:
        raise UnsafePath(f"path {path!r} contains a NUL character")
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive:
        raise UnsafePath(f"path {path!r} is absolute; a record's path is relative to its media folder")
    norm = os.path.normpath(path)
    if norm == ".." or norm.startswith("../"):
        raise UnsafePath(f"path {path!r} leaves the media folder")
    if norm == ".":
        raise UnsafePath(f"path {path!r} names the media folder itself, not a file in it")
    return norm


def media_path(root: Path, path) -> Path:
    """root / path, for a record's `path` that passes :func:`check_media_path` (else UnsafePath)."""
    return Path(root) / check_media_path(path)


# The evaluation's rule for a record it can prompt and score (videoktr.eval.protocols.check), under the protocol of
# the training prompt and reward: a record prepare keeps is one the evaluation would accept.
TRAIN_PROTOCOL = PROTOCOLS["tiny"]


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
        path = media_path(data_dir, record["path"])
        check(record, TRAIN_PROTOCOL)
    except (ValueError, TypeError) as e:
        return str(e)
    try:
        read_frames(path, fps=video_cfg["fps"], max_frames=video_cfg["train_frames"], backend=video_cfg["backend"])
    except VideoError as e:
        return f"video {e}"
    return None


def record_id(record, index: int) -> str:
    return str(record.get("problem_id", f"#{index}")) if isinstance(record, dict) else f"#{index}"


def clean_records(records: list, data_dir: Path, video_cfg: dict, max_bad_fraction: float, source: str):
    """Split into (good records, skipped entries); raise BadDataError past the allowed fraction."""
    good, skipped, kept_ids = [], [], set()
    for i, record in enumerate(tqdm(records, desc=f"checking {source}", mininterval=5)):
        rid = record_id(record, i)
        if rid in kept_ids:  # as the evaluation and every benchmark loader: the first record of an id is kept
            reason = "duplicate problem_id (the first record is kept)"
        else:
            reason = check_record(record, data_dir, video_cfg)
        if reason is None:
            good.append(record)
            kept_ids.add(rid)
        else:
            entry = {"id": rid, "reason": reason}
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
    if not records:
        raise BadDataError(f"{records_path}: the split is empty (no records)")
    good, skipped = clean_records(records, data_dir, video_cfg, max_bad_fraction, str(records_path))
    Path(skipped_out).write_text(json.dumps(skipped, indent=1) + "\n")
    bad = len(skipped) / max(1, len(records))
    reasons = "; ".join(f"record {s['id']}: {s['reason']}" for s in skipped[:10])
    if not good:
        raise BadDataError(f"{records_path}: none of the {len(records)} records is usable: {reasons}")
    if bad > max_bad_fraction:
        raise BadDataError(f"{records_path}: {len(skipped)} of {len(records)} records are bad ({bad:.0%} > "
                           f"max_bad_fraction {max_bad_fraction:.0%}): {reasons}")
    Path(out).write_text(json.dumps(good, indent=1) + "\n")
    return {"records": len(records), "kept": len(good), "skipped": len(skipped)}
