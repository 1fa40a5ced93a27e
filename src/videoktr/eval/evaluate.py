"""Evaluation with resumable predictions: each answer is appended to JSONL as it is made.

A killed run resumes without redoing or duplicating a question; the summary is computed from the JSONL alone.
Prompts, media and scoring follow the benchmark's protocol (videoktr.eval.protocols); a malformed record or an
unreadable clip/image becomes an error row with its id, and the rest of the benchmark runs.

Row of the predictions JSONL: id, subtask, prompt_hash, context, output, parsed, gt, correct (the protocol's score in
[0, 1]), parseable, seconds (the batch's wall time / its size); or id, subtask, error. `context` is a digest of the
model (videoktr.provenance) and of the settings that shape an answer (frames, video, sampling, protocol): an answer
given by another model or under other settings is asked again, so a retrained model is never scored by its
predecessor's answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from videoktr.eval.benchmarks import BENCHMARKS, Benchmark, get_benchmark, load_benchmark
from videoktr.eval.image_benchmarks import MediaError, load_images
from videoktr.eval.protocols import check, conversation, resolve_protocol
from videoktr.eval.protocols import score as protocol_score
from videoktr.data.model_inputs import load_frames
from videoktr.jsonl import read_rows, rewrite_keeping
from videoktr.provenance import digest
from videoktr.eval.answers import parse_solution
from videoktr.data.video import VideoError

log = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_benchmark", "read_predictions", "summarize", "subtask"]


def read_predictions(path: Path) -> dict:
    return read_rows(path, "id")


def subtask(record: dict) -> str:
    """The record's subtask: its `subtask` field (set by the benchmark loaders), else data_source's last part."""
    if record.get("subtask") is not None:
        return str(record["subtask"])
    return str(record.get("data_source", "all")).split("/")[-1]


def _rid(record, index: int) -> str:
    if isinstance(record, dict) and record.get("problem_id") is not None:
        return str(record["problem_id"])
    return f"#{index}"


def _eval_video_cfg(video_cfg: dict, eval_cfg: dict) -> dict:
    """Decoding settings for evaluation: `eval.fps` (if set) overrides `video.fps`."""
    cfg = dict(video_cfg)
    if eval_cfg.get("fps"):
        cfg["fps"] = eval_cfg["fps"]
    return cfg


def evaluate(backend, records: list[dict], data_dir: Path, predictions: Path, *, frames: int, video_cfg: dict,
             eval_cfg: dict, benchmark: str | Benchmark | None = None, problems: list[dict] = (),
             model_key: str = "") -> None:
    """Answer every record not yet in `predictions`, appending one row per question as soon as it is scored.

    `benchmark` picks the prompt/scoring protocol (config `eval.protocols` may override it); None keeps the tiny
    world's protocol.  `problems` (from the loader: malformed records) are written as error rows.  Rows whose
    prompt changed since they were written (another protocol or template), or whose model (`model_key`, e.g.
    videoktr.provenance.model_fingerprint) or answer-shaping settings changed, are dropped and asked again.
    """
    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    protocol = resolve_protocol(bench, eval_cfg)
    vcfg = _eval_video_cfg(video_cfg, eval_cfg)
    predictions = Path(predictions)
    done = read_predictions(predictions)

    items, errors, seen = [], [], set()
    for p in problems:
        errors.append((str(p["id"]), str(p.get("subtask", "unknown")), p["reason"]))
    for i, r in enumerate(records):
        rid = _rid(r, i)
        if rid in seen:
            errors.append((rid, subtask(r) if isinstance(r, dict) else "unknown",
                           "duplicate id (the first record is kept)"))
            continue
        seen.add(rid)
        try:
            check(r, protocol)
            text = backend.processor.apply_chat_template(conversation(r, protocol), tokenize=False,
                                                         add_generation_prompt=True)
        except (ValueError, KeyError, TypeError) as e:
            reason = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            errors.append((rid, subtask(r) if isinstance(r, dict) else "unknown", f"malformed record: {reason}"))
            continue
        items.append((rid, r, text, hashlib.sha256(text.encode()).hexdigest()[:16]))

    context = digest({"model": model_key, "frames": frames, "video": vcfg, "protocol": repr(protocol),
                      "backend": {k: eval_cfg.get(k) for k in ("backend", "temperature", "top_p", "max_new_tokens",
                                                                "min_pixels", "max_pixels", "image_min_pixels",
                                                                "vllm")}})
    # an error row is stale too when made in another context (a retrained model may not fail the same way)
    stale = {rid for rid, _, _, h in items if rid in done and (done[rid].get("context") != context or (
        "output" in done[rid] and done[rid].get("prompt_hash") != h))}
    if stale:
        log.warning("%d questions were answered with another prompt, model or settings; they are asked again",
                    len(stale))
        rewrite_keeping(predictions, lambda row: row.get("id") not in stale)
        done = {k: v for k, v in done.items() if k not in stale}

    todo = [it for it in items if it[0] not in done]
    asked = {it[0] for it in items}
    for rid, _, reason in errors:
        if rid not in done:
            log.warning("question %s: %s", rid, reason)
    # One row per id: a duplicate of a question that is asked is reported above, not written.
    new_errors = [e for e in errors if e[0] not in done and e[0] not in asked]
    log.info("%d questions, %d already answered, %d to go, %d malformed (%s protocol)", len(items) + len(errors),
             len(done), len(todo), len(errors), protocol.name)
    bs = int(eval_cfg.get("batch_size", 8))
    with open(predictions, "a") as out:
        for rid, sub, reason in new_errors:
            out.write(json.dumps({"id": rid, "subtask": sub, "error": reason, "context": context}) + "\n")
        out.flush()
        for i in tqdm(range(0, len(todo), bs), desc="evaluate", mininterval=5):
            start = time.perf_counter()
            batch, media, failed = [], [], []
            for it in todo[i:i + bs]:
                rid, r = it[0], it[1]
                try:
                    if r.get("data_type") == "image":
                        media.append(load_images(r, data_dir))
                    else:
                        media.append(load_frames(r, data_dir, vcfg, max_frames=frames))
                    batch.append(it)
                except (VideoError, MediaError) as e:
                    failed.append((rid, subtask(r), f"{'image' if r.get('data_type') == 'image' else 'video'} {e}"))
            batch, outs, broken = _generate(backend, batch, media, vcfg["fps"], eval_cfg)
            failed += broken
            seconds = (time.perf_counter() - start) / max(1, len(batch))
            for (rid, r, _, h), text in zip(batch, outs, strict=True):
                s = protocol_score(text, r, protocol)
                out.write(json.dumps({
                    "id": rid, "subtask": subtask(r), "prompt_hash": h, "context": context, "output": text,
                    "parsed": s.parsed,
                    "gt": parse_solution(r["solution"]), "correct": s.accuracy, "parseable": s.parseable,
                    "seconds": seconds}) + "\n")
            for rid, sub, reason in failed:
                log.warning("question %s: %s", rid, reason)
                out.write(json.dumps({"id": rid, "subtask": sub, "error": reason, "context": context}) + "\n")
            out.flush()


def _generate(backend, batch: list, media: list, fps: float, eval_cfg: dict):
    """Outputs for a batch.  If the batch fails, its questions are asked one by one and those that fail alone
    become errors (id, reason); if every one fails alone, the failure is systemic and is raised."""
    kw = dict(fps=fps, max_new_tokens=eval_cfg["max_new_tokens"], temperature=eval_cfg["temperature"],
              top_p=eval_cfg["top_p"])
    if not batch:
        return [], [], []
    try:
        return batch, backend.generate([it[2] for it in batch], media, **kw), []
    except Exception as first:  # noqa: BLE001 - decided below: one bad input, or a systemic failure
        if len(batch) == 1:
            raise
        log.warning("a batch of %d failed (%s: %s); asking its questions one by one", len(batch),
                    type(first).__name__, first)
        kept, outs, failed = [], [], []
        for it, m in zip(batch, media, strict=True):
            try:
                outs += backend.generate([it[2]], [m], **kw)
                kept.append(it)
            except Exception as e:  # noqa: BLE001
                failed.append((it[0], subtask(it[1]), f"generation failed: {type(e).__name__}: {e}"))
        if not kept:
            raise first
        return kept, outs, failed


def evaluate_benchmark(backend, benchmark: str, records_path: Path, data_dir: Path, predictions: Path, *,
                       frames: int, video_cfg: dict, eval_cfg: dict, model_key: str = "") -> None:
    """Read a benchmark's published file(s) and evaluate it (what `videoktr evaluate` runs)."""
    loaded = load_benchmark(benchmark, records_path, data_dir)
    if loaded.excluded:
        log.info("%s: %d records outside the benchmark's definition left out", benchmark, loaded.excluded)
    evaluate(backend, loaded.records, data_dir, predictions, frames=frames, video_cfg=video_cfg, eval_cfg=eval_cfg,
             benchmark=benchmark, problems=loaded.problems, model_key=model_key)


