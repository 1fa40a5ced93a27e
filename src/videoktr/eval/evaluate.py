"""Evaluation with resumable predictions: each answer is appended to JSONL as it is made.

A killed run resumes without redoing or duplicating a question; the summary is computed from the JSONL alone.
Prompts, media and scoring follow the benchmark's protocol (videoktr.eval.protocols); a malformed record or an
unreadable clip/image becomes an error row with its id, and the rest of the benchmark runs.

Row of the predictions JSONL: id, subtask, prompt_hash, context, attempt, output, parsed, gt, correct (the protocol's
score in [0, 1]), parseable, seconds (the batch's wall time / its size); or id, subtask, error, context, attempt (and
prompt_hash when the question was asked: an unreadable clip or a failed generation). `context` is a digest of the
model (videoktr.provenance) and of the settings that shape an answer (frames, video, sampling, protocol): an answer
given by another model or under other settings is asked again, so a retrained model is never scored by its
predecessor's answers.

An error row of a question that was asked is asked again on the next run, up to `eval.error_retries` times (its
`attempt` counts the tries: 1 the first), so a clip restored after a failure is scored; the superseded error row is
removed once its successor is written; one that used all its tries is named in the log with what asks it again.
One job writes a predictions file at a time (videoktr.jsonl.one_writer): another evaluation job of the same model,
benchmark and frame count waits for it.  The summary is scored on the question set of the current records: rows of
ids that are no longer among them are left out (and counted), and the set's digest is part of the summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from videoktr.data.model_inputs import load_frames, merge_video_stats
from videoktr.data.prompts import source_of
from videoktr.data.video import VideoError
from videoktr.eval.answers import parse_solution
from videoktr.eval.benchmarks import BENCHMARKS, Benchmark, get_benchmark, load_benchmark
from videoktr.eval.image_benchmarks import MediaError, load_images
from videoktr.eval.protocols import check, conversation, resolve_protocol
from videoktr.eval.protocols import score as protocol_score
from videoktr.jsonl import one_writer, read_rows, rewrite_keeping
from videoktr.provenance import digest

log = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_benchmark", "question_set_digest", "read_predictions", "read_skipped",
           "summarize", "subtask"]

DEFAULT_ERROR_RETRIES = 2  # config eval.error_retries (the schema's default)


def read_predictions(path: Path) -> dict:
    return read_rows(path, "id")


def subtask(record: dict) -> str:
    """The record's subtask: its `subtask` field (set by the benchmark loaders), else data_source's last part."""
    if record.get("subtask") is not None:
        return str(record["subtask"])
    return source_of(record)


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
             model_key: str = "") -> list[str]:
    with one_writer(predictions):
        return _evaluate(backend, records, data_dir, predictions, frames=frames, video_cfg=video_cfg,
                         eval_cfg=eval_cfg, benchmark=benchmark, problems=problems, model_key=model_key)


def _evaluate(backend, records: list[dict], data_dir: Path, predictions: Path, *, frames: int, video_cfg: dict,
              eval_cfg: dict, benchmark: str | Benchmark | None = None, problems: list[dict] = (),
              model_key: str = "") -> list[str]:
    """Answer every record not yet in `predictions`, appending one row per question as soon as it is scored; return
    the ids of the question set (every record's id and every problem's: what the summary is scored on).

    `benchmark` picks the prompt/scoring protocol (config `eval.protocols` may override it); None keeps the tiny
    world's protocol.  `problems` (from the loader: malformed records) are written as error rows.  Rows whose
    prompt changed since they were written (another protocol or template), or whose model (`model_key`, e.g.
    videoktr.provenance.model_fingerprint) or answer-shaping settings changed, are dropped and asked again; so is
    the error row of a malformed record that is now well formed, and an answer whose record is now malformed becomes
    an error row.  An error row of a question that was asked (an unreadable clip, a failed generation) is asked
    again while its `attempt` is at most `eval.error_retries`.
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
    asked = {it[0] for it in items}
    # An error row is stale too when made in another context (a retrained model may not fail the same way), or when
    # its question was not asked (a malformed record, now well formed: no prompt_hash); an answer is stale when its
    # record is now malformed (it becomes an error row below).
    stale = {rid for rid, _, _, h in items if rid in done and (done[rid].get("context") != context or (
        ("output" in done[rid] or "error" in done[rid]) and done[rid].get("prompt_hash") != h))}
    stale |= {rid for rid, _, _ in errors if rid not in asked and rid in done and "error" not in done[rid]}
    if stale:
        log.warning("%d questions were answered with another prompt, model or settings (or their record changed); "
                    "they are asked again", len(stale))
        rewrite_keeping(predictions, lambda row: row.get("id") not in stale)
        done = {k: v for k, v in done.items() if k not in stale}

    # Error rows of questions that were asked: asked again while tries are left (the clip may be back).
    retries = int(eval_cfg.get("error_retries", DEFAULT_ERROR_RETRIES))
    attempt = {rid: _attempt(done[rid]) + 1 for rid in asked
               if rid in done and "error" in done[rid] and _attempt(done[rid]) <= retries}
    exhausted = [rid for rid in sorted(asked) if rid in done and "error" in done[rid] and rid not in attempt]
    if exhausted:
        log.warning("%d question(s) keep their error rows, not asked again: they failed all %d tries "
                    "(eval.error_retries: %d; %s%s); to ask them again, raise eval.error_retries in the config and "
                    "run snakemake again, or delete %s (every question asked afresh)", len(exhausted), retries + 1,
                    retries, ", ".join(exhausted[:5]), ", ..." if len(exhausted) > 5 else "", predictions)
    done = {k: v for k, v in done.items() if k not in attempt}

    todo = [it for it in items if it[0] not in done]
    for rid, _, reason in errors:
        if rid not in done:
            log.warning("question %s: %s", rid, reason)
    # One row per id: a duplicate of a question that is asked is reported above, not written.
    new_errors = [e for e in errors if e[0] not in done and e[0] not in asked]
    log.info("%d questions, %d already answered, %d to go (%d of them retried after an error; %d errors out of "
             "retries), %d malformed (%s protocol)", len(items) + len(errors), len(done), len(todo), len(attempt),
             len(exhausted), len(errors), protocol.name)
    bs = int(eval_cfg.get("batch_size", 8))
    with open(predictions, "a") as out:
        for rid, sub, reason in new_errors:
            out.write(json.dumps({"id": rid, "subtask": sub, "error": reason, "context": context, "attempt": 1})
                      + "\n")
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
                    failed.append((it, f"{'image' if r.get('data_type') == 'image' else 'video'} {e}"))
            batch, outs, broken, clip_stats = _generate(backend, batch, media, vcfg["fps"], eval_cfg)
            failed += broken
            seconds = (time.perf_counter() - start) / max(1, len(batch))
            for (rid, r, _, h), text, stats in zip(batch, outs, clip_stats, strict=True):
                s = protocol_score(text, r, protocol)
                out.write(json.dumps({
                    "id": rid, "subtask": subtask(r), "prompt_hash": h, "context": context,
                    "attempt": attempt.get(rid, 1), "output": text, "parsed": s.parsed,
                    "gt": parse_solution(r["solution"]), "correct": s.accuracy, "parseable": s.parseable,
                    "seconds": seconds, "video_input": stats}) + "\n")
            for (rid, r, _, h), reason in failed:
                log.warning("question %s (attempt %d): %s", rid, attempt.get(rid, 1), reason)
                out.write(json.dumps({"id": rid, "subtask": subtask(r), "error": reason, "context": context,
                                      "prompt_hash": h, "attempt": attempt.get(rid, 1)}) + "\n")
            out.flush()
    if attempt:  # the new rows are written: drop the error rows they supersede (one row per question again)
        rewrite_keeping(predictions, lambda row: not (
            row.get("id") in attempt and "error" in row and _attempt(row) < attempt[row["id"]]))
    return sorted(asked | {e[0] for e in errors})


