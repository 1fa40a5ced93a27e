"""Table 4: training cost per method from our training logs (metrics.json `cost`), the paper's beside."""

from __future__ import annotations

import math

import pandas as pd

from videoktr.report.cells import paper_value, row_labels

# Table 4: our training-log key (metrics.json "cost") -> (column, scale), and the paper's matching column.
COST = [("train_seconds", "train time (s)", 1.0, "train_hours"),
        ("peak_memory_bytes", "peak memory (MB)", 1e-6, "peak_mem_GB"),
        ("samples_per_second", "samples/s", 1.0, "samples_per_s"),
        ("forward_latency_seconds", "forward latency (s)", 1.0, "fwd_latency_s"),
        ("forward_flops", "forward GFLOPs", 1e-9, "fwd_TFLOPs_per_gpu")]


# TRL's own log (log_history) has these two when the cost dict is absent.
TRL_FALLBACK = {"train_seconds": "train_runtime", "samples_per_second": "train_samples_per_second"}


def cost_of(metrics: dict) -> dict[str, float]:
    """Our cost numbers of one run: metrics.json "cost", else TRL's train_runtime / train_samples_per_second."""
    cost = dict(metrics.get("cost") or {})
    for key, trl in TRL_FALLBACK.items():
        if cost.get(key) is None:
            logged = [h[trl] for h in metrics.get("log_history", []) if trl in h]
            if logged:
                cost[key] = logged[-1]
    return {key: (math.nan if cost.get(key) is None else float(cost[key]) * scale) for key, _, scale, _ in COST}


def cost_table(metrics: dict[str, dict], ours: dict[str, str], paper: pd.DataFrame) -> pd.DataFrame:
    """Table 4: our cost per method from our training logs, the paper's beside, and each relative to the first row."""
    out = []
    for label in row_labels(ours, paper):
        run = ours.get(label)
        mine = cost_of(metrics[run]) if run else {k: math.nan for k, *_ in COST}
        row = {"method": label, "run": run or ""}
        row |= {col: mine[key] for key, col, _, _ in COST}
        row |= {f"paper {p}": paper_value(paper, label, p) for *_, p in COST}
        out.append(row)
    df = pd.DataFrame(out).set_index("method")
    base = next(iter(ours))  # ratios against the first row of ours (GRPO)
    for key, col, _, p in COST[:2]:
        df[f"{col.split(' (')[0]} / {base}"] = df[col] / df.loc[base, col]
        df[f"paper {p} / {base}"] = df[f"paper {p}"] / df.loc[base, f"paper {p}"]
    return df.round(4)
