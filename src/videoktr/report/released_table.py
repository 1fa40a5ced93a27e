"""Table 1's block of released checkpoints (config `released`): our accuracy of each, the paper's number for it, and
the difference."""

from __future__ import annotations

import math

import pandas as pd

from videoktr.report.cells import PAPER_BENCHMARK, honesty_notes, ours_cells

def released_reference(config: dict, name: str, paper: pd.DataFrame, benchmarks: list[str],
                       frames: list[int]) -> dict[tuple[str, int], float]:
    """{(benchmark, frames): the paper's number} for released checkpoint `name`: its rows `reference_label` in Table 1
    of the reference (a row without a frame count stands beside every frame count), then `reference` of the config
    (given by hand: the tiny world, where the paper has none), which wins."""
    entry = config["released"][name]
    out = {}
    label = entry.get("reference_label")
    if label:
        rows = paper[paper["method"] == label]
        if rows.empty:
            raise SystemExit(f"config released.{name}.reference_label: no row {label!r} in Table 1 of the reference "
                             f"(its rows: {', '.join(dict.fromkeys(paper['method']))})")
        for b in benchmarks:
            col = PAPER_BENCHMARK.get(b, b)
            for f in frames:
                hit = rows[(rows["benchmark"] == col) & (rows["frames"] == str(f))]
                hit = hit if len(hit) else rows[(rows["benchmark"] == col) & (rows["frames"] == "")]
                if len(hit):
                    out[(b, f)] = float(hit["value"].iloc[0])
    for b, by_frames in (entry.get("reference") or {}).items():
        for f, value in by_frames.items():
            out[(b, int(f))] = float(value)
    return out


def released_table(config: dict, summaries: pd.DataFrame, benchmarks: list[str], frames: list[int],
                   paper: pd.DataFrame, manifests: dict[str, dict] | None = None) -> pd.DataFrame:
    """Table 1's block of released checkpoints: one row per (checkpoint, frame count) of config `released`, our
    accuracy (%) per benchmark and their mean, the paper's number for it (`paper <c>`), and the difference ours - paper
    (`<c> - paper`, percentage points). Our accuracies carry their bootstrap interval (`<c>_lo`, `_hi`), and so does
    each difference: our interval shifted by the paper's number (which has none)."""
    manifests = manifests or {}
    out, evaluated = [], []
    cols = [*benchmarks, "mean"]
    for name, entry in config["released"].items():
        reference = released_reference(config, name, paper, benchmarks, frames)
        manifest = manifests.get(name) or {}
        commit = manifest.get("commit") or ("(mirror)" if manifest.get("mirror") else "")
        for f in frames:
            cells, extra = ours_cells(summaries, name, benchmarks, f)
            theirs = {b: reference.get((b, f), math.nan) for b in benchmarks}
            theirs["mean"] = (sum(theirs[b] for b in benchmarks) / len(benchmarks)
                              if all(theirs[b] == theirs[b] for b in benchmarks) else math.nan)
            row = {"model": name, "frames": str(f), "repo": entry["hub"]["repo"],
                   "revision": entry["hub"]["revision"], "commit": commit,
                   "paper row": entry.get("reference_label") or f"config released.{name}.reference"}
            for c in cols:
                row |= {c: cells[c], f"paper {c}": theirs[c], f"{c} - paper": cells[c] - theirs[c]}
            for c in cols:
                row |= {f"{c}_lo": extra[f"{c}_lo"], f"{c}_hi": extra[f"{c}_hi"]}
                row |= {f"{c} - paper_{x}": extra[f"{c}_{x}"] - theirs[c] for x in ("lo", "hi")}
            row |= {f"{b}_errors": extra[f"{b}_errors"] for b in benchmarks}
            out.append(row)
            evaluated.append((name, f))
    df = pd.DataFrame(out).set_index(["model", "frames"]).round(2)
    df.attrs["notes"] = honesty_notes(summaries, {n: n for n in config["released"]}, evaluated, benchmarks)
    return df
