"""The headline: Table 1's main result at a glance, for the report's first page (and the README's picture).

From tables/table1.csv: each method of ours at each frame count, its mean accuracy over the benchmarks with its 95%
interval, the SFT model's as a line, and the paired differences Table 1 draws (RL - SFT, method - GRPO) in words.
Writes STEM.png, STEM.pdf, STEM.csv (the numbers plotted) and STEM.html (a fragment: the figure inline and the
differences), which workflow/report/workflow.rst puts on the report's landing page.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from videoktr.report import uncertainty
from videoktr.report.plotting import pyplot, save

MEAN = "mean"


def headline_rows(table1: pd.DataFrame) -> pd.DataFrame:
    """Our rows of Table 1 (those with a run): method, frames, mean and its interval, and each mean difference."""
    ours = table1[table1["run"].notna() & table1[MEAN].notna()].copy()
    keep = ["method", "frames", "run", MEAN, f"{MEAN}_lo", f"{MEAN}_hi"]
    keep += [c for c in ours.columns if c.startswith(f"{MEAN} vs ") and ours[c].notna().any()]
    out = ours[keep].reset_index(drop=True)
    out["frames"] = out["frames"].astype(int)
    return out


def sentences(rows: pd.DataFrame, caveat: str) -> list[str]:
    """Each paired difference in words: "Video-KTR (ours) - GRPO (ours), 8 frames: +0.1 [-0.8, +0.9] (n.s.)"; the
    paper's claim first (method - GRPO, Video-KTR's rows leading), then RL - SFT."""
    out = []
    cols = [c for c in rows.columns if c.startswith(f"{MEAN} vs ") and not c.endswith(("_lo", "_hi"))]
    cols.sort(key=lambda c: "GRPO" not in c.partition(" vs ")[2])
    for col in cols:
        base = col.partition(" vs ")[2]
        compared = rows[rows[col].notna()]
        compared = compared.iloc[(~compared["method"].str.contains("KTR")).argsort(kind="stable")]
        for _, r in compared.iterrows():
            out.append(f"{r['method']} - {base}, {r['frames']} frames: "
                       f"{uncertainty.fmt_difference(r[col], r.get(col + '_lo'), r.get(col + '_hi'))}")
    return out + ([caveat] if caveat else [])


def write_headline(table1_csv: Path, stem: Path, caveat: str = "") -> pd.DataFrame:
    rows = headline_rows(pd.read_csv(table1_csv))
    plt = pyplot()
    frames = sorted(rows["frames"].unique())
    methods = [m for m in dict.fromkeys(rows["method"]) if not m.startswith("SFT")]
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames) + 1.5, 0.45 * len(methods) + 1.4),
                             sharey=True, sharex=True, squeeze=False)
    for ax, f in zip(axes[0], frames):
        at = rows[rows["frames"] == f].set_index("method")
        for y, m in enumerate(methods):
            if m in at.index:
                r = at.loc[m]
                ax.errorbar(r[MEAN], y, xerr=[[r[MEAN] - r[f"{MEAN}_lo"]], [r[f"{MEAN}_hi"] - r[MEAN]]], fmt="o",
                            color="C3" if "KTR" in m else "C0", capsize=3)
                ax.annotate(f"{r[MEAN]:.1f}", (r[MEAN], y), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=8)
        sft = [m for m in at.index if m.startswith("SFT")]
        if sft:
            ax.axvline(at.loc[sft[0], MEAN], color="grey", ls="--", lw=1)
            ax.text(at.loc[sft[0], MEAN], -0.6, f" SFT {at.loc[sft[0], MEAN]:.1f}", color="grey",
                    fontsize=8, va="bottom")
        ax.set_title(f"{f} frames")
        ax.set_xlabel("mean accuracy (%), 95% interval")
        ax.set_ylim(len(methods) - 0.5, -0.9)  # the table's order, top down; room for the SFT label
    axes[0][0].set_yticks(range(len(methods)), methods)
    fig.tight_layout()
    save(fig, stem, rows)
    png = base64.b64encode(Path(f"{stem}.png").read_bytes()).decode()
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences(rows, caveat))
    Path(f"{stem}.html").write_text(
        f'<div class="headline"><img alt="Table 1 at a glance" style="max-width:100%" '
        f'src="data:image/png;base64,{png}"/><ul>{items}</ul></div>\n')
    return rows
