"""The paper's tables from the files the DAG produced, with the paper's numbers beside ours.

Every "ours" number is read from an evaluation summary (results/<run>/eval/<model>/<bench>/f<frames>.summary.json)
or a training log (results/<run>/train/<run>/metrics.json); every "paper" number from config/reference/
paper_tables.csv (the paper's printed values, long format: table, method, frames, benchmark, value, note).
Rows are the paper's row labels, mapped to our runs by config `tables.rows.<table>` (see `videoktr.report.grid`); a paper
row without a run of ours keeps its paper numbers and an empty "run".

CLI (what the Snakemake rules call)::

    python -m videoktr.report.tables table2 --cfg JSON --summaries S... --reference CSV --out STEM
    python -m videoktr.report.tables table4 --cfg JSON --metrics M... --reference CSV --out STEM

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

from videoktr.report import grid
from videoktr.config import sft_models

logger = logging.getLogger(__name__)

# Our benchmark names -> the paper's column labels (paper_tables.csv `benchmark`).
PAPER_BENCHMARK = {"video_holmes": "Video-Holmes", "videommmu": "VideoMMMU", "mmvu": "MMVU(mc)",
                   "tempcompass": "TempCompass", "videomme": "VideoMME", "mmmu": "MMMU(val)", "ai2d": "AI2D",
                   "mmstar": "MMStar", "chartqa": "ChartQA"}
# Table 4: our training-log key (metrics.json "cost") -> (column, scale), and the paper's matching column.
COST = [("train_seconds", "train time (s)", 1.0, "train_hours"),
        ("peak_memory_bytes", "peak memory (MB)", 1e-6, "peak_mem_GB"),
        ("samples_per_second", "samples/s", 1.0, "samples_per_s"),
        ("forward_latency_seconds", "forward latency (s)", 1.0, "fwd_latency_s"),
        ("forward_flops", "forward GFLOPs", 1e-9, "fwd_TFLOPs_per_gpu")]
# TRL's own log (log_history) has these two when the cost dict is absent.
TRL_FALLBACK = {"train_seconds": "train_runtime", "samples_per_second": "train_samples_per_second"}


# -- inputs ----------------------------------------------------------------------------------------------------------
def load_summaries(paths) -> pd.DataFrame:
    """The evaluation summaries (*.summary.json) as a table: one row per (model, benchmark, frames)."""
    rows = [json.loads(Path(p).read_text()) for p in paths]
    return pd.DataFrame([{k: r[k] for k in ("model", "benchmark", "frames", "accuracy", "answered", "unparseable")}
                         | {"subtasks": r.get("subtasks", {})} for r in rows])


def load_reference(path) -> pd.DataFrame:
    ref = pd.read_csv(path, dtype={"frames": str}, keep_default_na=False)
    ref["value"] = pd.to_numeric(ref["value"])
    return ref


def paper_rows(ref: pd.DataFrame, table: str) -> pd.DataFrame:
    return ref[ref["table"] == table]


def summary_of(summaries: pd.DataFrame, run: str, bench: str, frames: int) -> pd.Series:
    """The summary of one evaluation of a grid row's run (a row of `load_summaries`); it must be among the inputs."""
    hit = summaries[(summaries["model"] == run) & (summaries["benchmark"] == bench) & (summaries["frames"] == frames)]
    if hit.empty:
        raise SystemExit(f"no evaluation summary for run {run!r} on {bench} at {frames} frames among the inputs")
    return hit.iloc[0]


def _accuracy(summaries: pd.DataFrame, run: str, bench: str, frames: int) -> float:
    return 100 * float(summary_of(summaries, run, bench, frames)["accuracy"])


def _labels(ours: dict[str, str], paper: pd.DataFrame) -> list[str]:
    """Our rows in the config's order, then the paper's other rows in its order (paper numbers only)."""
    return list(dict.fromkeys([*ours, *paper["method"]]))


def _paper_columns(paper: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(paper["benchmark"]))


def _paper_value(paper: pd.DataFrame, label: str, bench: str, frames: str | None = None) -> float:
    hit = paper[(paper["method"] == label) & (paper["benchmark"] == bench)]
    if frames is not None:
        hit = hit[hit["frames"] == frames]
    return float(hit["value"].iloc[0]) if len(hit) else math.nan


# -- tables ----------------------------------------------------------------------------------------------------------
def accuracy_table(summaries: pd.DataFrame, ours: dict[str, str], benchmarks: list[str], frames: int,
                   paper: pd.DataFrame) -> pd.DataFrame:
    """One row per method at one frame count: our accuracy (%) per benchmark and their mean, then the paper's."""
    out = []
    for label in _labels(ours, paper):
        run = ours.get(label)
        row = {"method": label, "run": run or ""}
        for b in benchmarks:
            row[b] = _accuracy(summaries, run, b, frames) if run else math.nan
        row["mean"] = sum(row[b] for b in benchmarks) / len(benchmarks) if run else math.nan
        for b in _paper_columns(paper):
            row[f"paper {b}"] = _paper_value(paper, label, b)
        out.append(row)
    return pd.DataFrame(out).set_index("method").round(2)


def frames_table(summaries: pd.DataFrame, ours: dict[str, str], benchmarks: list[str], frames: list[int],
                 paper: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, frame count): ours where we evaluated it, the paper's where it reports it."""
    out = []
    for label in _labels(ours, paper):
        run = ours.get(label)
        stated = [f for f in dict.fromkeys(paper.loc[paper["method"] == label, "frames"])]
        counts = sorted({*(str(f) for f in frames if run), *stated}, key=lambda f: (f == "", float(f or 0)))
        for f in counts:
            row = {"method": label, "frames": f, "run": run or ""}
            evaluated = run is not None and f != "" and float(f).is_integer() and int(float(f)) in frames
            for b in benchmarks:
                row[b] = _accuracy(summaries, run, b, int(float(f))) if evaluated else math.nan
            row["mean"] = sum(row[b] for b in benchmarks) / len(benchmarks) if evaluated else math.nan
            for b in _paper_columns(paper):
                row[f"paper {b}"] = _paper_value(paper, label, b, f)
            out.append(row)
    return pd.DataFrame(out).set_index(["method", "frames"]).round(2)


