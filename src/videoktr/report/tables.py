"""The paper's tables from the files the DAG produced, with the paper's numbers beside ours.

Every "ours" number is read from an evaluation summary (results/<run>/eval/<model>/<bench>/f<frames>.summary.json)
or a training log (results/<run>/train/<run>/metrics.json); every "paper" number from config/reference/
paper_tables.csv (the paper's printed values, long format: table, method, frames, benchmark, value, note).
Rows are the paper's row labels, mapped to our runs by config `tables.rows.<table>` (see `videoktr.report.grid`); a paper
row without a run of ours keeps its paper numbers and an empty "run".

Uncertainty (`videoktr.report.uncertainty`): each accuracy of ours has its 95% percentile-bootstrap interval over the
questions, from the summary's per-question `scores` (CSV `<column>_lo`, `<column>_hi`; Markdown/LaTeX "45.8 [31.2,
60.4]"; empty when a summary has no `scores`, and for every paper number); each comparison a table draws (`COMPARE`:
RL vs SFT, methods vs GRPO, Table 2's subsets vs GRPO and KTR-VET) is a paired bootstrap difference over the same
question ids (CSV `<column> vs <row>`, `_lo`, `_hi`; the Markdown's "Paired differences", "(n.s.)" when its interval
contains 0). A cell whose evaluation had error rows says "(N err)" (CSV `<benchmark>_errors`), and the notes name
it, and any column whose rows were scored on different question sets (`question_set`). A missing or corrupt summary
stops the table with one line naming the file.

CLI (what the Snakemake rules call)::

    python -m videoktr.report.tables table2 --cfg JSON --summaries S... --reference CSV --out STEM
    python -m videoktr.report.tables table4 --cfg JSON --metrics M... --reference CSV --out STEM
    python -m videoktr.report.tables table1_released --cfg JSON --summaries S... --models DIR... --reference CSV
        --out STEM      (Table 1's released checkpoints, config `released`: ours, the paper's number, ours - paper)

writes STEM.csv, STEM.md and STEM.tex.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import pandas as pd

from videoktr.report import grid, uncertainty
from videoktr.report.summaries import (load_reference, load_summaries, paper_rows, read_json,
                                       summary_of)
from videoktr.report.table_output import write
from videoktr.report.cells import (empty_cells, honesty_notes, ours_cells, paper_columns,
                                   paper_value, row_labels)
from videoktr.report.cost_table import cost_table
from videoktr.report.released_table import released_table
from videoktr.config import sft_models

logger = logging.getLogger(__name__)


# -- tables ----------------------------------------------------------------------------------------------------------
# Beside each accuracy column c of ours (every benchmark and "mean"): c_lo, c_hi (its 95% bootstrap interval over the
# questions; empty without per-question scores) and, per benchmark, c_errors (questions that could not be asked,
# counted wrong). Per comparison with a baseline row B: "c vs B", "c vs B_lo", "c vs B_hi" (the paired difference of
# the row minus B over the same question ids, percentage points). These come after the columns of old, which keep
# their names and order.
# Which rows each target compares every other row with (`baselines`, in this order; a baseline row is compared only
# with the baselines before it): "grpo" = the row whose run is GRPO, "sft" = the
# row that is an SFT model, "full" = the KTR run with all three signals (Table 2's KTR-VET), "first" = the first row
# (the default point of an ablation figure).
COMPARE = {"table1": ("sft", "grpo"), "table2": ("grpo", "full"), "table3": ("sft", "grpo"),
           "table5": ("sft", "grpo"), "fig3a": ("grpo",), "fig7": ("first",), "fig8": ("first",), "fig9": ("grpo",),
           "fig10": ()}


def baselines(config: dict, name: str) -> list[str]:
    """The row labels of `name` that every other row of ours is compared with (paired differences), in order."""
    rows, runs = grid.rows(config, name), config.get("runs", {})
    models = {"sft", *config.get("sft_models", {})}

    def find(kind: str) -> str | None:
        if kind == "first":
            return next(iter(rows), None)
        if kind == "sft":
            return next((label for label, r in rows.items() if r in models), None)
        if kind == "grpo":
            return next((label for label, r in rows.items() if runs.get(r, {}).get("method") == "grpo"), None)
        full = [label for label, r in rows.items() if runs.get(r, {}).get("method") == "ktr"
                and set(runs[r].get("signals") or ()) == {"E", "V", "T"}]
        return full[-1] if full else None

    return list(dict.fromkeys(b for b in (find(k) for k in COMPARE.get(name, ())) if b))


def _differences(summaries: pd.DataFrame, run: str, base_run: str, benchmarks: list[str], frames: int,
                 base: str) -> dict:
    """The paired differences run - base_run per benchmark and of the mean (columns "c vs BASE", _lo, _hi)."""
    mine = [summary_of(summaries, run, b, frames) for b in benchmarks]
    theirs = [summary_of(summaries, base_run, b, frames) for b in benchmarks]
    out = {}
    for k, (b, m, t) in enumerate(zip(benchmarks, mine, theirs)):
        got = uncertainty.paired(m["scores"], t["scores"], stream=k)
        delta, lo, hi = got[:3] if got else (100 * (m["accuracy"] - t["accuracy"]), math.nan, math.nan)
        out |= {f"{b} vs {base}": delta, f"{b} vs {base}_lo": lo, f"{b} vs {base}_hi": hi}
    got = uncertainty.paired_mean([m["scores"] for m in mine], [t["scores"] for t in theirs])
    if got:
        delta, lo, hi = got[:3]
    else:
        delta = sum(100 * (m["accuracy"] - t["accuracy"]) for m, t in zip(mine, theirs)) / len(benchmarks)
        lo = hi = math.nan
    return out | {f"mean vs {base}": delta, f"mean vs {base}_lo": lo, f"mean vs {base}_hi": hi}


def _compare(summaries: pd.DataFrame, evaluated: dict, rows: list[dict], ours: dict[str, str], bases: list[str],
             benchmarks: list[str]) -> None:
    """Add to each evaluated row its paired differences with each baseline row evaluated at the same frame count:
    not with itself, and a baseline row only with the baselines before it (GRPO vs SFT, KTR-VET vs GRPO)."""
    at = set(evaluated.values())
    for j, base in enumerate(bases):
        for key, (label, frames) in evaluated.items():
            if (label in bases and bases.index(label) <= j) or (base, frames) not in at:
                continue
            rows[key] |= _differences(summaries, ours[label], ours[base], benchmarks, frames, base)


def _frame(rows: list[dict], index, benchmarks: list[str], paper_cols: list[str], bases: list[str]) -> pd.DataFrame:
    """The rows in a fixed column order: the columns of old, then the intervals, errors and differences."""
    cols = [*benchmarks, "mean"]
    order = (["run", *cols, *[f"paper {b}" for b in paper_cols]]
             + [f"{c}_{x}" for c in cols for x in ("lo", "hi")] + [f"{b}_errors" for b in benchmarks]
             + [f"{c} vs {base}{x}" for base in bases for c in cols for x in ("", "_lo", "_hi")])
    df = pd.DataFrame(rows).set_index(index)
    df = df.reindex(columns=[c for c in order if c in df.columns])
    return df.round(2)


def accuracy_table(summaries: pd.DataFrame, ours: dict[str, str], benchmarks: list[str], frames: int,
                   paper: pd.DataFrame, bases=()) -> pd.DataFrame:
    """One row per method at one frame count: our accuracy (%) per benchmark and their mean, then the paper's; then
    the intervals, error counts and the paired differences with each row of `bases` (labels of `ours`)."""
    out, evaluated = [], {}
    for label in row_labels(ours, paper):
        run = ours.get(label)
        row = {"method": label, "run": run or ""}
        cells, extra = ours_cells(summaries, run, benchmarks, frames) if run else empty_cells(benchmarks)
        row |= cells
        for b in paper_columns(paper):
            row[f"paper {b}"] = paper_value(paper, label, b)
        out.append(row | extra)
        if run:
            evaluated[len(out) - 1] = (label, frames)
    bases = [b for b in bases if b in ours]
    _compare(summaries, evaluated, out, ours, bases, benchmarks)
    df = _frame(out, "method", benchmarks, paper_columns(paper), bases)
    df.attrs["notes"] = honesty_notes(summaries, ours, evaluated.values(), benchmarks)
    return df


def frames_table(summaries: pd.DataFrame, ours: dict[str, str], benchmarks: list[str], frames: list[int],
                 paper: pd.DataFrame, bases=()) -> pd.DataFrame:
    """One row per (method, frame count): ours where we evaluated it, the paper's where it reports it; then the
    intervals, error counts and the paired differences with each row of `bases` at the same frame count."""
    out, evaluated = [], {}
    for label in row_labels(ours, paper):
        run = ours.get(label)
        stated = [f for f in dict.fromkeys(paper.loc[paper["method"] == label, "frames"])]
        counts = sorted({*(str(f) for f in frames if run), *stated}, key=lambda f: (f == "", float(f or 0)))
        for f in counts:
            row = {"method": label, "frames": f, "run": run or ""}
            done = run is not None and f != "" and float(f).is_integer() and int(float(f)) in frames
            cells, extra = ours_cells(summaries, run, benchmarks, int(float(f))) if done else empty_cells(benchmarks)
            row |= cells
            for b in paper_columns(paper):
                row[f"paper {b}"] = paper_value(paper, label, b, f)
            out.append(row | extra)
            if done:
                evaluated[len(out) - 1] = (label, int(float(f)))
    bases = [b for b in bases if b in ours]
    _compare(summaries, evaluated, out, ours, bases, benchmarks)
    df = _frame(out, ["method", "frames"], benchmarks, paper_columns(paper), bases)
    df.attrs["notes"] = honesty_notes(summaries, ours, evaluated.values(), benchmarks)
    return df


INTERVAL_NOTE = (f"ours as 'accuracy [lo, hi]': the {uncertainty.LEVEL:.0%} percentile-bootstrap interval over the "
                 f"questions ({uncertainty.RESAMPLES} resamples, fixed seed; the mean's: questions resampled within "
                 "each benchmark); a value without brackets has no per-question scores in its summary (no interval); "
                 "the paper's numbers have none")

# -- notes and output ------------------------------------------------------------------------------------------------
def notes(config: dict, name: str, paper: pd.DataFrame) -> list[str]:
    """What the two sides are, stated in every table: the tiny world is not the paper's study."""
    bench = grid.benchmarks(config, name)
    tiny = any(b.startswith("tiny_") for b in bench) or config.get("model", {}).get("source") == "tiny"
    if name == "table4":
        ours = "ours: measured by our training runs on this machine (train/<run>/metrics.json)"
    elif grid.TARGETS[name].kind == "released":
        fr = ", ".join(map(str, grid.frames(config, name)))
        ours = (f"ours: released checkpoints (config released; each hub repository at its revision, the commit "
                f"fetched in models/<name>/hub_manifest.json), evaluated as they are, without training, by the same "
                f"evaluation as our runs: accuracy (%) on {', '.join(bench)} at {fr} frames")
    else:
        fr = ", ".join(map(str, grid.frames(config, name)))
        at = "(images: one each, no frame count)" if grid.TARGETS[name].benchmarks == "image" else f"at {fr} frames"
        ours = f"ours: accuracy (%) on {', '.join(bench)} {at}"
        if grid.TARGETS[name].kind != "frames":
            ours += "; mean = the mean over these benchmarks"
    if tiny and grid.TARGETS[name].kind == "released":
        ours += (" -- the embedded tiny world: its release is a tiny model of this study saved into a local mirror "
                 "(released.<name>.mirror_from), its reference numbers set by hand in the config")
    elif tiny:
        ours += (" -- the embedded tiny world (a tiny random-init Qwen2.5-VL, generated clips, tiny_* benchmarks): "
                 "not the paper's model or benchmarks; compare the order of the methods, not the numbers")
    start = starting_models(config, name)
    if start:
        ours += f"; {start}"
    stated = sorted({f for f in paper["frames"] if f}, key=float)
    where = f" at {'/'.join(stated)} frames" if stated and grid.TARGETS[name].kind != "frames" else ""
    extra = "; ".join(sorted({n for n in paper["note"] if n}))
    theirs = (f"paper: the values printed in the paper (Qwen2.5-VL-7B unless the row says otherwise){where}, "
              f"from config/reference/paper_tables.csv" + (f" ({extra})" if extra else ""))
    lines = [ours, theirs]
    if grid.TARGETS[name].kind == "released":
        lines[1] = ("paper: the number the paper prints for each checkpoint (Table 1 rows `paper row` of "
                    "config/reference/paper_tables.csv; a row without a frame count stands beside every frame count; "
                    "or config released.<name>.reference, set by hand where the paper has none, as in the tiny world)")
        lines.append("<c> - paper: ours minus the paper's number, percentage points; its interval is ours shifted "
                     "by the paper's number (which has none)")
    if name != "table4":
        lines.append(INTERVAL_NOTE)
    return lines + ["empty cell: not run in this grid (ours) or not reported (paper)"]


