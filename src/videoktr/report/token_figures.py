"""The paper's token-level figures: Figs. 4, 5, 6, 12 from a Video-KTR run's token log, Fig. 11 from its gradients.

Each `figN_*` function takes DataFrames and an output stem, writes `stem.png`, `stem.pdf` and `stem.csv` (exactly the
numbers plotted) and returns the plotted numbers as a DataFrame:

- Fig. 4  `fig4_pos`:        part-of-speech shares of the words each signal selects (spaCy; `videoktr.report.words`);
- Fig. 5  `fig5_overlap`:    the three token sets E, V, T: every region of their Venn diagram, pairwise Jaccard;
- Fig. 6  `fig6_wordclouds`: word clouds of selected vs unselected words;
- Fig. 11 `fig11_gradients`: losses, advantage variance, gradient norms and cosines over training steps;
- Fig. 12 `fig12_positions`: selection probability by relative position in the completion.

Fig. 2 (one coloured response) is in `videoktr.report.example_figure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from videoktr.report.plotting import pyplot, save
from videoktr.report.words import MARKUP_POS, SIGNALS, completion_keys, load_spacy, tag_words

LABEL = {"all": "all", "E": "entropy (E)", "V": "visual (V)", "T": "temporal (T)", "key": "union (key)"}
COLOR = {"all": "#999999", "E": "#E69F00", "V": "#0072B2", "T": "#009E73", "key": "#CC79A7"}


def signals_of(log: pd.DataFrame) -> list[str]:
    return [s for s in SIGNALS if f"selected_{s}" in log.columns]


def union_of(log: pd.DataFrame) -> pd.Series:
    """The union mask: the logged `key` column, or the OR of the signals when it is absent."""
    if "key" in log.columns:
        return log["key"].astype(bool)
    return log[[f"selected_{s}" for s in signals_of(log)]].astype(bool).any(axis=1)


def sample_completions(log: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """At most `n` completions of the log, drawn at random (reproducibly); all of them when n is None."""
    keys = completion_keys(log)
    ids = log[keys].drop_duplicates()
    if n is None or len(ids) <= n:
        return log
    chosen = ids.sample(n=n, random_state=seed)
    return log.merge(chosen, on=keys, how="inner")


# -- Fig. 4: POS ----------------------------------------------------------------------------------------------------
def pos_words(log: pd.DataFrame, spacy_model: str, max_completions: int | None = None) -> pd.DataFrame:
    """The word table of `videoktr.report.words.tag_words` for (a sample of) the log's completions."""
    return tag_words(sample_completions(log, max_completions), load_spacy(spacy_model))


def pos_shares(words: pd.DataFrame) -> pd.DataFrame:
    """Per signal (all words, E, V, T, union) and POS: word count and share of the signal's words."""
    groups = {"all": pd.Series(True, index=words.index)}
    groups |= {s: words[f"selected_{s}"] for s in SIGNALS if f"selected_{s}" in words.columns}
    groups["key"] = words["key"] if "key" in words.columns else \
        words[[c for c in words.columns if c.startswith("selected_")]].any(axis=1)
    order = words["pos"].value_counts().sort_index().sort_values(ascending=False, kind="stable").index
    rows = []
    for signal, mask in groups.items():
        counts = words.loc[mask.astype(bool), "pos"].value_counts().reindex(order, fill_value=0)
        total = int(counts.sum())
        for tag, count in counts.items():
            rows.append({"signal": signal, "pos": tag, "words": int(count), "signal_words": total,
                         "share": count / total if total else 0.0})
    return pd.DataFrame(rows, columns=["signal", "pos", "words", "signal_words", "share"])


def fig4_pos(words: pd.DataFrame, stem) -> pd.DataFrame:
    """Grouped bars: share of each POS among the words each signal selects, all words as the base rate."""
    plt = pyplot()
    table = pos_shares(words)
    tags = list(dict.fromkeys(table["pos"]))
    signals = list(dict.fromkeys(table["signal"]))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.62 * len(tags) + 2), 4.2))
    width = 0.8 / len(signals)
    x = np.arange(len(tags))
    for i, signal in enumerate(signals):
        t = table[table["signal"] == signal].set_index("pos").reindex(tags)
        n = int(t["signal_words"].iloc[0]) if len(t) else 0
        label = f"{'all words' if signal == 'all' else LABEL[signal]} (n={n})"
        ax.bar(x + (i - (len(signals) - 1) / 2) * width, 100 * t["share"], width, label=label, color=COLOR[signal],
               edgecolor="white", linewidth=0.4)
    ax.set_xticks(x, tags, rotation=45, ha="right")
    ax.set_xlabel("part of speech (spaCy universal tag; MARKUP = format tags such as <think>)")
    ax.set_ylabel("share of the signal's words (%)")
    ax.set_title("Fig. 4: part of speech of the words each signal selects")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, ncols=min(len(signals), 3), fontsize=9)
    return save(fig, stem, table)


