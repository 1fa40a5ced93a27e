"""Difficulty filtering: k samples per question from the SFT model; keep the questions it solves sometimes.

Resumable: per-question accuracies are appended to a JSONL as they are computed, and a rerun skips those ids.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from videoktr.jsonl import read_rows
from videoktr.inputs import load_frames, prompt_text
from videoktr.rewards import score

log = logging.getLogger(__name__)


def keep_in_band(accuracy: dict, low: float, high: float) -> set:
    """Ids whose accuracy lies in [low, high] (both ends included, as the paper's "drop > 80% and < 20%")."""
    return {pid for pid, acc in accuracy.items() if low <= acc <= high}


def read_done(path: Path) -> dict:
    return {pid: row["accuracy"] for pid, row in read_rows(path, "problem_id").items()}


def run_filter(backend, records: list[dict], data_dir: Path, scores_path: Path, *, k: int, temperature: float,
               max_new_tokens: int, batch_size: int, video_cfg: dict) -> dict:
    """Append {problem_id, accuracy, samples} per question to `scores_path`; return id -> accuracy."""
    accuracy = read_done(scores_path)
    todo = [r for r in records if r["problem_id"] not in accuracy]
    per_batch = max(1, batch_size // k)
    with open(scores_path, "a") as out:
        for i in tqdm(range(0, len(todo), per_batch), desc="filter", mininterval=5):
            batch = todo[i:i + per_batch]
            texts = [prompt_text(backend.processor, r) for r in batch]
            videos = [load_frames(r, data_dir, video_cfg) for r in batch]
            outs = backend.generate(texts, videos, fps=video_cfg["fps"], max_new_tokens=max_new_tokens,
                                    temperature=temperature, num_return_sequences=k)
            for j, r in enumerate(batch):
                samples = outs[j * k:(j + 1) * k]
                acc = sum(score(s, r["solution"], r["problem_type"]).accuracy for s in samples) / k
                accuracy[r["problem_id"]] = acc
                out.write(json.dumps({"problem_id": r["problem_id"], "accuracy": acc, "samples": samples}) + "\n")
            out.flush()
    return accuracy