def starting_models(config: dict, name: str) -> str:
    """Which model each row's run starts from, when some start from another than `sft` (e.g. Table 5's size)."""
    runs, models = config["runs"], sft_models(config)
    rows = grid.rows(config, name)
    start = {label: runs[r].get("sft_model", "sft") for label, r in rows.items() if r in runs}
    itself = {label: r for label, r in rows.items() if r in models}  # a row that is an SFT model, not a run
    if set(start.values()) | set(itself.values()) <= {"sft"}:
        return ""

    def what(m: str) -> str:
        sec = models[m]
        if sec.get("source") == "hub":
            return sec["hub"]["repo"]
        t = sec["tiny"]
        return f"tiny Qwen2.5-VL, hidden {t['hidden_size']}, {t['layers']} layers"

    by: dict[str, list[str]] = {}
    for label, m in start.items():
        by.setdefault(m, []).append(label)
    return "; ".join([f"{', '.join(labels)} from {m} ({what(m)})" for m, labels in by.items()]
                     + [f"{label} is {m} ({what(m)})" for label, m in itself.items()])


def build(name: str, config: dict, reference, summaries=(), metrics=(), models=()) -> pd.DataFrame:
    """Table `name` of the config's grid from the given files (its notes about errors and question sets, for the
    caption, in `.attrs["notes"]`). `models`: the released checkpoints' folders (their hub_manifest.json: the commit
    fetched), for table1_released."""
    grid.check(config, name)
    ours, paper = grid.rows(config, name), paper_rows(load_reference(reference), name)
    target = grid.TARGETS[name]
    if target.kind == "released":
        manifests = {Path(m).name: read_json(Path(m) / "hub_manifest.json", "download manifest") for m in models}
        return released_table(config, load_summaries(summaries), grid.benchmarks(config, name),
                              grid.frames(config, name), paper_rows(load_reference(reference), "table1"), manifests)
    if target.kind == "cost":
        read = [(m, read_json(m, "training log")) for m in metrics]
        logs = {log.get("run", Path(m).parent.name): log for m, log in read}
        missing = [r for r in ours.values() if r not in logs]
        if missing:
            raise SystemExit(f"{name}: no training log for run(s) {', '.join(missing)} among the inputs")
        return cost_table(logs, ours, paper)
    s = load_summaries(summaries)
    bench = grid.benchmarks(config, name)
    bases = baselines(config, name)
    if target.kind == "frames":
        return frames_table(s, ours, bench, grid.frames(config, name), paper, bases)
    return accuracy_table(s, ours, bench, grid.frames(config, name)[0], paper, bases)