# -- Fig. 5: overlap -------------------------------------------------------------------------------------------------
# Venn regions, each exclusive: "E&V only" = selected by E and V but not T.
REGIONS = {"E only": "E", "V only": "V", "T only": "T", "E&V only": "E&V", "E&T only": "E&T", "V&T only": "V&T",
           "E&V&T": "E&V&T"}


def overlap_table(log: pd.DataFrame) -> pd.DataFrame:
    """Token counts of every region of the E/V/T Venn diagram (exclusive), set sizes, union, pairwise Jaccard."""
    missing = [s for s in SIGNALS if f"selected_{s}" not in log.columns]
    if missing:
        raise SystemExit(f"Fig. 5 needs the three signals; this token log has no selected_{missing[0]} column")
    sel = {s: log[f"selected_{s}"].astype(bool).to_numpy() for s in SIGNALS}
    rows = [("tokens", "all", len(log))]
    rows += [("size", s, int(sel[s].sum())) for s in SIGNALS]
    for region, sets in REGIONS.items():
        inside = sets.split("&")
        m = np.ones(len(log), bool)
        for s in SIGNALS:
            m &= sel[s] if s in inside else ~sel[s]
        rows.append(("region", region, int(m.sum())))
    union = sel["E"] | sel["V"] | sel["T"]
    rows += [("region", "none", int((~union).sum())), ("union", "E|V|T", int(union.sum()))]
    n = max(len(log), 1)
    for a, b in (("E", "V"), ("E", "T"), ("V", "T")):
        inter, either = int((sel[a] & sel[b]).sum()), int((sel[a] | sel[b]).sum())
        rows.append(("jaccard", f"{a}&{b}", inter / either if either else 0.0))
        pa, pb = sel[a].sum() / n, sel[b].sum() / n  # expected Jaccard if the two sets were drawn independently
        rows.append(("jaccard_independent", f"{a}&{b}", pa * pb / (pa + pb - pa * pb) if pa + pb else 0.0))
    return pd.DataFrame(rows, columns=["metric", "sets", "value"]).astype({"value": float})


def fig5_overlap(log: pd.DataFrame, stem) -> pd.DataFrame:
    """Left: a three-circle Venn diagram with the token count of every region. Right: pairwise Jaccard."""
    from matplotlib.patches import Circle

    plt = pyplot()
    table = overlap_table(log)
    value = {(m, s): v for m, s, v in table.itertuples(index=False)}
    tokens = int(value[("tokens", "all")])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 4.6), gridspec_kw={"width_ratios": [1.15, 1]})
    centres = {"E": (-0.55, 0.32), "V": (0.55, 0.32), "T": (0.0, -0.63)}
    for s, (cx, cy) in centres.items():
        ax.add_patch(Circle((cx, cy), 1.0, facecolor=COLOR[s], alpha=0.22, edgecolor=COLOR[s], linewidth=2))
    for s, (x, y) in {"E": (-1.45, 1.3), "V": (1.45, 1.3), "T": (0.0, -1.85)}.items():
        ax.text(x, y, f"{LABEL[s]}\n{int(value[('size', s)])} tokens", ha="center", va="center", color=COLOR[s],
                fontweight="bold")
    spots = {"E only": (-1.05, 0.55), "V only": (1.05, 0.55), "T only": (0.0, -1.2), "E&V only": (0.0, 0.85),
             "E&T only": (-0.62, -0.45), "V&T only": (0.62, -0.45), "E&V&T": (0.0, 0.0)}
    for region, (x, y) in spots.items():
        count = int(value[("region", region)])
        ax.text(x, y, f"{count}\n{100 * count / max(tokens, 1):.1f}%", ha="center", va="center", fontsize=10)
    union = int(value[("union", "E|V|T")])
    ax.text(0, -2.35, f"union {union} of {tokens} tokens ({100 * union / max(tokens, 1):.1f}%); "
                      f"unselected {int(value[('region', 'none')])}", ha="center", va="center")
    ax.set_xlim(-2.3, 2.3), ax.set_ylim(-2.55, 1.65), ax.set_aspect("equal"), ax.axis("off")
    ax.set_title("Token sets: count (share of all tokens) per region")
    pairs = ["E&V", "E&T", "V&T"]
    x = np.arange(len(pairs))
    observed = [value[("jaccard", p)] for p in pairs]
    expected = [value[("jaccard_independent", p)] for p in pairs]
    bx.bar(x - 0.2, observed, 0.4, label="observed", color="#555555")
    bx.bar(x + 0.2, expected, 0.4, label="if independent (same set sizes)", color="white", edgecolor="#555555",
           hatch="//")
    for xi, v in zip(x - 0.2, observed):
        bx.text(xi, v, f"{v:.3f}", ha="center", va="bottom", fontsize=9)
    bx.set_xticks(x, [p.replace("&", " ∩ ") for p in pairs])
    bx.set_xlabel("pair of signals")
    bx.set_ylabel("Jaccard index |A∩B| / |A∪B|")
    bx.set_ylim(0, max(0.05, *observed, *expected) * 1.25)
    bx.set_title("Pairwise overlap")
    bx.legend(frameon=False, fontsize=9)
    bx.grid(axis="y", alpha=0.3)
    fig.suptitle("Fig. 5: overlap of the entropy, visual and temporal token sets")
    return save(fig, stem, table)


