"""The paper's token-level figures, from a Video-KTR run's token log and gradient diagnostics only.

Each `figN_*` function takes DataFrames and an output stem, writes `stem.png`, `stem.pdf` and `stem.csv` (exactly the
numbers plotted; Fig. 2 also `stem.html`) and returns the plotted numbers as a DataFrame:

- Fig. 2  `fig2_example`:    one response, its tokens coloured by the signal(s) that selected them;
- Fig. 4  `fig4_pos`:        part-of-speech shares of the words each signal selects (spaCy; see `videoktr.report.words`);
- Fig. 5  `fig5_overlap`:    the three token sets E, V, T: every region of their Venn diagram, pairwise Jaccard;
- Fig. 6  `fig6_wordclouds`: word clouds of selected vs unselected words;
- Fig. 11 `fig11_gradients`: losses, advantage variance, gradient norms and cosines over training steps;
- Fig. 12 `fig12_positions`: selection probability by relative position in the completion;

and, from evaluation summaries beside the paper's numbers (config/reference/paper_tables.csv; the grid of each in
`videoktr.report.grid`): Fig. 3a (RL methods under one recipe), Fig. 3b (per subtask), Figs. 7-10 (token weighting,
distance, update ratio, perturbations), each by `accuracy_figure` / `fig3b_subtasks`.

CLI (what the Snakemake rules call): `python -m videoktr.report.figures fig4 --token-log DIR --out STEM --spacy-model M`,
one subcommand per figure, or `all --token-log DIR --gradients CSV --out-dir DIR`.
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from videoktr.report import words as posmod

logger = logging.getLogger(__name__)

SIGNALS = ("E", "V", "T")
LABEL = {"all": "all", "E": "entropy (E)", "V": "visual (V)", "T": "temporal (T)", "key": "union (key)"}
COLOR = {"all": "#999999", "E": "#E69F00", "V": "#0072B2", "T": "#009E73", "key": "#CC79A7"}
# Fig. 2 backgrounds: light tints of the signal colours; "several" = selected by two or three signals.
CATEGORY_COLOR = {"V": "#8CC3EA", "T": "#84D6BE", "E": "#F6CB7C", "several": "#E3A6CC", "none": None}
CATEGORY_LABEL = {"V": "visual (V) only", "T": "temporal (T) only", "E": "entropy (E) only",
                  "several": "two or three signals", "none": "not selected"}
PART = re.compile(r"step-(\d+)-rank(\d+)\.parquet$")


# -- inputs ----------------------------------------------------------------------------------------------------------
def load_token_log(path, columns: list[str] | None = None) -> pd.DataFrame:
    """A token log: a folder of `step-XXXXXX-rankR.parquet` parts (a `rank` column is added) or one Parquet file."""
    path = Path(path)
    parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not parts:
        raise SystemExit(f"token log {path}: no Parquet parts")
    frames = []
    for part in parts:
        frame = pd.read_parquet(part, columns=columns)
        m = PART.search(part.name)
        if m and "rank" not in frame.columns:
            frame["rank"] = int(m.group(2))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def signals_of(log: pd.DataFrame) -> list[str]:
    return [s for s in SIGNALS if f"selected_{s}" in log.columns]


def union_of(log: pd.DataFrame) -> pd.Series:
    """The union mask: the logged `key` column, or the OR of the signals when it is absent."""
    if "key" in log.columns:
        return log["key"].astype(bool)
    return log[[f"selected_{s}" for s in signals_of(log)]].astype(bool).any(axis=1)


def sample_completions(log: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """At most `n` completions of the log, drawn at random (reproducibly); all of them when n is None."""
    keys = posmod.completion_keys(log)
    ids = log[keys].drop_duplicates()
    if n is None or len(ids) <= n:
        return log
    chosen = ids.sample(n=n, random_state=seed)
    return log.merge(chosen, on=keys, how="inner")


# -- output ----------------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.spines.top": False,
                         "axes.spines.right": False, "figure.dpi": 100})
    return plt


def _save(fig, stem, table: pd.DataFrame) -> pd.DataFrame:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(f"{stem}.png", dpi=150, bbox_inches="tight")
    fig.savefig(f"{stem}.pdf", bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
    table.to_csv(f"{stem}.csv", index=False)
    _plt().close(fig)
    return table


# -- Fig. 4: POS ----------------------------------------------------------------------------------------------------
def pos_words(log: pd.DataFrame, spacy_model: str, max_completions: int | None = None) -> pd.DataFrame:
    """The word table of `videoktr.report.words.tag_words` for (a sample of) the log's completions."""
    return posmod.tag_words(sample_completions(log, max_completions), posmod.load_spacy(spacy_model))


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
    plt = _plt()
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
    return _save(fig, stem, table)


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

    plt = _plt()
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
    return _save(fig, stem, table)