def _attempt(row: dict) -> int:
    """The try that made a row: 1 the first (rows written before tries were counted: 1)."""
    try:
        return max(1, int(row.get("attempt", 1)))
    except (TypeError, ValueError):
        return 1


def _generate(backend, batch: list, media: list, fps: float, eval_cfg: dict):
    """Outputs for a batch.  If the batch fails, its questions are asked one by one and those that fail alone
    become errors (item, reason); if every one fails alone, the failure is systemic and is raised."""
    kw = dict(fps=fps, max_new_tokens=eval_cfg["max_new_tokens"], temperature=eval_cfg["temperature"],
              top_p=eval_cfg["top_p"])
    if not batch:
        return [], [], [], []
    try:
        outs = backend.generate([it[2] for it in batch], media, **kw)
        return batch, outs, [], _clip_stats(backend, len(batch))
    except Exception as first:  # noqa: BLE001 - decided below: one bad input, or a systemic failure
        if len(batch) == 1:
            raise
        log.warning("a batch of %d failed (%s: %s); asking its questions one by one", len(batch),
                    type(first).__name__, first)
        kept, outs, failed, stats = [], [], [], []
        for it, m in zip(batch, media, strict=True):
            try:
                outs += backend.generate([it[2]], [m], **kw)
                kept.append(it)
                stats += _clip_stats(backend, 1)
            except Exception as e:  # noqa: BLE001
                failed.append((it, f"generation failed: {type(e).__name__}: {e}"))
        if not kept:
            raise first
        return kept, outs, failed, stats


