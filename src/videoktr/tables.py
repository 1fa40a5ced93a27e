"""Tables from evaluation summaries: every number is read from a file the DAG produced."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def load_summaries(paths: list[Path]) -> pd.DataFrame:
    rows = [json.loads(Path(p).read_text()) for p in paths]
    return pd.DataFrame([{k: r[k] for k in ("model", "benchmark", "frames", "accuracy", "answered", "unparseable")}
                         for r in rows])


def table1(summaries: pd.DataFrame) -> pd.DataFrame:
    """Methods x (benchmark, frames) accuracy in %, plus the mean over benchmarks per frame count."""
    wide = summaries.pivot_table(index="model", columns=["frames", "benchmark"], values="accuracy", sort=False) * 100
    for frames in sorted(summaries["frames"].unique()):
        wide[(frames, "mean")] = wide[frames].mean(axis=1)
    wide = wide.sort_index(axis=1, level=0, sort_remaining=False).round(1)
    wide.columns = [f"{b} ({f}f)" for f, b in wide.columns]
    order = list(dict.fromkeys(summaries["model"]))
    return wide.loc[order]


def write_table(df: pd.DataFrame, csv: Path, md: Path, title: str) -> None:
    df.to_csv(csv)
    md.write_text(f"# {title}\n\n" + df.to_markdown() + "\n")
