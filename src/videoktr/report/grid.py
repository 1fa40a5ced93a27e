"""The experiment grid behind every table and figure: which runs, benchmarks and frame counts each one needs.

Config `tables` (workflow/schemas/config.schema.yaml, config/README.md):

    frames              the frame count of the ablations (Tables 2-3, Figs. 3, 7-10; paper: 32)
    benchmarks          the benchmarks the ablations average (paper: Video-Holmes, VideoMMMU, MMVU (mc))
    image_benchmarks    Table 3 (paper: MMMU, AI2D, MMStar, ChartQA; tiny world: tiny_image)
    subtask_benchmarks  Fig. 3b, per subtask (paper: Video-Holmes' seven question types)
    table5_frames       Table 5's frame counts (paper: 16, 32, 64)
    rows.<target>       {paper row label: our run}: the paper's row each of our runs stands beside (a run, `sft`
                        or a name in `sft_models`: Table 5's second model size is runs with `sft_model` set). A
                        label mapped to null is left out: an overlay config (config/rehearsal.yaml) drops rows of
                        the config it is merged over, since Snakemake merges mappings key by key

Config `released` (not `tables.rows`) gives the rows of `table1_released`: Table 1's block of released checkpoints
(e.g. Video-R1/Video-R1-7B), each evaluated as it is on `eval.benchmarks` at `eval.frames`, beside the paper's numbers
for it. It downloads and evaluates, and trains nothing.

Table 1 and Table 5 take `eval.benchmarks`; Table 1 takes `eval.frames`. A target pulls only the evaluations of its
own rows, so `snakemake results/<run>/tables/table2.md` trains and evaluates Table 2's runs and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from videoktr.eval.benchmarks import BENCHMARKS


class GridError(ValueError):
    """A table or figure that names something the config does not have; the message names it."""


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "frames": rows x frame counts; "ablation": rows at tables.frames; "cost": training logs; "subtasks";
    #            "released": the released checkpoints of config `released` x frame counts (no training)
    benchmarks: str  # where its benchmarks come from: "eval", "ablation", "image", "subtask", "none"
    title: str


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("table1", "frames", "eval", "Table 1: accuracy (%) per method, benchmark and frame count"),
    Target("table1_released", "released", "eval",
           "Table 1, released checkpoints: our evaluation beside the paper's numbers for them"),
    Target("table2", "ablation", "ablation", "Table 2: selection signals (E entropy, V visual, T temporal)"),
    Target("table3", "ablation", "image", "Table 3: image benchmarks"),
    Target("table4", "cost", "none", "Table 4: training cost"),
    Target("table5", "frames", "eval", "Table 5: a second model size over frame counts"),
    Target("fig3a", "ablation", "ablation", "Fig. 3a: RL methods under one recipe"),
    Target("fig3b", "subtasks", "subtask", "Fig. 3b: accuracy per subtask"),
    Target("fig7", "ablation", "ablation", "Fig. 7: token weighting"),
    Target("fig8", "ablation", "ablation", "Fig. 8: distance between next-token distributions"),
    Target("fig9", "ablation", "ablation", "Fig. 9: update ratio"),
    Target("fig10", "ablation", "ablation", "Fig. 10: visual and temporal perturbations"),
]}
TABLES = [n for n in TARGETS if n.startswith("table")]
FIGURES = [n for n in TARGETS if n.startswith("fig")]


def rows(config: dict, name: str) -> dict[str, str]:
    """{paper label: run} of a target, in order; GridError when the config names none."""
    if name not in TARGETS:
        raise GridError(f"unknown table or figure {name!r} (known: {', '.join(TARGETS)})")
    if TARGETS[name].kind == "released":
        got = {n: n for n in config.get("released") or {}}
        if not got:
            raise GridError(f"{name}: config released names no checkpoint")
        return got
    got = {label: run for label, run in ((config.get("tables", {}).get("rows") or {}).get(name) or {}).items()
           if run is not None}
    if not got:
        raise GridError(f"{name}: config tables.rows.{name} names no run (map the paper's row labels to runs)")
    return dict(got)


def configured(config: dict) -> list[str]:
    """The targets whose rows the config sets: what rule `all` builds."""
    rows = config.get("tables", {}).get("rows") or {}
    return [n for n in TARGETS if (config.get("released") if TARGETS[n].kind == "released"
                                   else any(run is not None for run in (rows.get(n) or {}).values()))]


def benchmarks(config: dict, name: str) -> list[str]:
    t, tab = TARGETS[name], config["tables"]
    return {"eval": lambda: list(config["eval"]["benchmarks"]),
            "ablation": lambda: list(tab.get("benchmarks") or config["eval"]["benchmarks"]),
            "image": lambda: list(tab.get("image_benchmarks") or []),
            "subtask": lambda: list(tab.get("subtask_benchmarks") or tab.get("benchmarks")
                                    or config["eval"]["benchmarks"]),
            "none": lambda: []}[t.benchmarks]()


def frames(config: dict, name: str) -> list[int]:
    t, tab = TARGETS[name], config["tables"]
    if name in ("table1", "table1_released"):
        return list(config["eval"]["frames"])
    if name == "table5":
        return list(tab.get("table5_frames") or config["eval"]["frames"])
    return [] if t.kind == "cost" else [int(tab["frames"])]


def check(config: dict, name: str) -> None:
    """GridError naming the first run or benchmark of `name` that the config lacks."""
    models = {"sft", *config.get("sft_models", {})}
    known = models | set(config["runs"])
    if TARGETS[name].kind == "released":
        known = set(config.get("released") or {})
    for label, run in rows(config, name).items():
        if run not in known:
            raise GridError(f"{name}: row {label!r} names run {run!r}, which is not in config runs "
                            f"(runs and SFT models: {', '.join(sorted(known))})")
        if TARGETS[name].kind == "cost" and run in models:
            raise GridError(f"{name}: row {label!r} names the SFT model {run!r}, which has no RL training log")
    bench = benchmarks(config, name)
    if TARGETS[name].benchmarks != "none" and not bench:
        key = {"image": "tables.image_benchmarks"}.get(TARGETS[name].benchmarks, "tables.benchmarks")
        raise GridError(f"{name}: no benchmark to evaluate ({key} is empty)")
    for b in bench:
        if b not in BENCHMARKS:
            raise GridError(f"{name}: unknown benchmark {b!r}")
        if TARGETS[name].benchmarks == "image" and BENCHMARKS[b].modality != "image":
            raise GridError(f"{name}: {b!r} is a {BENCHMARKS[b].modality} benchmark, Table 3 takes image ones")


def check_all(config: dict) -> None:
    for name in configured(config):
        check(config, name)


def evaluations(config: dict, name: str) -> list[tuple[str, str, int]]:
    """(run, benchmark, frames) of every evaluation summary the target reads."""
    check(config, name)
    runs = list(dict.fromkeys(rows(config, name).values()))
    return [(r, b, f) for r in runs for f in frames(config, name) for b in benchmarks(config, name)]


def summary_paths(config: dict, name: str, out: str) -> list[str]:
    return [f"{out}/eval/{r}/{b}/f{f}.summary.json" for r, b, f in evaluations(config, name)]


def summary_input(config: dict, name: str, out: str):
    """A Snakemake input function: the summaries of `name`'s rows, resolved when the DAG needs them (a target whose
    rows the config does not set fails only when it is asked for, with its GridError)."""
    return lambda wildcards: summary_paths(config, name, out)


def metrics_paths(config: dict, name: str, out: str) -> list[str]:
    """Training logs of a cost target's runs (train/<run>/metrics.json)."""
    check(config, name)
    return [f"{out}/train/{r}/metrics.json" for r in dict.fromkeys(rows(config, name).values())]