def parser(prog: str = "python -m videoktr.report.tables") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=grid.TABLES, help="which table: " + ", ".join(grid.TABLES))
    p.add_argument("--cfg", required=True, help="JSON of the config sections tables, eval, runs (and model)")
    p.add_argument("--summaries", nargs="*", default=[],
                   help="evaluation summaries (eval/<model>/<benchmark>/f<frames>.summary.json) of the table's rows")
    p.add_argument("--metrics", nargs="*", default=[], help="table4: the training logs (train/<run>/metrics.json)")
    p.add_argument("--models", nargs="*", default=[], help="table1_released: the checkpoints' folders (manifests)")
    p.add_argument("--reference", required=True, help="the paper's numbers (paper_tables.csv)")
    p.add_argument("--out", required=True, help="output stem: writes STEM.csv, STEM.md, STEM.tex")
    return p


def main(argv=None, prog: str = "python -m videoktr.report.tables") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = parser(prog).parse_args(argv)
    config = json.loads(a.cfg)
    try:
        df = build(a.table, config, a.reference, a.summaries, a.metrics, a.models)
    except grid.GridError as e:
        raise SystemExit(str(e)) from None
    paper = paper_rows(load_reference(a.reference), "table1" if a.table == "table1_released" else a.table)
    write(df, a.out, grid.TARGETS[a.table].title, notes(config, a.table, paper) + df.attrs.get("notes", []))
    logger.info("%s written to %s.{csv,md,tex,html}", a.table, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