# -- Fig. 6: word clouds ---------------------------------------------------------------------------------------------
def cloud_frequencies(words: pd.DataFrame, signals=("key", *SIGNALS), max_words: int = 100) -> pd.DataFrame:
    """Per signal and group (selected / unselected): the `max_words` most frequent words (lower-cased; markup and
    pure punctuation left out) and their counts."""
    keep = (words["pos"] != posmod.MARKUP_POS) & words["word"].str.contains(r"\w", regex=True)
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

    plt = _plt()
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
    return _save(fig, stem, table)


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
    plt = _plt()
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
    return _save(fig, stem, t)


# -- Fig. 12: position -----------------------------------------------------------------------------------------------
def position_table(log: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Selection probability per relative-position bin: token k of a completion of n tokens falls in bin
    floor(bins * k / n), i.e. relative position k/n in [0, 1)."""
    keys = posmod.completion_keys(log)
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
    plt = _plt()
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
    return _save(fig, stem, table)


# -- Fig. 2: one coloured response ----------------------------------------------------------------------------------
def token_category(selected: dict[str, bool]) -> str:
    """V, T or E when exactly that signal selected the token, `several` for two or three, else `none`."""
    hits = [s for s in ("V", "T", "E") if selected.get(s)]
    return hits[0] if len(hits) == 1 else ("several" if hits else "none")


def categories(log: pd.DataFrame) -> np.ndarray:
    """`token_category` of every row of a token log."""
    sel = {s: log[f"selected_{s}"].astype(bool).to_numpy() for s in signals_of(log)}
    n = sum(v.astype(int) for v in sel.values()) if sel else np.zeros(len(log), int)
    out = np.full(len(log), "none", dtype=object)
    for s, v in sel.items():
        out[v & (n == 1)] = s
    out[n > 1] = "several"
    return out


def pick_example(log: pd.DataFrame) -> tuple:
    """A representative completion of the last step: the most Fig. 2 colours used, then the length closest to
    the median, then the first key."""
    keys = posmod.completion_keys(log)
    last = log[log["step"] == log["step"].max()] if "step" in log.columns else log
    cats = last.assign(category=categories(last))
    stats = cats.groupby(keys).agg(n=("position", "size"),
                                   colours=("category", lambda c: len(set(c) - {"none"}))).reset_index()
    stats["distance"] = (stats["n"] - stats["n"].median()).abs()
    best = stats.sort_values(["colours", "distance", *keys], ascending=[False, True, *[True] * len(keys)]).iloc[0]
    return tuple(best[k] for k in keys)


def example_table(log: pd.DataFrame, step: int | None = None, sample_id: str | None = None) -> pd.DataFrame:
    """The tokens of one completion (the given one, or `pick_example`) with their category and colour."""
    keys = posmod.completion_keys(log)
    if sample_id is None:
        key = pick_example(log)
    else:
        rows = log[(log["sample_id"] == sample_id) & ((log["step"] == step) if step is not None else True)]
        if rows.empty:
            raise SystemExit(f"no completion {sample_id!r} at step {step} in the token log")
        key = tuple(rows.iloc[0][k] for k in keys)
    mask = np.ones(len(log), bool)
    for k, v in zip(keys, key):
        mask &= (log[k] == v).to_numpy()
    g = log[mask].sort_values("position").drop_duplicates("position")
    sig = signals_of(g)
    cols = [*keys, "position", "token_str", *[f"score_{s}" for s in sig if f"score_{s}" in g.columns],
            *[f"selected_{s}" for s in sig]]
    t = g[cols].reset_index(drop=True)
    t["key"] = union_of(g).to_numpy()
    t["category"] = categories(t)
    t["colour"] = t["category"].map(lambda c: CATEGORY_COLOR[c] or "")
    return t


def layout_tokens(pieces: list[str], width: int) -> list[tuple[int, int, int, str]]:
    """Monospace layout of pieces in lines of `width` characters: (piece index, line, column, text shown).

    A piece that would overflow starts a new line (its leading spaces dropped there); a newline inside a piece breaks
    the line; a piece longer than a line is split over lines.
    """
    out, line, col = [], 0, 0
    for i, piece in enumerate(pieces):
        for j, chunk in enumerate(piece.replace("\t", "    ").split("\n")):
            if j:
                line, col = line + 1, 0
            if col and col + len(chunk) > width:
                line, col, chunk = line + 1, 0, chunk.lstrip(" ")
            if col == 0 and not chunk.strip() and out and out[-1][1] != line:
                chunk = ""  # no run of spaces at the start of a wrapped line
            while len(chunk) > width:
                out.append((i, line, col, chunk[:width - col]))
                chunk, line, col = chunk[width - col:], line + 1, 0
            if chunk:
                out.append((i, line, col, chunk))
                col += len(chunk)
    return out


def example_html(t: pd.DataFrame) -> str:
    """The response as HTML: one span per token, coloured by category, scores in the tooltip, and a legend."""
    sig = [s for s in SIGNALS if f"selected_{s}" in t.columns]
    spans = []
    for _, r in t.iterrows():
        text = str(r["token_str"])
        lead = text[:len(text) - len(text.lstrip(" "))]
        body = text[len(lead):]
        tip = f"position {r['position']}; " + "; ".join(
            f"{s}: score {r[f'score_{s}']:.4g}{' selected' if r[f'selected_{s}'] else ''}" for s in sig
            if f"score_{s}" in t.columns)
        style = f' style="background:{r["colour"]}"' if r["colour"] else ""
        spans.append(html.escape(lead) + f'<span class="tok {r["category"]}"{style} title="{html.escape(tip)}">'
                     f"{html.escape(body)}</span>")
    legend = " ".join(f'<span class="tok" style="background:{CATEGORY_COLOR[c] or "#ffffff"};'
                      f'border:1px solid #bbb">{html.escape(CATEGORY_LABEL[c])}</span>' for c in CATEGORY_COLOR)
    keys = {k: t.iloc[0][k] for k in ("run", "step", "sample_id") if k in t.columns and len(t)}
    title = ", ".join(f"{k} {v}" for k, v in keys.items())
    n_key = int(t["key"].sum())
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Fig. 2: key tokens of one response</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            ".tok{border-radius:3px;padding:0 1px}"
            "pre{white-space:pre-wrap;font-family:monospace;font-size:15px;line-height:1.7}</style></head><body>\n"
            f"<h3>Fig. 2: key tokens of one response ({html.escape(title)}): "
            f"{n_key} of {len(t)} tokens selected</h3>\n"
            f"<p>{legend}</p>\n<pre>{''.join(spans)}</pre>\n"
            "<p>Hover over a token for its scores.</p>\n</body></html>\n")


def fig2_example(log: pd.DataFrame, stem, step: int | None = None, sample_id: str | None = None,
                 width: int = 80) -> pd.DataFrame:
    """One response with each token's background coloured by the signal(s) that selected it (PNG, PDF, HTML)."""
    from matplotlib.patches import Patch, Rectangle

    plt = _plt()
    t = example_table(log, step, sample_id)
    placed = layout_tokens([str(s) for s in t["token_str"]], width)
    lines = (placed[-1][1] + 1) if placed else 1
    size = 11  # points; DejaVu Sans Mono advances 0.602 em per character
    char_w, line_h = 0.602 * size / 72, 1.75 * size / 72
    fig_w, text_h, top, bottom = width * char_w + 0.6, lines * line_h, 0.45, 0.45
    fig_h = text_h + top + bottom
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes([0.3 / fig_w, bottom / fig_h, width * char_w / fig_w, text_h / fig_h])
    ax.set_xlim(0, width), ax.set_ylim(lines, 0), ax.axis("off")
    for i, line, col, text in placed:
        colour = t["colour"].iloc[i]
        lead = len(text) - len(text.lstrip(" "))
        body = len(text.rstrip(" ")) - lead
        if colour and body > 0:
            ax.add_patch(Rectangle((col + lead, line + 0.08), body, 0.84, facecolor=colour, edgecolor="none"))
        ax.text(col, line + 0.5, text, family="DejaVu Sans Mono", fontsize=size, va="center", ha="left",
                parse_math=False)
    cats = [c for c in CATEGORY_COLOR if c != "none"]
    handles = [Patch(facecolor=CATEGORY_COLOR[c], label=CATEGORY_LABEL[c]) for c in cats]
    handles.append(Patch(facecolor="white", edgecolor="#999999", label=CATEGORY_LABEL["none"]))
    fig.legend(handles=handles, loc="lower center", ncols=len(handles), frameon=False, fontsize=9,
               bbox_to_anchor=(0.5, 0.0))
    ident = ", ".join(f"{k} {t.iloc[0][k]}" for k in ("step", "sample_id") if k in t.columns and len(t))
    fig.text(0.5, 1 - 0.1 / fig_h, f"Fig. 2: key tokens of one response ({ident}): "
             f"{int(t['key'].sum())} of {len(t)} tokens selected", ha="center", va="top", fontsize=11)
    Path(f"{stem}.html").parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.html").write_text(example_html(t), encoding="utf-8")
    return _save(fig, stem, t)


# -- Figs. 3a, 3b, 7-10: accuracy from evaluation summaries ----------------------------------------------------------
ACCURACY_FIGURES = ("fig3a", "fig3b", "fig7", "fig8", "fig9", "fig10")
OURS_COLOR = "#0072B2"


def accuracy_figure(table: pd.DataFrame, stem, title: str, ours_note: str, paper_note: str) -> pd.DataFrame:
    """Left: our accuracy per row (mean over the benchmarks as bars, each benchmark as a dot); right: the paper's
    numbers for the same rows.  `table` is `videoktr.report.tables.accuracy_table`'s output; the CSV is that table."""
    plt = _plt()
    t = table.reset_index()
    bench = [c for c in t.columns if c not in ("method", "run", "mean") and not c.startswith("paper ")]
    paper = [c for c in t.columns if c.startswith("paper ")]
    x = np.arange(len(t))
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 1.5 * len(t) + 4), 4.4))
    ax = axes[0]
    ax.bar(x, t["mean"], 0.6, color=OURS_COLOR, label="mean over benchmarks")
    markers = "os^Dv<>"
    for i, b in enumerate(bench):
        ax.scatter(x, t[b], marker=markers[i % len(markers)], color="black", s=18, zorder=3, label=b)
    for xi, (m, run) in enumerate(zip(t["mean"], t["run"])):
        ax.text(xi, 0 if np.isnan(m) else m, "not run" if not run else f"{m:.1f}", ha="center", va="bottom",
                fontsize=8, color="#555555")
    ax.set_title(textwrap.fill(f"ours: {ours_note}", 70), fontsize=9)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 122)  # room for the legend above the bars
    ax.legend(frameon=False, fontsize=7, loc="upper center", ncols=len(bench) + 1)
    ax = axes[1]
    if paper:
        width = 0.8 / len(paper)
        for i, c in enumerate(paper):
            shade = "#444444" if c == "paper Avg" else plt.get_cmap("Greys")(0.2 + 0.35 * i / max(1, len(paper)))
            ax.bar(x + (i - (len(paper) - 1) / 2) * width, t[c], width, color=shade, label=c[len("paper "):])
        values = t[paper].to_numpy(dtype=float)
        if np.isfinite(values).any():  # the paper's differences are a few points: zoom in on them
            lo, hi = np.nanmin(values), np.nanmax(values)
            ax.set_ylim(max(0, lo - 0.25 * (hi - lo + 1) - 1), hi + 0.25 * (hi - lo + 1) + 0.5)
            paper_note += " (y axis zoomed)"
        ax.legend(frameon=False, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no paper numbers for this figure\nin config/reference/paper_tables.csv",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_title(textwrap.fill(f"paper: {paper_note}", 70), fontsize=9)
    ax.set_ylabel("accuracy (%)")
    for ax in axes:
        ax.set_xticks(x, t["method"], rotation=30, ha="right")
        ax.set_xlabel("method (the paper's label; ours: config tables.rows)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, stem, t)


def subtask_table(summaries: pd.DataFrame, rows: dict[str, str], benchmarks: list[str], frames: int) -> pd.DataFrame:
    """Long table: method, run, benchmark, subtask, questions, accuracy (%) from each summary's `subtasks`."""
    out = []
    for label, run in rows.items():
        for b in benchmarks:
            hit = summaries[(summaries["model"] == run) & (summaries["benchmark"] == b) &
                            (summaries["frames"] == frames)]
            if hit.empty:
                raise SystemExit(f"no evaluation summary for run {run!r} on {b} at {frames} frames among the inputs")
            for sub, v in hit["subtasks"].iloc[0].items():
                out.append({"method": label, "run": run, "benchmark": b, "subtask": sub,
                            "questions": v["questions"], "accuracy": 100 * v["accuracy"]})
    return pd.DataFrame(out)


def fig3b_subtasks(t: pd.DataFrame, stem, title: str, ours_note: str) -> pd.DataFrame:
    """Grouped bars: x = subtask (benchmark / subtask), one bar per method."""
    plt = _plt()
    t = t.copy()
    t["group"] = t["benchmark"] + " / " + t["subtask"]
    groups = list(dict.fromkeys(t["group"]))
    methods = list(dict.fromkeys(t["method"]))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * len(groups) * max(1, len(methods)) / 3 + 3), 4.4))
    width = 0.8 / len(methods)
    x = np.arange(len(groups))
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        v = t[t["method"] == m].set_index("group").reindex(groups)
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, v["accuracy"], width, label=m, color=cmap(i))
    n = t.groupby("group", sort=False)["questions"].first().reindex(groups)
    ax.set_xticks(x, [f"{g}\n(n={int(k)})" for g, k in zip(groups, n)], rotation=0)
    ax.set_xlabel("subtask (benchmark / subtask; n = questions)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(textwrap.fill(f"{title}. Ours: {ours_note}; the paper's per-type values are not in "
                               "config/reference", 110), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, fontsize=9, ncols=min(4, len(methods)))
    fig.tight_layout()
    return _save(fig, stem, t.drop(columns="group"))


