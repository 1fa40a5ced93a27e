"""Backend parity: the same model on the same questions under the same evaluation protocol, answered by the
transformers backend and by vLLM (its CPU build here, its GPU build on a cluster).  What must agree: the answers
(share of identical parsed answers), the accuracies (each with its bootstrap interval over questions) and the video
input (video tokens per clip: the frame count, fps and pixel bounds reach vLLM as they reach the processor).

A benchmark target (`results/<run>/bench/backend_parity.json`), never a timed test; tests/test_vllm.py runs it small.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from videoktr.eval.backends import make_backend
from videoktr.eval.evaluate import evaluate, read_predictions
from videoktr.report.uncertainty import interval, paired

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "vllm")


def run_backend(kind: str, model_dir: Path, records: list[dict], data_dir: Path, predictions: Path, *, frames: int,
                video_cfg: dict, eval_cfg: dict, benchmark: str | None, seed: int) -> dict:
    """Evaluate with one backend; its start and answer times (s)."""
    started = time.perf_counter()
    backend = make_backend(kind, model_dir, seed=seed, eval_cfg=eval_cfg)
    ready = time.perf_counter()
    evaluate(backend, records, data_dir, predictions, frames=frames, video_cfg=video_cfg,
             eval_cfg={**eval_cfg, "backend": kind}, benchmark=benchmark)
    done = time.perf_counter()
    del backend  # a vLLM engine core exits with its last reference, before the next backend starts
    return {"start_seconds": ready - started, "answer_seconds": done - ready}


def compare(rows_a: dict, rows_b: dict) -> dict:
    """Agreement of two backends' prediction rows ({id: row}) over the ids both answered."""
    ids = sorted(i for i in rows_a if i in rows_b and "error" not in rows_a[i] and "error" not in rows_b[i])
    if not ids:
        raise ValueError("the two backends answered no question in common")
    same_answer = sum(rows_a[i]["parsed"] == rows_b[i]["parsed"] for i in ids)
    same_text = sum(rows_a[i]["output"] == rows_b[i]["output"] for i in ids)

    def tokens(row):
        v = row.get("video_input") or {}
        return v.get("tokens_max")

    with_video = [i for i in ids if tokens(rows_a[i]) is not None and tokens(rows_b[i]) is not None]
    same_tokens = sum(tokens(rows_a[i]) == tokens(rows_b[i]) for i in with_video)
    acc = {}
    for name, rows in zip(BACKENDS, (rows_a, rows_b), strict=True):
        scores = {i: float(rows[i]["correct"]) for i in ids}  # in [0, 1]; intervals come back in percent
        lo, hi = interval(scores)
        acc[name] = {"accuracy": 100 * sum(scores.values()) / len(ids), "interval": [lo, hi]}
    a, b = ({i: float(rows[i]["correct"]) for i in ids} for rows in (rows_a, rows_b))
    delta, lo, hi, _ = paired(b, a)
    return {
        "questions": len(ids),
        "identical_answers": same_answer / len(ids),
        "identical_outputs": same_text / len(ids),
        "clips_compared": len(with_video),
        "identical_video_tokens": same_tokens / len(with_video) if with_video else None,
        "video_tokens_per_clip": sorted({tokens(rows_a[i]) for i in with_video}),
        "accuracy": acc,
        "vllm_minus_transformers": {"difference": delta, "interval": [lo, hi]},
        "errors": {name: sum("error" in r for r in rows.values()) for name, rows in zip(BACKENDS, (rows_a, rows_b))},
    }


def backend_parity(model_dir: Path, records: list[dict], data_dir: Path, out_dir: Path, *, frames: int,
                   video_cfg: dict, eval_cfg: dict, benchmark: str | None = None, seed: int = 0) -> dict:
    """Evaluate `records` with both backends (predictions under `out_dir`, resumable as any evaluation) and compare."""
    import vllm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timing = {}
    for kind in BACKENDS:
        log.info("backend parity: %s", kind)
        timing[kind] = run_backend(kind, model_dir, records, data_dir, out_dir / f"{kind}.jsonl", frames=frames,
                                   video_cfg=video_cfg, eval_cfg=eval_cfg, benchmark=benchmark, seed=seed)
    result = compare(*(read_predictions(out_dir / f"{kind}.jsonl") for kind in BACKENDS))
    result.update(frames=frames, benchmark=benchmark, vllm_version=vllm.__version__, timing=timing,
                  settings={k: eval_cfg.get(k) for k in ("temperature", "top_p", "max_new_tokens", "min_pixels",
                                                         "max_pixels", "vllm")})
    (out_dir / "backend_parity.json").write_text(json.dumps(result, indent=2))
    return result
