"""95% bootstrap intervals over questions, for every accuracy the tables and figures show and every difference they
draw.

An evaluation summary (`videoktr.eval.evaluate.summarize`) holds `scores`, {question id: correct in [0, 1]}; the
interval of its accuracy is the percentile bootstrap of the mean over those questions (`RESAMPLES` resamples with a
fixed seed, so a table is rebuilt with the same numbers). A difference between two models is PAIRED: the same
resampled question ids for both, i.e. the bootstrap of the per-question difference over the ids both were scored on.
A mean over benchmarks resamples the questions within each benchmark (each benchmark its own random stream, the same
stream for both sides of a paired difference). A summary without `scores` (the paper's numbers, older summaries) has
no interval: the functions return None and the tables leave the interval empty; nothing is invented.

All numbers are in percent (0-100), as in the tables. numpy only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

RESAMPLES = 2000
SEED = 20240601
LEVEL = 0.95


def question_scores(summary: Mapping) -> dict[str, float] | None:
    """{id: score} of one summary: its `scores`, and each id of `error_ids` that `scores` lacks as 0 (an error counts
    as wrong, as in `accuracy`); None when the summary has no per-question scores."""
    scores = summary.get("scores")
    if not isinstance(scores, Mapping) or not scores:
        return None
    out = {str(k): (0.0 if v is None else float(v)) for k, v in scores.items()}
    for k in summary.get("error_ids") or {}:
        out.setdefault(str(k), 0.0)
    return out


def question_set(summary: Mapping) -> str | None:
    """The summary's `question_set` (sha256 of its sorted scored ids), else the same digest of its `scores` ids (as
    `videoktr.eval.evaluate.question_set_digest` makes it); None without either."""
    if summary.get("question_set"):
        return str(summary["question_set"])
    scores = summary.get("scores")
    if isinstance(scores, Mapping) and scores:
        return hashlib.sha256("\n".join(sorted(map(str, scores))).encode()).hexdigest()
    return None


def _stream(stream: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def resampled_means(values, stream: int = 0, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """`resamples` means of `values` resampled with replacement (stream `stream` of the fixed seed), in percent."""
    v = np.asarray(values, dtype=float)
    idx = _stream(stream, seed).integers(0, len(v), size=(resamples, len(v)))
    return 100 * v[idx].mean(axis=1)


def _percentiles(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    a = 100 * (1 - level) / 2
    lo, hi = np.percentile(draws, [a, 100 - a])
    return float(lo) + 0.0, float(hi) + 0.0  # + 0.0: no "-0.0"


def interval(scores: Mapping[str, float] | Sequence[float] | None, stream: int = 0, **kw) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval (%) of the accuracy over these questions; None without scores."""
    if scores is None or len(scores) == 0:
        return None
    values = [scores[k] for k in sorted(scores)] if isinstance(scores, Mapping) else list(scores)
    return _percentiles(resampled_means(values, stream, **kw))


def mean_interval(per_benchmark: Sequence[Mapping[str, float] | None], **kw) -> tuple[float, float] | None:
    """Interval (%) of the mean over benchmarks, questions resampled within each (benchmark k: stream k); None when
    any benchmark has no scores."""
    if not per_benchmark or any(s is None or len(s) == 0 for s in per_benchmark):
        return None
    draws = [resampled_means([s[k] for k in sorted(s)], stream=i, **kw) for i, s in enumerate(per_benchmark)]
    return _percentiles(np.mean(draws, axis=0))


def paired(a: Mapping[str, float] | None, b: Mapping[str, float] | None, stream: int = 0,
           **kw) -> tuple[float, float, float, int] | None:
    """Paired difference a - b (percentage points) over the ids both were scored on: (difference, lo, hi, shared
    questions); None when either has no scores or they share no id. Identical scores give exactly (0, 0, 0, n)."""
    if not a or not b:
        return None
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    d = np.array([a[i] for i in ids], dtype=float) - np.array([b[i] for i in ids], dtype=float)
    lo, hi = _percentiles(resampled_means(d, stream, **kw))
    return 100 * float(d.mean()) + 0.0, lo, hi, len(ids)


def paired_mean(a: Sequence[Mapping[str, float] | None], b: Sequence[Mapping[str, float] | None],
                **kw) -> tuple[float, float, float, int] | None:
    """Paired difference of the means over benchmarks: per benchmark k the per-question differences on the shared
    ids, resampled with stream k; the difference and interval of their mean over benchmarks, and the shared questions
    in all. None when a benchmark lacks scores on either side or shares no id."""
    if len(a) != len(b) or not a:
        return None
    diffs = []
    for sa, sb in zip(a, b):
        if not sa or not sb:
            return None
        ids = sorted(set(sa) & set(sb))
        if not ids:
            return None
        diffs.append(np.array([sa[i] for i in ids], dtype=float) - np.array([sb[i] for i in ids], dtype=float))
    draws = np.mean([resampled_means(d, stream=i, **kw) for i, d in enumerate(diffs)], axis=0)
    lo, hi = _percentiles(draws)
    return 100 * float(np.mean([d.mean() for d in diffs])) + 0.0, lo, hi, sum(len(d) for d in diffs)


def excludes_zero(lo: float, hi: float) -> bool:
    """A difference is a result only when its interval does not contain 0."""
    return lo > 0 or hi < 0


def fmt_interval(value: float, lo: float | None, hi: float | None, digits: int = 1) -> str:
    """"45.8 [31.2, 60.4]"; the bare value when there is no interval."""
    if value is None or value != value:
        return ""
    if lo is None or hi is None or lo != lo or hi != hi:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_difference(delta: float, lo: float | None, hi: float | None, digits: int = 1) -> str:
    """"+1.2 [-3.1, +5.4] (n.s.)" when the interval contains 0, "+8.3 [+2.1, +14.6]" when not; "+1.2 [--]" without
    an interval (no per-question scores)."""
    if delta is None or delta != delta:
        return ""
    def signed(v: float) -> str:
        return f"{round(v, digits) + 0.0:+.{digits}f}"  # + 0.0: no "-0.0"

    if lo is None or hi is None or lo != lo or hi != hi:
        return f"{signed(delta)} [--]"
    text = f"{signed(delta)} [{signed(lo)}, {signed(hi)}]"
    return text if excludes_zero(lo, hi) else f"{text} (n.s.)"
