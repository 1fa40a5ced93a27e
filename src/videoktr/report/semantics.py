"""Attribution semantics (analysis/attribution_semantics.json): do the visual and temporal signals select the tiny
world's appearance and motion words more often than they occur? Read from a run's token log, word by word."""

from __future__ import annotations

import pandas as pd


# Word classes of the tiny world: what the visual signal should find (appearance) and the temporal one (motion/order).
WORD_CLASSES = {
    "appearance": {"red", "green", "blue", "yellow", "circle", "square", "triangle"},
    "temporal": {"left", "right", "up", "down", "first"},
}


def words_of(log: pd.DataFrame) -> pd.DataFrame:
    """Whole words of every completion, each with the union of its BPE pieces' selections (spaCy tokenizer only)."""
    import spacy

    from videoktr.report.words import tag_words

    return tag_words(log, spacy.blank("en"))


def attribution_semantics(words: pd.DataFrame) -> dict:
    """Per signal and word class: share of the signal's selected words in the class vs the class's base rate.

    Enrichment > 1 means the signal picks that kind of word more often than it occurs; it is bounded by 1 / (the
    signal's selection rate), reached when every word of the class is selected, so the class recall (share of its
    words selected) is reported beside it.
    """
    lower = words["word"].str.lower()
    out = {"words": int(len(words)), "signals": {}}
    for signal in ("E", "V", "T"):
        column = f"selected_{signal}"
        if column not in words:
            continue
        chosen = words[column].astype(bool)
        stats = {"selected_words": int(chosen.sum()), "selection_rate": float(chosen.mean())}
        for name, vocab in WORD_CLASSES.items():
            in_class = lower.isin(vocab)
            base = float(in_class.mean())
            share = float(in_class[chosen].mean()) if chosen.any() else 0.0
            stats[name] = {"selected_share": share, "base_share": base,
                           "enrichment": share / base if base else None,
                           "recall": float(chosen[in_class].mean()) if in_class.any() else None}
        out["signals"][signal] = stats
    return out