def build_accuracy(name: str, a) -> None:
    """Figs. 3a, 3b, 7-10 from the summaries given on the command line and the config's grid."""
    import json

    from videoktr.report import grid
    from videoktr.report import tables

    config = json.loads(a.cfg)
    try:
        grid.check(config, name)
    except grid.GridError as e:
        raise SystemExit(str(e)) from None
    summaries = tables.load_summaries(a.summaries)
    bench, frames = grid.benchmarks(config, name), grid.frames(config, name)[0]
    tiny = any(b.startswith("tiny_") for b in bench)
    ours_note = f"{', '.join(bench)} at {frames} frames" + (" (tiny world: not the paper's benchmarks)" if tiny else "")
    title = grid.TARGETS[name].title
    if name == "fig3b":
        fig3b_subtasks(subtask_table(summaries, grid.rows(config, name), bench, frames), a.out, title, ours_note)
        return
    paper = tables.paper_rows(tables.load_reference(a.reference), name)
    t = tables.accuracy_table(summaries, grid.rows(config, name), bench, frames, paper)
    stated = sorted({f for f in paper["frames"] if f}, key=float)
    paper_note = "Qwen2.5-VL-7B on the paper's benchmarks" + (f" at {'/'.join(stated)} frames" if stated else "")
    accuracy_figure(t, a.out, title, ours_note, paper_note)


