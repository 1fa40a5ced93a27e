"""Analyses that read only the token logs (Parquet parts written by KTRTrainer)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Word classes of the tiny world: what the visual signal should find (appearance) and the temporal one (motion/order).
WORD_CLASSES = {
    "appearance": {"red", "green", "blue", "yellow", "circle", "square", "triangle"},
    "temporal": {"left", "right", "up", "down", "first"},
}


def read_token_log(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def attribution_semantics(log: pd.DataFrame) -> dict:
    """Per signal and word class: share of the signal's selected tokens in the class vs the class's base rate.

    Enrichment > 1 means the signal picks that kind of word more often than it occurs. Pieces are matched as whole
    words after stripping the BPE space marker, so a word split into several pieces does not count.
    """
    words = log["token_str"].str.strip().str.lower()
    out = {"tokens": int(len(log)), "signals": {}}
    for signal in ("E", "V", "T"):
        column = f"selected_{signal}"
        if column not in log:
            continue
        chosen = log[column].astype(bool)
        stats = {"selected_tokens": int(chosen.sum())}
        for name, vocab in WORD_CLASSES.items():
            in_class = words.isin(vocab)
            base = float(in_class.mean())
            share = float(in_class[chosen].mean()) if chosen.any() else 0.0
            stats[name] = {"selected_share": share, "base_share": base,
                           "enrichment": share / base if base else None}
        out["signals"][signal] = stats
    return out
