"""Matplotlib for the figures: a headless pyplot with the house style, and the PNG/PDF/CSV writer of every figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.spines.top": False,
                         "axes.spines.right": False, "figure.dpi": 100})
    return plt


def save(fig, stem, table: pd.DataFrame) -> pd.DataFrame:
    """Write `stem.png`, `stem.pdf` (no timestamps) and `stem.csv` (the numbers plotted); return the table."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(f"{stem}.png", dpi=150, bbox_inches="tight")
    fig.savefig(f"{stem}.pdf", bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
    table.to_csv(f"{stem}.csv", index=False)
    pyplot().close(fig)
    return table