def all_evaluations(config: dict) -> set[tuple[str, str, int]]:
    """Every evaluation `all` needs: the eval grid (eval.models x benchmarks x frames) and each target's own."""
    e = config["eval"]
    need = {(m, b, f) for m in e["models"] for b in e["benchmarks"] for f in e["frames"]}
    for name in configured(config):
        need |= set(evaluations(config, name))
    return need


def evaluation_jobs(config: dict) -> dict[tuple[str, int], tuple[str, ...]]:
    """The evaluation jobs of `all` (rule evaluate): one per (model, frames), scoring every benchmark `all` needs of
    that model at that frame count, so that the model is loaded (on the cluster: vLLM started) once for all of them."""
    jobs: dict[tuple[str, int], set[str]] = {}
    for m, b, f in all_evaluations(config):
        jobs.setdefault((m, f), set()).add(b)
    return {k: tuple(sorted(v)) for k, v in sorted(jobs.items())}


def evaluation_job(jobs: dict, model: str, benchmark: str, frames: int) -> tuple[str, ...]:
    """The benchmarks of the job that evaluates (model, benchmark, frames): its job in `jobs` (evaluation_jobs), or
    the benchmark alone for an evaluation `all` does not need (a summary asked for by its path)."""
    mine = jobs.get((model, int(frames)), ())
    return mine if benchmark in mine else (benchmark,)