def _clip_stats(backend, n: int) -> list:
    """The video input of each of the last call's n prompts (frames, pixels per frame, video tokens), as the backend
    measured it; None each where it does not (images, vLLM: the engine processes the clips itself)."""
    got = list(getattr(backend, "last_clip_stats", None) or [])
    return got if len(got) == n else [None] * n


def evaluate_benchmark(backend, benchmark: str, records_path: Path, data_dir: Path, predictions: Path, *,
                       frames: int, video_cfg: dict, eval_cfg: dict, model_key: str = "") -> dict:
    """Read a benchmark's published file(s) and evaluate it (what `videoktr evaluate` runs); return what
    summarize() scores on: {"ids": the question set's ids, "excluded": records outside the benchmark's definition}.
    """
    loaded = load_benchmark(benchmark, records_path, data_dir)
    if loaded.excluded:
        log.info("%s: %d records outside the benchmark's definition left out", benchmark, loaded.excluded)
    ids = evaluate(backend, loaded.records, data_dir, predictions, frames=frames, video_cfg=video_cfg,
                   eval_cfg=eval_cfg, benchmark=benchmark, problems=loaded.problems, model_key=model_key)
    return {"ids": ids, "excluded": loaded.excluded}


def read_skipped(path: Path | None) -> dict:
    """{id: reason} of the records a split's check dropped (`prepare` writes `<split>.skipped.json` beside
    `<split>.json`); {} when there is no such file."""
    if path is None or not Path(path).is_file():
        return {}
    entries = json.loads(Path(path).read_text())
    return {str(e["id"]): str(e.get("reason", "")) for e in entries}


def question_set_digest(ids) -> str:
    """sha256 of the sorted ids, one per line: equal for two summaries exactly when they scored the same questions."""
    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()


def summarize(predictions: Path, *, model: str, benchmark: str, frames: int, backend: str,
              protocol: str | None = None, max_listed_errors: int = 1000, ids=None, skipped: dict | None = None,
              excluded: int | None = None, error_retries: int | None = None) -> dict:
    """Accuracy (over every question, an error counting as wrong, as eval_bench scores a failed generation; and over
    the answered ones), counts, unparseable answers, questions per second, and the same per subtask; the ids of the
    questions that could not be asked. Tables and figures read `accuracy`.

    `ids` is the question set (what evaluate() returns: the current records): rows of other ids (records since
    dropped) are left out and counted in `dropped_rows`; an id without a row counts as an error.  None scores every
    row.  Also: `scores` {id: score, an error 0} over the question set, `question_set` (question_set_digest of its
    ids), `skipped_ids` {id: reason} (`skipped`: the records the split's check dropped, see read_skipped),
    `excluded` (records outside the benchmark's definition), `retried` (questions whose row came from a retry after
    an error), `error_attempts` {id: tries so far} and `errors_to_retry` (errors the next run asks again, given
    `error_retries`; None without it)."""
    with one_writer(predictions):  # reading repairs a torn last line: never while another job appends
        by_id = read_predictions(predictions)
    if ids is None:
        ids = list(by_id)
    ids = sorted({str(i) for i in ids})
    wanted = set(ids)
    dropped = sum(1 for k in by_id if k not in wanted)
    if dropped:
        log.warning("%s: %d rows of questions no longer in the records are left out of the summary", predictions,
                    dropped)
    rows = [r for k, r in by_id.items() if k in wanted] + [  # in the file's order, then any id without a row
        {"id": k, "subtask": "unknown", "error": "not evaluated (no prediction row)"} for k in ids if k not in by_id]
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
        "scores": {r["id"]: (0.0 if "error" in r else float(r["correct"])) for r in rows},
        "question_set": question_set_digest(ids),
        # frames, pixels per frame and video tokens per clip as the model saw them (None: images, or not measured)
        "video_input": merge_video_stats([r.get("video_input") for r in answered]),
        "dropped_rows": dropped,
        "skipped_ids": dict(sorted((skipped or {}).items())),
        "excluded": excluded,
        "retried": sum(_attempt(r) > 1 for r in rows),
        "error_attempts": {r["id"]: _attempt(r) for r in errored[:max_listed_errors]},
        "errors_to_retry": None if error_retries is None else sum(
            "prompt_hash" in r and _attempt(r) <= error_retries for r in errored),
    }
