"""Evaluation with resumable predictions: each answer is appended to JSONL as it is made.

A killed run resumes without redoing or duplicating a question; the summary is computed from the JSONL alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from videoktr.jsonl import read_rows
from videoktr.inputs import load_frames, prompt_text
from videoktr.rewards import score
from videoktr.video import VideoError

log = logging.getLogger(__name__)


def read_predictions(path: Path) -> dict:
    return read_rows(path, "id")


def subtask(record: dict) -> str:
    return record.get("data_source", "all").split("/")[-1]


def evaluate(backend, records: list[dict], data_dir: Path, predictions: Path, *, frames: int, video_cfg: dict,
             eval_cfg: dict) -> None:
    done = read_predictions(predictions)
    todo = [r for r in records if str(r["problem_id"]) not in done]
    log.info("%d questions, %d already answered, %d to go", len(records), len(done), len(todo))
    start = time.perf_counter()
    with open(predictions, "a") as out:
        bs = eval_cfg["batch_size"]
        for i in tqdm(range(0, len(todo), bs), desc="evaluate", mininterval=5):
            batch, videos, failed = [], [], []
            for r in todo[i:i + bs]:
                try:
                    videos.append(load_frames(r, data_dir, video_cfg, max_frames=frames))
                    batch.append(r)
                except VideoError as e:
                    failed.append((r, f"video {e}"))
            texts = [prompt_text(backend.processor, r) for r in batch]
            outs = backend.generate(texts, videos, fps=video_cfg["fps"], max_new_tokens=eval_cfg["max_new_tokens"],
                                    temperature=eval_cfg["temperature"], top_p=eval_cfg["top_p"]) if batch else []
            seconds = (time.perf_counter() - start) / max(1, len(batch))
            for r, text in zip(batch, outs):
                s = score(text, r["solution"], r["problem_type"])
                out.write(json.dumps({
                    "id": str(r["problem_id"]), "subtask": subtask(r),
                    "prompt_hash": hashlib.sha256(texts[batch.index(r)].encode()).hexdigest()[:16],
                    "output": text, "parsed": s.parsed, "correct": s.accuracy, "parseable": s.parseable,
                    "seconds": seconds}) + "\n")
            for r, reason in failed:
                log.warning("question %s: %s", r["problem_id"], reason)
                out.write(json.dumps({"id": str(r["problem_id"]), "subtask": subtask(r), "error": reason}) + "\n")
            out.flush()
            start = time.perf_counter()


def summarize(predictions: Path, *, model: str, benchmark: str, frames: int, backend: str) -> dict:
    rows = list(read_predictions(predictions).values())
    answered = [r for r in rows if "error" not in r]
    by_sub = defaultdict(list)
    for r in answered:
        by_sub[r["subtask"]].append(r["correct"])
    seconds = sum(r["seconds"] for r in answered)
    return {
        "model": model, "benchmark": benchmark, "frames": frames, "backend": backend,
        "accuracy": sum(r["correct"] for r in answered) / max(1, len(answered)),
        "questions": len(rows), "answered": len(answered), "errors": len(rows) - len(answered),
        "unparseable": sum(not r["parseable"] for r in answered),
        "questions_per_second": len(answered) / seconds if seconds else None,
        "subtasks": {k: {"accuracy": sum(v) / len(v), "questions": len(v)} for k, v in sorted(by_sub.items())},
    }
