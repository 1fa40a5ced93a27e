"""A finished RL run kept beside its checkpoints, so that a requeued or retried job restores it instead of training
again.

Snakemake deletes a job's outputs before it runs the job, and the job step of a SLURM requeue or of a profile retry
runs with `--force`: the model folder and metrics.json of a run that had finished are gone when the job starts
again. The work dir is not an output, so it keeps hard links to the finished files (`keep_model`, `keep_metrics`):
no second copy on disk, and `restore` links them back, the same inodes, so every byte and modification time is as
the first job wrote it. A forced rerun (`--forcerun`, an outdated input) is not a retry and trains afresh (rl.run.prepare_work_dir).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from videoktr.provenance import defines_model, model_fingerprint

KEPT = "finished"  # in the work dir: model/ (the output folder's files) and metrics.json


def is_retry(attempt: int = 1) -> bool:
    """A second try of the same job: Snakemake's attempt (profile `retries`) or a SLURM requeue of its batch job."""
    return attempt > 1 or int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links refused: a copy with its times
        shutil.copy2(src, dst)


def _model_files(folder: Path) -> list[Path]:
    files = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return sorted(rel for rel in files if defines_model(rel))


def keep_model(work_dir: Path, out_dir: Path) -> None:
    """Link the finished model's files into `work_dir/finished/model` (main process, once the model is saved)."""
    kept = Path(work_dir) / KEPT
    shutil.rmtree(kept, ignore_errors=True)
    for rel in _model_files(Path(out_dir)):
        _link(Path(out_dir) / rel, kept / "model" / rel)


def keep_metrics(work_dir: Path, metrics: Path) -> None:
    """Link the run's metrics.json, once written, into `work_dir/finished`."""
    _link(Path(metrics), Path(work_dir) / KEPT / "metrics.json")


def restore(work_dir: Path, out_fingerprint: str, out_dir: Path, metrics: Path) -> bool:
    """Link the kept model and metrics back into the outputs when they are the finished run's (the fingerprint the
    run recorded); False, touching nothing, when anything is missing or differs."""
    kept = Path(work_dir) / KEPT
    try:
        if not (kept / "metrics.json").is_file() or model_fingerprint(kept / "model") != out_fingerprint:
            return False
    except FileNotFoundError:
        return False
    for rel in _model_files(kept / "model"):
        _link(kept / "model" / rel, Path(out_dir) / rel)
    _link(kept / "metrics.json", Path(metrics))
    return True
