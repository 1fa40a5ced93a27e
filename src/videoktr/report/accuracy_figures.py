"""The paper's accuracy figures from evaluation summaries, the paper's numbers beside (config/reference/
paper_tables.csv): Fig. 3a (RL methods under one recipe), Figs. 7-10 (token weighting, distance, update ratio,
perturbations) by `accuracy_figure`, Fig. 3b (per subtask) by `fig3b_subtasks`; the grid of each in
`videoktr.report.grid`, the numbers from `videoktr.report.tables`."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd

from videoktr.report import grid, tables
from videoktr.report.plotting import pyplot, save

ACCURACY_FIGURES = ("fig3a", "fig3b", "fig7", "fig8", "fig9", "fig10")
OURS_COLOR = "#0072B2"


def accuracy_figure(table: pd.DataFrame, stem, title: str, ours_note: str, paper_note: str) -> pd.DataFrame:
    """Left: our accuracy per row (mean over the benchmarks as bars, each benchmark as a dot); right: the paper's
    numbers for the same rows.  `table` is `videoktr.report.tables.accuracy_table`'s output; the CSV is that table."""
    plt = pyplot()
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
    return save(fig, stem, t)


def subtask_table(summaries: pd.DataFrame, rows: dict[str, str], benchmarks: list[str], frames: int) -> pd.DataFrame:
    """Long table: method, run, benchmark, subtask, questions, accuracy (%) from each summary's `subtasks`."""
    out = []
    for label, run in rows.items():
        for b in benchmarks:
            for sub, v in tables.summary_of(summaries, run, b, frames)["subtasks"].items():
                out.append({"method": label, "run": run, "benchmark": b, "subtask": sub,
                            "questions": v["questions"], "accuracy": 100 * v["accuracy"]})
    return pd.DataFrame(out)


def fig3b_subtasks(t: pd.DataFrame, stem, title: str, ours_note: str) -> pd.DataFrame:
    """Grouped bars: x = subtask (benchmark / subtask), one bar per method."""
    plt = pyplot()
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
    return save(fig, stem, t.drop(columns="group"))


def build_accuracy(name: str, a) -> None:
    """Figs. 3a, 3b, 7-10 from the summaries given on the command line and the config's grid."""
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

