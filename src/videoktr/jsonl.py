"""Append-only JSONL that survives a kill: a torn last line (a write cut short) is dropped on resume; and one writer
at a time (`one_writer`): two jobs appending the same file would each ask every question it lacks."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
_HELD: dict[str, int] = {}  # lock files this process holds -> depth (one_writer nests within a process)


def lock_path(path: Path) -> Path:
    return Path(str(path) + ".lock")


@contextmanager
def one_writer(path: Path, job: str = ""):
    """Hold an exclusive lock on `path` (flock on the sidecar `<path>.lock`, which names its holder) while reading and
    appending it. Snakemake's locks cover a job's outputs, not a file two jobs share (the predictions of one model,
    benchmark and frame count, written by every evaluation job whose benchmark list holds it): a second job waits,
    with one line naming the file and the job holding it, then finds the first one's rows and asks only the rest.
    The kernel drops the lock when its holder dies, so a killed job never leaves it stuck."""
    lock = lock_path(path)
    key = str(lock.resolve())
    if key in _HELD:  # this process holds it already (evaluate inside an evaluation job)
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another job"
            log.warning("%s is being written by %s: waiting for it to finish (one writer per predictions file)",
                        path, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:  # a file system without flock (Lustre mounted without -o flock): go on unlocked
            log.warning("cannot lock %s (%s): this file system gives no locks, so keep to one evaluation job per "
                        "model and frame count at a time", lock, err)
        me = job or " ".join([Path(sys.argv[0]).name, *sys.argv[1:2]])
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{me} (pid {os.getpid()} on {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # releases the lock


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