def cost_of(metrics: dict) -> dict[str, float]:
    """Our cost numbers of one run: metrics.json "cost", else TRL's train_runtime / train_samples_per_second."""
    cost = dict(metrics.get("cost") or {})
    for key, trl in TRL_FALLBACK.items():
        if cost.get(key) is None:
            logged = [h[trl] for h in metrics.get("log_history", []) if trl in h]
            if logged:
                cost[key] = logged[-1]
    return {key: (math.nan if cost.get(key) is None else float(cost[key]) * scale) for key, _, scale, _ in COST}


def cost_table(metrics: dict[str, dict], ours: dict[str, str], paper: pd.DataFrame) -> pd.DataFrame:
    """Table 4: our cost per method from our training logs, the paper's beside, and each relative to the first row."""
    out = []
    for label in _labels(ours, paper):
        run = ours.get(label)
        mine = cost_of(metrics[run]) if run else {k: math.nan for k, *_ in COST}
        row = {"method": label, "run": run or ""}
        row |= {col: mine[key] for key, col, _, _ in COST}
        row |= {f"paper {p}": _paper_value(paper, label, p) for *_, p in COST}
        out.append(row)
    df = pd.DataFrame(out).set_index("method")
    base = next(iter(ours))  # ratios against the first row of ours (GRPO)
    for key, col, _, p in COST[:2]:
        df[f"{col.split(' (')[0]} / {base}"] = df[col] / df.loc[base, col]
        df[f"paper {p} / {base}"] = df[f"paper {p}"] / df.loc[base, f"paper {p}"]
    return df.round(4)


# -- notes and output ------------------------------------------------------------------------------------------------
def notes(config: dict, name: str, paper: pd.DataFrame) -> list[str]:
    """What the two sides are, stated in every table: the tiny world is not the paper's study."""
    bench = grid.benchmarks(config, name)
    tiny = any(b.startswith("tiny_") for b in bench) or config.get("model", {}).get("source") == "tiny"
    if name == "table4":
        ours = "ours: measured by our training runs on this machine (train/<run>/metrics.json)"
    else:
        fr = ", ".join(map(str, grid.frames(config, name)))
        at = "(images: one each, no frame count)" if grid.TARGETS[name].benchmarks == "image" else f"at {fr} frames"
        ours = f"ours: accuracy (%) on {', '.join(bench)} {at}"
        if grid.TARGETS[name].kind != "frames":
            ours += "; mean = the mean over these benchmarks"
    if tiny:
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
    return [ours, theirs, "empty cell: not run in this grid (ours) or not reported (paper)"]


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


def write(df: pd.DataFrame, stem, title: str, lines: list[str]) -> None:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(f"{stem}.csv")
    flat = df.reset_index()
    body = flat.astype(object).where(flat.notna(), None).to_markdown(index=False, floatfmt="g", missingval="--")
    Path(f"{stem}.md").write_text(f"# {title}\n\n" + "".join(f"> {x}\n>\n" for x in lines) + "\n" + body + "\n")
    latex = df.to_latex(na_rep="--", float_format=lambda v: f"{v:g}", escape=True,
                        caption=f"{title}. " + ". ".join(lines) + ".", label=f"tab:{stem.name}")
    Path(f"{stem}.tex").write_text("% needs \\usepackage{booktabs,multirow}\n" + latex)


def build(name: str, config: dict, reference, summaries=(), metrics=()) -> pd.DataFrame:
    """Table `name` of the config's grid from the given files."""
    grid.check(config, name)
    ours, paper = grid.rows(config, name), paper_rows(load_reference(reference), name)
    target = grid.TARGETS[name]
    if target.kind == "cost":
        logs = {json.loads(Path(m).read_text()).get("run", Path(m).parent.name): json.loads(Path(m).read_text())
                for m in metrics}
        missing = [r for r in ours.values() if r not in logs]
        if missing:
            raise SystemExit(f"{name}: no training log for run(s) {', '.join(missing)} among the inputs")
        return cost_table(logs, ours, paper)
    s = load_summaries(summaries)
    bench = grid.benchmarks(config, name)
    if target.kind == "frames":
        return frames_table(s, ours, bench, grid.frames(config, name), paper)
    return accuracy_table(s, ours, bench, grid.frames(config, name)[0], paper)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m videoktr.report.tables", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=grid.TABLES)
    p.add_argument("--cfg", required=True, help="JSON of the config sections tables, eval, runs (and model)")
    p.add_argument("--summaries", nargs="*", default=[])
    p.add_argument("--metrics", nargs="*", default=[])
    p.add_argument("--reference", required=True, help="the paper's numbers (paper_tables.csv)")
    p.add_argument("--out", required=True, help="output stem: writes STEM.csv, STEM.md, STEM.tex")
    a = p.parse_args(argv)
    config = json.loads(a.cfg)
    try:
        df = build(a.table, config, a.reference, a.summaries, a.metrics)
    except grid.GridError as e:
        raise SystemExit(str(e)) from None
    paper = paper_rows(load_reference(a.reference), a.table)
    write(df, a.out, grid.TARGETS[a.table].title, notes(config, a.table, paper))
    logger.info("%s written to %s.{csv,md,tex}", a.table, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
