"""Attribution semantics (analysis/attribution_semantics.json): do the visual and temporal signals select the tiny
world's appearance and motion words more often than they occur? Read from a run's token log, word by word.

Every number comes with a 95% percentile-bootstrap interval over completions (`<name>_ci`: the completions of the
log resampled with replacement, `videoktr.report.uncertainty`'s resample count, seed and level; one set of resamples
serves every number, so differences are paired), and `comparisons` holds the two differences the analysis asks
about: does V pick appearance words more than T does, and does T pick order/motion words more than V does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from videoktr.report.uncertainty import LEVEL, RESAMPLES, SEED

# Word classes of the tiny world: what the visual signal should find (appearance) and the temporal one (motion/order).
WORD_CLASSES = {
    "appearance": {"red", "green", "blue", "yellow", "circle", "square", "triangle"},
    "temporal": {"left", "right", "up", "down", "first"},
}
# (name, word class, signal a, signal b): selected share of the class, a - b
COMPARISONS = (("appearance_V_minus_T", "appearance", "V", "T"), ("temporal_T_minus_V", "temporal", "T", "V"))
COMPLETION_KEYS = ("run", "step", "rank", "sample_id")


def words_of(log: pd.DataFrame) -> pd.DataFrame:
    """Whole words of every completion, each with the union of its BPE pieces' selections (spaCy tokenizer only)."""
    import spacy

    from videoktr.report.words import tag_words

    return tag_words(log, spacy.blank("en"))


def completion_index(words: pd.DataFrame) -> np.ndarray:
    """Each word's completion (0..C-1), by the token log's completion keys; each word its own unit without them."""
    keys = [c for c in COMPLETION_KEYS if c in words.columns]
    if not keys:
        return np.arange(len(words))
    return words.groupby(keys, sort=True).ngroup().to_numpy()


def resampled_totals(per_completion: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """[resamples, K] column totals of per_completion [C, K] over completions drawn with replacement (C per draw)."""
    c, k = per_completion.shape
    rng = np.random.default_rng([seed, 0])
    out = np.empty((resamples, k))
    chunk = max(1, min(resamples, 2_000_000 // max(c, 1)))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = rng.integers(0, c, size=(b, c))
        counts = np.zeros((b, c))
        np.add.at(counts, (np.repeat(np.arange(b), c), idx.ravel()), 1)
        out[start:start + b] = counts @ per_completion
    return out


def _ratio(num, den):
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _ci(draws: np.ndarray) -> list[float] | None:
    """95% percentile interval of the draws that are defined (a draw without the denominator's words is not)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return None
    a = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(draws, [a, 100 - a])
    return [float(lo) + 0.0, float(hi) + 0.0]


def attribution_semantics(words: pd.DataFrame, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Per signal and word class: share of the signal's selected words in the class vs the class's base rate.

    Enrichment > 1 means the signal picks that kind of word more often than it occurs; it is bounded by 1 / (the
    signal's selection rate), reached when every word of the class is selected, so the class recall (share of its
    words selected) is reported beside it. Each number has its bootstrap interval over completions (`<name>_ci`,
    [lo, hi]; None when no resample defines it), and `comparisons` the paired differences of selected shares.
    """
    lower = words["word"].str.lower()
    comp = completion_index(words)
    n_comp = int(comp.max() + 1) if len(comp) else 0
    signals = [s for s in ("E", "V", "T") if f"selected_{s}" in words]
    in_class = {name: lower.isin(vocab).to_numpy() for name, vocab in WORD_CLASSES.items()}
    # per-word columns whose per-completion sums make every number: words, class words, and per signal its selected
    # words and its selected class words
    columns = {"words": np.ones(len(words))}
    columns.update({f"class:{name}": m.astype(float) for name, m in in_class.items()})
    for s in signals:
        chosen = words[f"selected_{s}"].astype(bool).to_numpy()
        columns[f"chosen:{s}"] = chosen.astype(float)
        columns.update({f"chosen:{s}:{name}": (chosen & m).astype(float) for name, m in in_class.items()})
    names = list(columns)
    per_completion = np.stack([np.bincount(comp, weights=columns[n], minlength=n_comp) for n in names], axis=1) \
        if n_comp else np.zeros((0, len(names)))
    draws = resampled_totals(per_completion, resamples, seed) if n_comp else np.full((0, len(names)), np.nan)
    draw = {n: draws[:, i] for i, n in enumerate(names)}

    out = {"words": int(len(words)), "completions": n_comp, "signals": {},
           "bootstrap": {"unit": "completion", "resamples": resamples, "seed": seed, "level": LEVEL}}
    share_draws = {}
    for s in signals:
        chosen = words[f"selected_{s}"].astype(bool)
        rate = float(chosen.mean())
        stats = {"selected_words": int(chosen.sum()), "selection_rate": rate,
                 "selection_rate_ci": _ci(_ratio(draw[f"chosen:{s}"], draw["words"]))}
        for name in WORD_CLASSES:
            m = pd.Series(in_class[name], index=words.index)
            base = float(m.mean()) if len(m) else 0.0
            share = float(m[chosen].mean()) if chosen.any() else 0.0
            base_d = _ratio(draw[f"class:{name}"], draw["words"])
            share_d = _ratio(draw[f"chosen:{s}:{name}"], draw[f"chosen:{s}"])
            share_draws[(s, name)] = np.where(np.isnan(share_d), 0.0, share_d)  # no selected word: share 0, as above
            stats[name] = {"selected_share": share, "selected_share_ci": _ci(share_draws[(s, name)]),
                           "base_share": base, "base_share_ci": _ci(base_d),
                           "enrichment": share / base if base else None,
                           "enrichment_ci": _ci(_ratio(share_draws[(s, name)], base_d)),
                           "recall": float(chosen[m].mean()) if m.any() else None,
                           "recall_ci": _ci(_ratio(draw[f"chosen:{s}:{name}"], draw[f"class:{name}"]))
                           if m.any() else None}
        out["signals"][s] = stats
    out["comparisons"] = {}
    for label, name, a, b in COMPARISONS:
        if a not in out["signals"] or b not in out["signals"]:
            continue
        diff = out["signals"][a][name]["selected_share"] - out["signals"][b][name]["selected_share"]
        ci = _ci(share_draws[(a, name)] - share_draws[(b, name)])
        out["comparisons"][label] = {
            "word_class": name, "measure": f"selected_share({a}) - selected_share({b})", "difference": diff + 0.0,
            "ci": ci, "excludes_zero": bool(ci is not None and (ci[0] > 0 or ci[1] < 0)),
            "base_share": out["signals"][a][name]["base_share"]}
    return out