def summarize(predictions: Path, *, model: str, benchmark: str, frames: int, backend: str,
              protocol: str | None = None, max_listed_errors: int = 1000) -> dict:
    """Accuracy (over every question, an error counting as wrong, as eval_bench scores a failed generation; and over
    the answered ones), counts, unparseable answers, questions per second, and the same per subtask; the ids of the
    questions that could not be asked. Tables and figures read `accuracy`."""
    rows = list(read_predictions(predictions).values())
    answered = [r for r in rows if "error" not in r]
    errored = [r for r in rows if "error" in r]
    by_sub = defaultdict(list)
    for r in rows:
        by_sub[r.get("subtask", "all")].append(r)
    seconds = sum(r["seconds"] for r in answered)
    bench = BENCHMARKS.get(benchmark)
    if protocol is None and bench is not None:
        protocol = bench.protocol

    def acc(rs):  # errors count as wrong: the denominator is the benchmark's questions, for every model alike
        return sum(r["correct"] for r in rs if "error" not in r) / len(rs) if rs else 0.0

    def acc_answered(rs):
        a = [r for r in rs if "error" not in r]
        return sum(r["correct"] for r in a) / len(a) if a else 0.0

    return {
        "model": model, "benchmark": benchmark, "frames": frames, "backend": backend, "protocol": protocol,
        "accuracy": acc(rows),
        "accuracy_answered": acc_answered(rows),
        "questions": len(rows), "answered": len(answered), "errors": len(errored),
        "unparseable": sum(not r["parseable"] for r in answered),
        "published_questions": bench.published if bench is not None else None,
        "seconds": seconds,
        "questions_per_second": len(answered) / seconds if seconds else None,
        "subtasks": {k: {"accuracy": acc(v), "questions": len(v), "answered": sum("error" not in r for r in v),
                         "errors": sum("error" in r for r in v),
                         "unparseable": sum(not r.get("parseable", True) for r in v if "error" not in r)}
                     for k, v in sorted(by_sub.items())},
        "error_ids": {r["id"]: r["error"] for r in errored[:max_listed_errors]},
    }
