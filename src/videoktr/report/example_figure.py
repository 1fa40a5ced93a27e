"""Fig. 2 of the paper: one response of a Video-KTR run's token log, each token coloured by the signal(s) that
selected it; `fig2_example` writes `stem.png`, `stem.pdf`, `stem.html` (scores in tooltips) and `stem.csv`."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from videoktr.report.plotting import pyplot, save
from videoktr.report.token_figures import signals_of, union_of
from videoktr.report.words import SIGNALS, completion_keys

# Fig. 2 backgrounds: light tints of the signal colours; "several" = selected by two or three signals.
CATEGORY_COLOR = {"V": "#8CC3EA", "T": "#84D6BE", "E": "#F6CB7C", "several": "#E3A6CC", "none": None}
CATEGORY_LABEL = {"V": "visual (V) only", "T": "temporal (T) only", "E": "entropy (E) only",
                  "several": "two or three signals", "none": "not selected"}


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
    keys = completion_keys(log)
    last = log[log["step"] == log["step"].max()] if "step" in log.columns else log
    cats = last.assign(category=categories(last))
    stats = cats.groupby(keys).agg(n=("position", "size"),
                                   colours=("category", lambda c: len(set(c) - {"none"}))).reset_index()
    stats["distance"] = (stats["n"] - stats["n"].median()).abs()
    best = stats.sort_values(["colours", "distance", *keys], ascending=[False, True, *[True] * len(keys)]).iloc[0]
    return tuple(best[k] for k in keys)


def example_table(log: pd.DataFrame, step: int | None = None, sample_id: str | None = None) -> pd.DataFrame:
    """The tokens of one completion (the given one, or `pick_example`) with their category and colour."""
    keys = completion_keys(log)
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

    plt = pyplot()
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
    return save(fig, stem, t)