# -- Fig. 6: word clouds ---------------------------------------------------------------------------------------------
def cloud_frequencies(words: pd.DataFrame, signals=("key", *SIGNALS), max_words: int = 100) -> pd.DataFrame:
    """Per signal and group (selected / unselected): the `max_words` most frequent words (lower-cased; markup and
    pure punctuation left out) and their counts."""
    keep = (words["pos"] != MARKUP_POS) & words["word"].str.contains(r"\w", regex=True)
    w = words[keep].assign(word=words.loc[keep, "word"].str.lower())
    rows = []
    for signal in signals:
        column = signal if signal == "key" else f"selected_{signal}"
        if column not in w.columns:
            continue
        for group, mask in (("selected", w[column]), ("unselected", ~w[column])):
            counts = w.loc[mask, "word"].value_counts()
            counts = counts.sort_index().sort_values(ascending=False, kind="stable").head(max_words)
            rows += [{"signal": signal, "group": group, "word": k, "count": int(v)} for k, v in counts.items()]
    return pd.DataFrame(rows, columns=["signal", "group", "word", "count"])


def fig6_wordclouds(words: pd.DataFrame, stem, signals=("key", *SIGNALS), max_words: int = 100,
                    seed: int = 0) -> pd.DataFrame:
    """One row per signal: a word cloud of the words it selects (left) and of those it leaves (right)."""
    from wordcloud import WordCloud

    plt = pyplot()
    table = cloud_frequencies(words, signals, max_words)
    rows = list(dict.fromkeys(table["signal"])) or list(signals[:1])
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 2.9 * len(rows)), squeeze=False)
    for r, signal in enumerate(rows):
        for c, group in enumerate(("selected", "unselected")):
            ax = axes[r][c]
            freq = table[(table["signal"] == signal) & (table["group"] == group)]
            freq = dict(zip(freq["word"], freq["count"]))
            colour = COLOR[signal] if group == "selected" else "#606060"
            if freq:
                cloud = WordCloud(width=700, height=330, background_color="white", random_state=seed,
                                  max_words=max_words, prefer_horizontal=0.95, relative_scaling=0.5,
                                  color_func=lambda *a, colour=colour, **k: colour)
                ax.imshow(cloud.generate_from_frequencies(freq), interpolation="bilinear")
            else:
                ax.text(0.5, 0.5, "no words", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(True), spine.set_color("#cccccc")
            n = sum(freq.values())
            ax.set_title(f"{LABEL[signal]}: {group} words (top {len(freq)}, {n} occurrences)", color=colour)
    fig.suptitle("Fig. 6: words selected vs not selected (size = frequency)")
    fig.tight_layout()
    return save(fig, stem, table)


# -- Fig. 11: gradient diagnostics -----------------------------------------------------------------------------------
def gradient_table(grads: pd.DataFrame) -> pd.DataFrame:
    """The diagnostics per step, sorted; a cosine with a zero gradient is undefined (NaN), not 0."""
    need = ["step", "loss_full", "loss_selected", "loss_residual", "grad_norm_full", "grad_norm_selected",
            "grad_norm_residual", "cos_selected_full", "cos_residual_full", "advantage_variance"]
    missing = [c for c in need if c not in grads.columns]
    if missing:
        raise SystemExit(f"gradients table lacks columns {missing}")
    t = grads[need].sort_values("step", kind="stable").reset_index(drop=True).astype(float)
    t["step"] = t["step"].astype(int)
    t.loc[(t["grad_norm_full"] == 0) | (t["grad_norm_selected"] == 0), "cos_selected_full"] = np.nan
    t.loc[(t["grad_norm_full"] == 0) | (t["grad_norm_residual"] == 0), "cos_residual_full"] = np.nan
    return t


def fig11_gradients(grads: pd.DataFrame, stem) -> pd.DataFrame:
    """2x2 panels over training steps: losses, advantage variance, gradient norms, cosine alignment."""
    plt = pyplot()
    t = gradient_table(grads)
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.8), sharex=True)
    part = {"full": ("all tokens", "#333333"), "selected": ("selected (key) tokens", COLOR["key"]),
            "residual": ("residual (unselected) tokens", "#56B4E9")}
    style = dict(marker="o", markersize=3.5, linewidth=1.5)
    for name, (label, colour) in part.items():
        axes[0][0].plot(t["step"], t[f"loss_{name}"], label=label, color=colour, **style)
        axes[1][0].plot(t["step"], t[f"grad_norm_{name}"], label=label, color=colour, **style)
    axes[0][0].set(ylabel="loss", title="Loss by token subset")
    axes[0][1].plot(t["step"], t["advantage_variance"], color="#333333", label="per-sequence advantage", **style)
    axes[0][1].set(ylabel="variance", title="Advantage variance in the batch")
    axes[1][0].set(ylabel="L2 norm", title="Gradient norm (final decoder layer)")
    axes[1][1].plot(t["step"], t["cos_selected_full"], label="selected vs all", color=COLOR["key"], **style)
    axes[1][1].plot(t["step"], t["cos_residual_full"], label="residual vs all", color="#56B4E9", **style)
    axes[1][1].axhline(0, color="#999999", linewidth=0.8, linestyle="--")
    axes[1][1].set(ylabel="cosine similarity", title="Gradient alignment with the all-token gradient",
                   ylim=(-1.05, 1.05))
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    for ax in (axes[0][1], axes[1][1]):
        ax.legend(frameon=False, fontsize=9)
    for ax in axes[1]:
        ax.set_xlabel("training step")
    fig.suptitle("Fig. 11: gradient diagnostics over training (a cosine with a zero gradient is undefined: not drawn)")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncols=3, frameon=False,
               title="loss and gradient norm over:", fontsize=9, title_fontsize=9)
    return save(fig, stem, t)


