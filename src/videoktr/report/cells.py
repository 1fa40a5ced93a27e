"""The cells every table shares: our accuracy per benchmark with its interval and error count, the paper's number
for a row, and the notes naming error rows and mixed question sets."""

from __future__ import annotations

import math

import pandas as pd

from videoktr.report import uncertainty
from videoktr.report.summaries import summary_of

# Our benchmark names -> the paper's column labels (paper_tables.csv `benchmark`).
PAPER_BENCHMARK = {"video_holmes": "Video-Holmes", "videommmu": "VideoMMMU", "mmvu": "MMVU(mc)",
                   "tempcompass": "TempCompass", "videomme": "VideoMME", "mmmu": "MMMU(val)", "ai2d": "AI2D",
                   "mmstar": "MMStar", "chartqa": "ChartQA"}


def row_labels(ours: dict[str, str], paper: pd.DataFrame) -> list[str]:
    """Our rows in the config's order, then the paper's other rows in its order (paper numbers only)."""
    return list(dict.fromkeys([*ours, *paper["method"]]))


def paper_columns(paper: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(paper["benchmark"]))


def paper_value(paper: pd.DataFrame, label: str, bench: str, frames: str | None = None) -> float:
    hit = paper[(paper["method"] == label) & (paper["benchmark"] == bench)]
    if frames is not None:
        hit = hit[hit["frames"] == frames]
    return float(hit["value"].iloc[0]) if len(hit) else math.nan


def ours_cells(summaries: pd.DataFrame, run: str, benchmarks: list[str], frames: int) -> tuple[dict, dict]:
    """Our cells of one row: (accuracy (%) per benchmark and their mean; the interval and error columns)."""
    found = [summary_of(summaries, run, b, frames) for b in benchmarks]
    cells = {b: 100 * float(s["accuracy"]) for b, s in zip(benchmarks, found)}
    cells["mean"] = sum(cells[b] for b in benchmarks) / len(benchmarks)
    extra = {}
    for k, (b, s) in enumerate(zip(benchmarks, found)):
        lo, hi = uncertainty.interval(s["scores"], stream=k) or (math.nan, math.nan)
        extra |= {f"{b}_lo": lo, f"{b}_hi": hi}
    lo, hi = uncertainty.mean_interval([s["scores"] for s in found]) or (math.nan, math.nan)
    extra |= {"mean_lo": lo, "mean_hi": hi}
    extra |= {f"{b}_errors": int(s["errors"]) for b, s in zip(benchmarks, found)}
    return cells, extra


def empty_cells(benchmarks: list[str]) -> tuple[dict, dict]:
    cols = [*benchmarks, "mean"]
    return ({c: math.nan for c in cols},
            {f"{c}_{x}": math.nan for c in cols for x in ("lo", "hi")} | {f"{b}_errors": math.nan for b in benchmarks})


def honesty_notes(summaries: pd.DataFrame, ours: dict[str, str], evaluated, benchmarks: list[str]) -> list[str]:
    """What a reader must know about the cells of ours: evaluations with error rows (questions that could not be
    asked, counted wrong), and columns (benchmark, frames) whose cells were scored on different question sets."""
    cells = sorted({(b, f, label) for label, f in evaluated for b in benchmarks},
                   key=lambda x: (x[1], benchmarks.index(x[0]), list(ours).index(x[2])))
    errors, sets = [], {}
    for b, f, label in cells:
        s = summary_of(summaries, ours[label], b, f)
        n = s["questions"]
        n = n if isinstance(n, int) else (len(s["scores"]) if s["scores"] else None)
        if s["errors"]:
            of = f" of {n}" if n is not None else ""
            errors.append(f"{b} at {f} frames: {label} ({ours[label]}) {int(s['errors'])}{of}")
        if isinstance(s["question_set"], str) and s["question_set"]:
            sets.setdefault((b, f), {}).setdefault(s["question_set"], []).append(
                (label, ours[label], len(s["scores"]) if s["scores"] else n))
    lines = []
    if errors:
        lines.append("evaluation errors (questions that could not be asked, counted wrong; '(N err)' beside a table "
                     "cell): " + "; ".join(errors))
    mixed = [(b, f, groups) for (b, f), groups in sets.items() if len(groups) > 1]
    if mixed:
        parts = []
        for b, f, groups in mixed:
            described = " vs ".join(", ".join(f"{lab} ({run})" for lab, run, _ in g) + f" [{g[0][2]} questions]"
                                    for g in groups.values())
            parts.append(f"{b} at {f} frames: {described}")
        lines.append("DIFFERENT QUESTION SETS in one column (not the same questions; each paired difference uses only "
                     "the question ids both rows were scored on): " + "; ".join(parts))
    return lines
