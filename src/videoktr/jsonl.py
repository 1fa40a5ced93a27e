"""Append-only JSONL that survives a kill: a torn last line (a write cut short) is dropped on resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def repair_tail(path: Path) -> None:
    """Cut a partial last line so that the next append starts on a fresh line."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        log.warning("dropping a torn last line of %s (an interrupted write)", path)
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_rows(path: Path, key: str) -> dict:
    """Rows by `key`, after repairing the tail; later rows win."""
    repair_tail(path)
    rows = {}
    if Path(path).exists():
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            try:
                row = json.loads(line)
                rows[row[key]] = row
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s:%d: not a valid row, ignored", path, n)
    return rows


def rewrite_keeping(path: Path, keep) -> int:
    """Rewrite `path` atomically with the rows for which keep(row) is true (lines that are not rows go too);
    return how many lines were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    repair_tail(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and keep(row):
            kept.append(line)
    if len(kept) < len(lines):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
    return len(lines) - len(kept)
