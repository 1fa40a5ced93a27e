"""What tables and figures read: evaluation summaries, training logs and the paper's reference numbers.

A missing or corrupt file stops the rule with one line naming it and the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from videoktr.report import uncertainty

SUMMARY_KEYS = ("model", "benchmark", "frames", "accuracy")
SUMMARY_COLUMNS = ["model", "benchmark", "frames", "accuracy", "answered", "unparseable", "questions", "errors",
                   "subtasks", "scores", "question_set", "path"]


def read_json(path, what: str) -> dict:
    """One JSON object from `path`; a missing, unreadable or corrupt file stops with ONE line naming it and why."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: {what} not found") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}: corrupt {what}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
                         ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"{path}: unreadable {what} ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: corrupt {what}: a JSON {type(data).__name__}, not an object")
    return data


def load_summaries(paths) -> pd.DataFrame:
    """The evaluation summaries (*.summary.json) as a table: one row per (model, benchmark, frames), with the error
    count, the per-question scores ({id: score}, None in a summary without them) and the question set's digest."""
    rows = []
    for p in paths:
        r = read_json(p, "evaluation summary")
        missing = [k for k in SUMMARY_KEYS if k not in r]
        if missing:
            raise SystemExit(f"{p}: corrupt evaluation summary: no {', '.join(missing)}")
        try:
            acc = float(r["accuracy"])
        except (TypeError, ValueError):
            raise SystemExit(f"{p}: corrupt evaluation summary: accuracy {r['accuracy']!r} is not a number") from None
        _check_path_matches(p, r)
        errors = r.get("errors")
        rows.append({"model": r["model"], "benchmark": r["benchmark"], "frames": r["frames"], "accuracy": acc,
                     "answered": r.get("answered"), "unparseable": r.get("unparseable"),
                     "questions": r.get("questions"),
                     "errors": int(errors) if errors is not None else len(r.get("error_ids") or {}),
                     "subtasks": r.get("subtasks", {}), "scores": uncertainty.question_scores(r),
                     "question_set": uncertainty.question_set(r), "path": str(p)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS, dtype=object)  # object: None stays None (not NaN)


def _check_path_matches(path, summary: dict) -> None:
    """A summary at eval/<model>/<benchmark>/f<frames>.summary.json (rule eval_summary) must be of that model,
    benchmark and frame count: one copied over another's would be scored as the other's, or missed by its table."""
    p = Path(path)
    m = re.fullmatch(r"f(\d+)\.summary\.json", p.name)
    if not m:
        return
    where = (p.parent.parent.name, p.parent.name, int(m.group(1)))
    held = (summary["model"], summary["benchmark"], summary["frames"])
    if (str(held[0]), str(held[1]), _int_or_none(held[2])) != where:
        raise SystemExit(f"{path}: holds the summary of model {held[0]!r} on {held[1]} at {held[2]} frames, not of "
                         f"{where[0]!r} on {where[1]} at {where[2]} frames as its path says (copied over another?); "
                         f"delete it and rerun the workflow to write it again")


def _int_or_none(x):
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def load_reference(path) -> pd.DataFrame:
    ref = pd.read_csv(path, dtype={"frames": str}, keep_default_na=False)
    ref["value"] = pd.to_numeric(ref["value"])
    return ref


def paper_rows(ref: pd.DataFrame, table: str) -> pd.DataFrame:
    return ref[ref["table"] == table]


def summary_of(summaries: pd.DataFrame, run: str, bench: str, frames: int) -> pd.Series:
    """The summary of one evaluation of a grid row's run (a row of `load_summaries`); it must be among the inputs."""
    hit = summaries[(summaries["model"] == run) & (summaries["benchmark"] == bench) & (summaries["frames"] == frames)]
    if hit.empty:
        near = summaries[(summaries["benchmark"] == bench) & (summaries["frames"] == frames)]
        held = "; ".join(f"{p} holds model {m!r}" for p, m in zip(near["path"], near["model"])) or "none"
        raise SystemExit(f"no evaluation summary for run {run!r} on {bench} at {frames} frames among the inputs "
                         f"(those of {bench} at {frames} frames: {held})")
    return hit.iloc[0]
