"""What the RL runs did while training, from their metrics.json: did the accuracy reward rise, and do two runs from
one model sample different rollouts once they have been updated?

- `reward`: the mean accuracy reward of the first and the last quarter of the steps, and their difference with a 95%
  bootstrap interval over steps (each step's reward is the mean over that step's completions: a handful of questions).
  `by_source` does the same per question source (appearance, temporal, counting) over the steps that asked one: the
  overall quarters mix sources in varying shares, and a source the model cannot see adds only noise.
- `rollouts`: against a reference run from the same SFT model and seed (GRPO by default), the first generation batch
  whose sampled tokens differ (1-based). Batch 1 is sampled before any update, so it is the same for every method;
  a run that still samples GRPO's rollouts several updates in has moved too little to change a sampled token.
  A run that is not compared says why (`rollouts_not_compared`): no field is left out silently.
"""

from __future__ import annotations

import logging

import numpy as np

from videoktr.report.uncertainty import LEVEL, resampled_means
from videoktr.rl.rewards import BY_SOURCE

log = logging.getLogger(__name__)
REWARD = "rewards/accuracy/mean"


def step_rewards(metrics: dict, key: str = REWARD) -> list[float]:
    return [h[key] for h in metrics.get("log_history", []) if h.get(key) is not None]


def source_quarters(metrics: dict) -> dict:
    """reward_quarters per question source, over the steps in which that source was asked."""
    sources = sorted({k[len(BY_SOURCE):] for h in metrics.get("log_history", []) for k in h
                      if k.startswith(BY_SOURCE)})
    return {s: reward_quarters(step_rewards(metrics, BY_SOURCE + s)) for s in sources}


def reward_quarters(rewards: list[float]) -> dict:
    """First and last quarter's mean reward and last - first with its 95% bootstrap interval (steps resampled within
    each quarter, fixed seed)."""
    q = len(rewards) // 4
    if q == 0:
        return {"steps": len(rewards), "first_quarter": None, "last_quarter": None, "rise": None, "rise_ci": None}
    first, last = np.asarray(rewards[:q], float), np.asarray(rewards[-q:], float)
    draws = (resampled_means(last, stream=1) - resampled_means(first, stream=0)) / 100
    tail = 100 * (1 - LEVEL) / 2
    return {"steps": len(rewards), "first_quarter": float(first.mean()), "last_quarter": float(last.mean()),
            "rise": float(last.mean() - first.mean()),
            "rise_ci": [float(x) for x in np.percentile(draws, [tail, 100 - tail])]}


def first_difference(a: list[str], b: list[str]) -> int | None:
    """The 1-based index of the first generation batch whose digests differ; None if they never do."""
    return next((i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def rollouts_gap(name: str, metrics: dict) -> str | None:
    """Why a run's rollout digests cannot be compared batch by batch from the first (None: they can): none recorded,
    or they begin past the run's start (resumed from a checkpoint saved without them, or written before metrics.json
    counted every segment: then a resumed run holds its last segment's only)."""
    if not metrics.get("rollouts"):
        return f"{name} recorded no rollout digests"
    start = metrics.get("counted_from_step")
    if start is None and metrics.get("resumed_from"):
        return (f"{name} was resumed from {metrics['resumed_from'][-1]} and its metrics.json holds the digests of "
                f"its last segment only (written before every segment was counted); retrain it to compare")
    if start:
        return f"{name}'s digests begin after step {start} (resumed from a checkpoint saved without them)"
    return None


def training_summary(metrics: dict[str, dict], start: dict[str, str], reference: str = "grpo") -> dict:
    """Per run: reward quarters, and the batch at which its rollouts leave those of the run of `reference`'s method
    that starts from the same model (`start`: run -> SFT model). A run not compared says why in
    `rollouts_not_compared` (one line, also logged)."""
    runs = {}
    for name, m in metrics.items():
        row = {"method": m.get("method"), "sft_model": start.get(name), **reward_quarters(step_rewards(m)),
               "by_source": source_quarters(m)}
        peers = [r for r in metrics if r != name and metrics[r].get("method") == reference
                 and start.get(r) == start.get(name)]
        if m.get("method") == reference:
            why = f"{name} is a {reference} run: the reference the others are compared with"
        elif not peers:
            why = f"no {reference} run starts from {start.get(name)!r} as {name} does"
        else:
            why = rollouts_gap(name, m) or rollouts_gap(peers[0], metrics[peers[0]])
        if why is None:
            other = metrics[peers[0]]["rollouts"]
            row.update(compared_with=peers[0], batches=min(len(m["rollouts"]), len(other)),
                       rollouts_differ_from_batch=first_difference(m["rollouts"], other))
        else:
            row["rollouts_not_compared"] = why
            if m.get("method") != reference:
                log.warning("analysis/training.json: rollouts of %s not compared: %s", name, why)
        runs[name] = row
    rises = [r["rise"] for r in runs.values() if r["rise"] is not None]
    sources = sorted({s for r in runs.values() for s in r["by_source"]})
    by_source = {s: [r["by_source"][s]["rise"] for r in runs.values()
                     if s in r["by_source"] and r["by_source"][s]["rise"] is not None] for s in sources}
    return {"runs": runs,
            "mean_rise": float(np.mean(rises)) if rises else None,
            "mean_rise_by_source": {s: float(np.mean(v)) if v else None for s, v in by_source.items()},
            "reference": reference}