# -- Fig. 12: position -----------------------------------------------------------------------------------------------
def position_table(log: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Selection probability per relative-position bin: token k of a completion of n tokens falls in bin
    floor(bins * k / n), i.e. relative position k/n in [0, 1)."""
    keys = completion_keys(log)
    log = log.sort_values([*keys, "position"], kind="stable")
    rank = log.groupby(keys, sort=False).cumcount().to_numpy()
    length = log.groupby(keys, sort=False)["position"].transform("size").to_numpy()
    b = np.minimum(bins * rank // length, bins - 1)
    columns = {s: log[f"selected_{s}"].astype(bool).to_numpy() for s in signals_of(log)}
    columns["key"] = union_of(log).to_numpy()
    tokens = np.bincount(b, minlength=bins)
    rows = []
    for signal, sel in columns.items():
        selected = np.bincount(b, weights=sel, minlength=bins).astype(int)
        for i in range(bins):
            rows.append({"signal": signal, "bin": i, "bin_start": i / bins, "bin_end": (i + 1) / bins,
                         "tokens": int(tokens[i]), "selected": int(selected[i]),
                         "probability": selected[i] / tokens[i] if tokens[i] else np.nan})
    return pd.DataFrame(rows)


def fig12_positions(log: pd.DataFrame, stem, bins: int = 10) -> pd.DataFrame:
    """Lines: per signal and union, the probability that a token in each relative-position bin is updated."""
    plt = pyplot()
    table = position_table(log, bins)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for signal in dict.fromkeys(table["signal"]):
        t = table[table["signal"] == signal]
        ax.plot((t["bin_start"] + t["bin_end"]) / 2, 100 * t["probability"], marker="o", label=LABEL[signal],
                color=COLOR[signal], linewidth=2.2 if signal == "key" else 1.6,
                linestyle="-" if signal == "key" else "--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(5.0, 100 * np.nanmax(table["probability"].to_numpy(dtype=float), initial=0) * 1.15))
    ax.set_xlabel("relative position in the completion (bin centre; 0 = first token, 1 = last)")
    ax.set_ylabel("tokens selected for update (%)")
    ax.set_title(f"Fig. 12: update probability by position ({bins} bins, "
                 f"{int(table[table['signal'] == 'key']['tokens'].sum())} tokens)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9, ncols=2)
    return save(fig, stem, table)

