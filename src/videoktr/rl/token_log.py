"""The token log of a Video-KTR run: one Parquet part per step and rank, `step-XXXXXX-rankR.parquet`."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

PART = re.compile(r"step-(\d+)-rank(\d+)\.parquet$")


def read_token_log(path, columns: list[str] | None = None) -> pd.DataFrame:
    """A token log: a folder of `step-XXXXXX-rankR.parquet` parts (a `rank` column is added) or one Parquet file."""
    path = Path(path)
    parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not parts:
        raise SystemExit(f"token log {path}: no Parquet parts")
    frames = []
    for part in parts:
        frame = pd.read_parquet(part, columns=columns)
        m = PART.search(part.name)
        if m and "rank" not in frame.columns:
            frame["rank"] = int(m.group(2))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_token_log(directory: Path, *, run: str, step: int, rank: int, tokenizer, rows: list[dict], output: dict,
                    scores: dict, per_signal: dict, key) -> Path:
    """One part: every valid completion token of a generation batch with its scores, selections and advantage.

    `rows` are the batch's dataset rows, `output` TRL's generation batch (completion ids and mask, advantages)."""
    import torch

    valid = output["completion_mask"].bool()
    ids = output["completion_ids"]
    b, t = torch.nonzero(valid, as_tuple=True)
    advantages = output["advantages"]
    frame = pd.DataFrame({
        "run": run,
        "step": step,
        "rank": rank,  # (step, rank, sample_id) names one completion
        "sample_id": [f"{rows[i]['problem_id']}#{i}" for i in b.tolist()],
        "problem_id": [str(rows[i]["problem_id"]) for i in b.tolist()],
        "position": t.tolist(),
        "token_id": ids[b, t].tolist(),
        "token_text": tokenizer.convert_ids_to_tokens(ids[b, t].tolist()),
        "token_str": [tokenizer.decode([i]) for i in ids[b, t].tolist()],
        **{f"score_{k}": scores[k][b, t].float().cpu().numpy() for k in scores},
        **{f"selected_{k}": per_signal[k][b, t].cpu().numpy() for k in per_signal},
        "key": key[b, t].cpu().numpy(),
        "advantage": advantages[b].float().cpu().numpy() if advantages.dim() == 1 else
        advantages[b, t].float().cpu().numpy(),
    })
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:06d}-rank{rank}.parquet"
    frame.to_parquet(path, index=False)
    return path
