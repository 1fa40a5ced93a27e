"""The paper's accuracy figures from evaluation summaries, the paper's numbers beside (config/reference/
paper_tables.csv): Fig. 3a (RL methods under one recipe), Figs. 7-10 (token weighting, distance, update ratio,
perturbations) by `accuracy_figure`, Fig. 3b (per subtask) by `fig3b_subtasks`; the grid of each in
`videoktr.report.grid`, the numbers from `videoktr.report.tables`."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd

from videoktr.report import grid, summaries as inputs, tables, uncertainty
from videoktr.report.cells import honesty_notes
from videoktr.report.table_output import accuracy_columns
from videoktr.report.plotting import pyplot, save

ACCURACY_FIGURES = ("fig3a", "fig3b", "fig7", "fig8", "fig9", "fig10")
OURS_COLOR = "#0072B2"


def _yerr(values, lo, hi) -> np.ndarray:
    """Asymmetric error bars from an interval; 0 where there is none (no per-question scores)."""
    v, lo, hi = (np.asarray(x, dtype=float) for x in (values, lo, hi))
    return np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0)


def accuracy_figure(table: pd.DataFrame, stem, title: str, ours_note: str, paper_note: str,
                    notes: list[str] = ()) -> pd.DataFrame:
    """Left: our accuracy per row (mean over the benchmarks as bars, each benchmark as a dot), each with its 95%
    bootstrap interval as an error bar (none without per-question scores); right: the paper's numbers for the same
    rows.  `table` is `videoktr.report.tables.accuracy_table`'s output; the CSV is that table (intervals, errors and
    paired differences included).  `notes` (errors, mixed question sets) are printed under the figure."""
    plt = pyplot()
    t = table.reset_index()
    ours = accuracy_columns(table)
    if ours:
        bench = [c for c in ours if c != "mean"]
    else:  # a table without intervals (built elsewhere): its accuracy columns by name
        bench = [c for c in t.columns if c not in ("method", "run", "mean") and not c.startswith("paper ")]
    paper = [c for c in t.columns if c.startswith("paper ")]
    x = np.arange(len(t))
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 1.5 * len(t) + 4), 4.4))
    ax = axes[0]
    ax.bar(x, t["mean"], 0.6, color=OURS_COLOR, label="mean over benchmarks (95% CI)")
    if "mean_lo" in t:
        ax.errorbar(x, t["mean"], yerr=_yerr(t["mean"], t["mean_lo"], t["mean_hi"]), fmt="none", ecolor="#222222",
                    elinewidth=1.2, capsize=4, zorder=4)
    markers = "os^Dv<>"
    # side by side, none at the centre (the mean's error bar), so the error bars do not overlap
    slots = sorted(sorted((k for k in range(-len(bench), len(bench) + 1) if k), key=abs)[:len(bench)])
    step = 0.25 / max([1, *map(abs, slots)])
    for i, b in enumerate(bench):
        xb = x + slots[i] * step
        ax.scatter(xb, t[b], marker=markers[i % len(markers)], color="black", s=18, zorder=5, label=b)
        if f"{b}_lo" in t:
            ax.errorbar(xb, t[b], yerr=_yerr(t[b], t[f"{b}_lo"], t[f"{b}_hi"]), fmt="none", ecolor="#777777",
                        elinewidth=0.8, capsize=2, zorder=4)
    for xi, (m, run) in enumerate(zip(t["mean"], t["run"])):
        top = t["mean_hi"].iloc[xi] if "mean_hi" in t and t["mean_hi"].iloc[xi] == t["mean_hi"].iloc[xi] else m
        ax.text(xi, 0 if np.isnan(m) else top, "not run" if not run else f"{m:.1f}", ha="center", va="bottom",
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
    if notes:
        fig.text(0.01, -0.02, textwrap.fill("NOTE: " + " | ".join(notes), 160), fontsize=7, va="top", color="#B00000")
    return save(fig, stem, t)


def subtask_scores(summary, sub: str) -> dict | None:
    """Per-question scores of one subtask: the subtask's own `scores` if the summary has them, else the benchmark's
    when the benchmark has this one subtask only (the tiny world); None otherwise (no interval, nothing invented)."""
    v = summary["subtasks"].get(sub) or {}
    if isinstance(v.get("scores"), dict) and v["scores"]:
        return uncertainty.question_scores(v)
    if len(summary["subtasks"]) == 1 and summary["scores"]:
        return summary["scores"]
    return None


def subtask_table(summaries: pd.DataFrame, rows: dict[str, str], benchmarks: list[str], frames: int) -> pd.DataFrame:
    """Long table: method, run, benchmark, subtask, questions, accuracy (%) from each summary's `subtasks`, then
    accuracy_lo, accuracy_hi (95% bootstrap interval over the subtask's questions; empty without per-question scores)
    and errors."""
    out = []
    for label, run in rows.items():
        for k, b in enumerate(benchmarks):
            s = inputs.summary_of(summaries, run, b, frames)
            for sub, v in s["subtasks"].items():
                lo, hi = uncertainty.interval(subtask_scores(s, sub), stream=k) or (np.nan, np.nan)
                out.append({"method": label, "run": run, "benchmark": b, "subtask": sub,
                            "questions": v["questions"], "accuracy": 100 * v["accuracy"],
                            "accuracy_lo": lo, "accuracy_hi": hi, "errors": v.get("errors", 0)})
    return pd.DataFrame(out)


def fig3b_subtasks(t: pd.DataFrame, stem, title: str, ours_note: str, notes: list[str] = ()) -> pd.DataFrame:
    """Grouped bars: x = subtask (benchmark / subtask), one bar per method, each with its 95% interval."""
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
        xm = x + (i - (len(methods) - 1) / 2) * width
        ax.bar(xm, v["accuracy"], width, label=m, color=cmap(i))
        if "accuracy_lo" in v:
            ax.errorbar(xm, v["accuracy"], yerr=_yerr(v["accuracy"], v["accuracy_lo"], v["accuracy_hi"]), fmt="none",
                        ecolor="#222222", elinewidth=0.9, capsize=2)
    n = t.groupby("group", sort=False)["questions"].first().reindex(groups)
    ax.set_xticks(x, [f"{g}\n(n={int(k)})" for g, k in zip(groups, n)], rotation=0)
    ax.set_xlabel("subtask (benchmark / subtask; n = questions)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(textwrap.fill(f"{title}. Ours: {ours_note}; the paper's per-type values are not in "
                               "config/reference", 110), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, 118)  # room for the legend above the error bars
    ax.legend(frameon=False, fontsize=9, ncols=min(4, len(methods)), loc="upper center")
    fig.tight_layout()
    if notes:
        fig.text(0.01, -0.02, textwrap.fill("NOTE: " + " | ".join(notes), 160), fontsize=7, va="top", color="#B00000")
    return save(fig, stem, t.drop(columns="group"))


def build_accuracy(name: str, a) -> None:
    """Figs. 3a, 3b, 7-10 from the summaries given on the command line and the config's grid."""
    config = json.loads(a.cfg)
    try:
        grid.check(config, name)
    except grid.GridError as e:
        raise SystemExit(str(e)) from None
    summaries = inputs.load_summaries(a.summaries)
    bench, frames = grid.benchmarks(config, name), grid.frames(config, name)[0]
    tiny = any(b.startswith("tiny_") for b in bench)
    ours_note = (f"{', '.join(bench)} at {frames} frames; error bars: 95% bootstrap interval over the questions"
                 + (" (tiny world: not the paper's benchmarks)" if tiny else ""))
    title = grid.TARGETS[name].title
    rows = grid.rows(config, name)
    notes = honesty_notes(summaries, rows, [(label, frames) for label in rows], bench)
    if name == "fig3b":
        fig3b_subtasks(subtask_table(summaries, rows, bench, frames), a.out, title, ours_note, notes)
        return
    paper = inputs.paper_rows(inputs.load_reference(a.reference), name)
    t = tables.accuracy_table(summaries, rows, bench, frames, paper, tables.baselines(config, name))
    stated = sorted({f for f in paper["frames"] if f}, key=float)
    paper_note = "Qwen2.5-VL-7B on the paper's benchmarks" + (f" at {'/'.join(stated)} frames" if stated else "")
    accuracy_figure(t, a.out, title, ours_note, paper_note, t.attrs.get("notes", []))