# -- CLI -------------------------------------------------------------------------------------------------------------
def build(name: str, a) -> None:
    """Build one figure from the CLI arguments `a` into the stem `a.out`."""
    stem = a.out
    if name == "fig11":
        if not Path(a.gradients).exists():
            raise SystemExit(f"{a.gradients}: no gradient diagnostics (train.diagnostics_every is 0?)")
        fig11_gradients(pd.read_csv(a.gradients), stem)
        return
    log = load_token_log(a.token_log)
    if name in ("fig4", "fig6"):
        words = pos_words(log, a.spacy_model, a.max_completions)
        (fig4_pos(words, stem) if name == "fig4" else fig6_wordclouds(words, stem))
    elif name == "fig5":
        fig5_overlap(log, stem)
    elif name == "fig12":
        fig12_positions(log, stem, a.bins)
    elif name == "fig2":
        fig2_example(log, stem, a.step, a.sample_id)
    logger.info("%s written to %s.{png,pdf,csv}", name, stem)


def build_all(a) -> None:
    out = Path(a.out_dir)
    log = load_token_log(a.token_log)
    words = pos_words(log, a.spacy_model, a.max_completions)
    fig2_example(log, out / "fig2", a.step, a.sample_id)
    fig4_pos(words, out / "fig4")
    fig5_overlap(log, out / "fig5")
    fig6_wordclouds(words, out / "fig6")
    fig12_positions(log, out / "fig12", a.bins)
    if a.gradients:
        fig11_gradients(pd.read_csv(a.gradients), out / "fig11")
    logger.info("figures written to %s", out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m videoktr.report.figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="figure", required=True)
    for name in ACCURACY_FIGURES:
        s = sub.add_parser(name, help="from evaluation summaries, the paper's numbers beside")
        s.add_argument("--cfg", required=True, help="JSON of the config sections tables, eval, runs")
        s.add_argument("--summaries", nargs="+", required=True)
        s.add_argument("--reference", required=True, help="the paper's numbers (paper_tables.csv)")
        s.add_argument("--out", required=True, help="output stem: writes STEM.png, STEM.pdf, STEM.csv")
    for name in ("fig2", "fig4", "fig5", "fig6", "fig11", "fig12", "all"):
        s = sub.add_parser(name)
        if name != "fig11":
            s.add_argument("--token-log", required=True, help="folder of token-log Parquet parts (or one file)")
        if name in ("fig11", "all"):
            s.add_argument("--gradients", required=name == "fig11", help="gradients.csv of the run")
        if name == "all":
            s.add_argument("--out-dir", required=True)
        else:
            s.add_argument("--out", required=True, help="output stem: writes STEM.png, STEM.pdf, STEM.csv")
        if name in ("fig4", "fig6", "all"):
            s.add_argument("--spacy-model", default="en_core_web_sm", help="spaCy package name")
            s.add_argument("--max-completions", type=int, default=None,
                           help="tag a random sample of at most this many completions (default: all)")
        if name in ("fig12", "all"):
            s.add_argument("--bins", type=int, default=10)
        if name in ("fig2", "all"):
            s.add_argument("--step", type=int, default=None, help="with --sample-id: the response to show")
            s.add_argument("--sample-id", default=None, help="default: a representative one of the last step")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = parser().parse_args(argv)
    if a.figure in ACCURACY_FIGURES:
        build_accuracy(a.figure, a)
    elif a.figure == "all":
        build_all(a)
    else:
        build(a.figure, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
