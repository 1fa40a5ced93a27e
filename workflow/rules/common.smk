# Every global and helper shared by the files of workflow/rules/: each of them reads only these and its own, so the
# order they are included in does not matter.
import json
import os

from videoktr.config import released_models, sft_models
from videoktr.preflight import needs_gpu as preflight_needed
from videoktr.report import grid
from videoktr.report.report_view import ReportParam, category as _category

RUN = config["run_name"]
# The models RL starts from, each built (tiny) or fetched (hub) into models/<name>: `sft` (config model), sft_models.
SFT_MODELS = sft_models(config)
# Released checkpoints (config `released`), evaluated as they are: each fetched into models/<name> by rule `released`
# (workflow/rules/sft.smk); one with `mirror_from` is first saved by rule `released_mirror` into MIRROR/<repo>, the
# mirror it is fetched from (the tiny world's release).
MIRROR = f"results/{config['run_name']}/mirror"
RELEASED = {name: dict(sec, mirror=MIRROR if sec["mirror_from"] else sec["mirror"])
            for name, sec in released_models(config).items()}
OUT = f"results/{RUN}"
WORLD = f"{OUT}/data/world"
VIDEOS = f"{WORLD}/videos"  # the clips' folder, an output of rule world (tiny or hub)
FILTERED_TRAIN = f"{OUT}/data/filtered/train.json"  # the difficulty filter's kept questions: what RL trains on
# GPU parts (vLLM, DeepSpeed) are checked on a GPU node before any long job (by `preflight`); the downloads wait for it.
PREFLIGHT = f"{OUT}/preflight.json" if preflight_needed(config) else []
# Threads: every rule declares 1. Snakemake sets OMP_NUM_THREADS (and the BLAS thread counts) to a job's threads, and
# torch takes its intra-op thread count from it, so the torch steps (sft, filter_shard, train, evaluate) compute with
# exactly the threads declared; the clip decoder and x264 run one thread each. `--cores 2` runs two jobs at once; the
# profiles raise the threads of the heavy rules (set-threads).
# Starts `videoktr` once per node under SLURM (torchrun across the allocation), plainly elsewhere.
LAUNCH = os.path.join(os.path.dirname(os.path.realpath(workflow.main_snakefile)), "scripts", "launch.sh")


def cfg(*sections):
    """JSON of the config sections a job reads; as a param, a change there reruns just the jobs that read it."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


def data_dir(wildcards, input):
    """Record paths are relative to the folder that holds the clips."""
    return os.path.dirname(input.videos)


def model_section_key(name):
    """The config section of SFT model `name`: model, or sft_models.<name>."""
    return "model" if name == "sft" else f"sft_models.{name}"


def hub_cfg(source, key):
    """JSON of one hub source (repo, revision, files, sha256; config key `key`): what the download is. How the hub is
    reached (mirror, retries) is not a param, so switching to a mirror does not rerun the study: the downloads run
    on this host (localrules) and read it from VIDEOKTR_HUB_ACCESS below."""
    return json.dumps({"source": dict(source, config_key=key)}, sort_keys=True)


# {config section: {mirror, retries}} for `videoktr fetch` (videoktr.cli), in the environment of local jobs
os.environ.update(VIDEOKTR_HUB_ACCESS=json.dumps(
    {section: {"mirror": sec.get("mirror"), "retries": sec.get("retries", 3)}
     for section, sec in [("data", config["data"]), ("eval", config["eval"]),
                          *[(model_section_key(n), s) for n, s in SFT_MODELS.items()],
                          *[(f"released.{n}", s) for n, s in RELEASED.items()]]}))


def data_hub_cfg(dataset):
    return hub_cfg(config["data"]["hub"][dataset], f"data.hub.{dataset}")


def model_hub_cfg(name):
    return hub_cfg(SFT_MODELS[name]["hub"], f"{model_section_key(name)}.hub")


def released_hub_cfg(name):
    return hub_cfg(RELEASED[name]["hub"], f"released.{name}.hub")


def model_cfg(name, *sections):
    """cfg() with `model` = the section of SFT model `name`."""
    return json.dumps({**{s: config[s] for s in sections}, "model": SFT_MODELS[name]}, sort_keys=True)


def eval_job_cfg(benchmarks):
    """What one evaluation job reads: the grid's lists (models, benchmarks, frames) and the protocols and files of the
    benchmarks it does not evaluate stay out, so adding a model or a frame count does not rerun every evaluation."""
    # eval.hub: only its benchmarks' entries (what their downloads are); eval.mirror, eval.retries say how the hub is
    # reached, not what is evaluated: changing them reruns no evaluation
    e = {k: v for k, v in config["eval"].items()
         if k not in ("models", "benchmarks", "frames", "protocols", "files", "hub", "mirror", "retries")}
    for key in ("protocols", "files", "hub"):
        mine = {b: v for b, v in (config["eval"].get(key) or {}).items() if b in benchmarks and v is not None}
        if mine:
            e[key] = mine
    return json.dumps({"seed": config["seed"], "video": config["video"], "eval": e}, sort_keys=True)


# ---------------------------------------------------------------------------------------------- tables and figures
# Which runs, benchmarks and frame counts each table and figure needs (videoktr.report.grid, config `tables`).
try:
    grid.check_all(config)
except grid.GridError as e:
    raise WorkflowError(f"config tables: {e}") from None

TABLES = f"{OUT}/tables"
FIGURES = f"{OUT}/figures"
REFERENCE = config["tables"]["reference"]
# What videoktr.report.grid reads; not cfg(): its sorted keys would lose the order of each table's rows.
GRID_CFG = ReportParam(json.dumps({s: config[s] for s in ("tables", "eval", "runs", "model", "sft_models")}))
# ... and of the released block (Table 1's released checkpoints): `released` too, in that table's params only
RELEASED_GRID_CFG = ReportParam(json.dumps({s: config[s] for s in ("tables", "eval", "runs", "model", "sft_models",
                                                                   "released")}))


def report_category(wildcards):
    """The report category of a table or figure: its part of the paper (videoktr.report.report_view)."""
    return _category(wildcards.get("table") or wildcards.get("fig"))
ACCURACY_TABLES = [n for n in grid.TABLES if grid.TARGETS[n].kind != "cost"]  # rule table
COST_TABLES = [n for n in grid.TABLES if grid.TARGETS[n].kind == "cost"]  # rule cost_table
ACCURACY_FIGURES = list(grid.FIGURES)  # rule accuracy_figure

# The token-log run (config analysis.token_log_run): its token log and gradient diagnostics feed Figs. 2, 4-6, 11, 12
# and the attribution semantics. Left at its default and absent from `runs`, those are not built.
TOKEN_LOG_RUN = config["analysis"]["token_log_run"]
if TOKEN_LOG_RUN in config["runs"] and config["runs"][TOKEN_LOG_RUN]["method"] != "ktr":
    raise WorkflowError(f"config error at analysis.token_log_run: run {TOKEN_LOG_RUN!r} is a "
                        f"{config['runs'][TOKEN_LOG_RUN]['method']} run; the token log is written by ktr runs only")
if TOKEN_LOG_RUN not in config["runs"] and TOKEN_LOG_RUN != "ktr":
    raise WorkflowError(f"config error at analysis.token_log_run: {TOKEN_LOG_RUN!r} is not in config runs "
                        f"(ktr runs: {', '.join(n for n, r in config['runs'].items() if r['method'] == 'ktr')})")
HAS_TOKEN_LOG = TOKEN_LOG_RUN in config["runs"]
TOKEN_LOG_METRICS = f"{OUT}/train/{TOKEN_LOG_RUN}/metrics.json"  # its folder train/<run>/ holds token_log/

SPACY_MODEL = config["analysis"]["spacy_model"]  # the validated config has the schema's defaults filled in
POS_MAX = config["analysis"]["pos_max_completions"]
POS_ARGS = f"--spacy-model {SPACY_MODEL}" + (f" --max-completions {POS_MAX}" if POS_MAX else "")
# The figures of the token-log run (rules token_figure, token_figure_html): {figure: what `videoktr figure` reads
# from the run's folder {run}, and its options}. Those in TOKEN_FIGURES_HTML also write an HTML page.
TOKEN_FIGURES = {
    "fig2": "--token-log {run}/token_log",  # key tokens of one response
    "fig4": f"--token-log {{run}}/token_log {POS_ARGS}",  # parts of speech (spaCy)
    "fig5": "--token-log {run}/token_log",  # overlap of E, V, T
    "fig6": f"--token-log {{run}}/token_log {POS_ARGS}",  # word clouds (spaCy)
    "fig11": "--gradients {run}/gradients.csv",  # gradient diagnostics
    "fig12": "--token-log {run}/token_log",  # selection by position
}
TOKEN_FIGURES_HTML = ["fig2"]


def token_figure_args(wildcards, input):
    return TOKEN_FIGURES[wildcards.fig].format(run=os.path.dirname(input.metrics))


def out_stem(wildcards, output):
    """The output path without its extension: `--out` of `videoktr table` and `videoktr figure`."""
    return os.path.splitext(output.csv)[0]


def target_files(name):
    """The files a table or figure (a grid target or a token figure) is written to."""
    if name.startswith("table"):
        return [f"{TABLES}/{name}.{ext}" for ext in ("csv", "md", "tex", "html")]
    html = ["html"] if name in TOKEN_FIGURES_HTML else []
    return [f"{FIGURES}/{name}.{ext}" for ext in ("png", "pdf", "csv", *html)]


ATTRIBUTION_SEMANTICS = f"{OUT}/analysis/attribution_semantics.json"
# every RL run the DAG trains (those an evaluation of `all` needs), for analysis/training.json
TRAINED_RUNS = [r for r in config["runs"] if r in {m for m, _, _ in grid.all_evaluations(config)}]
TRAINING_SUMMARY = f"{OUT}/analysis/training.json"


# -- benchmarks of eval.hub: downloaded by benchmarks.smk, read by the evaluations (eval.smk) --
from videoktr.eval.benchmarks import BENCHMARKS, eval_paths, hub_dir as _bench_hub_dir

BENCH_HUB = config["eval"].get("hub") or {}
BENCHMARK_NAMES = "|".join(BENCHMARKS)  # a wildcard constraint
# {(model, frames): benchmarks}: the evaluation jobs of `all`, one per model and frame count (rule evaluate)
EVAL_JOBS = grid.evaluation_jobs(config)
BENCH_HUB_MEDIA = [n for n, s in BENCH_HUB.items() if s.get("media") and BENCHMARKS[n].media]


def bench_hub_cfg(name):
    return hub_cfg(BENCH_HUB[name], f"eval.hub.{name}")


def bench_hub_inputs(name):
    """The manifests an evaluation of benchmark `name` waits for ([] unless it is in eval.hub)."""
    if name not in BENCH_HUB:
        return []
    return [f"{_bench_hub_dir(name, OUT)}/records.manifest.json"] + (
        [f"{_bench_hub_dir(name, OUT)}/media.manifest.json"] if name in BENCH_HUB_MEDIA else [])


# -- evaluation (eval.smk) --
def benchmark_inputs(benchmark):
    """The files evaluating `benchmark` reads: a benchmark of eval.hub, its download's manifests (rules bench_records,
    bench_media: the files stay in their published layout under data/benchmarks/<name>/files/); a tiny split, its
    records, the records prepare_split dropped (<split>.skipped.json, listed in the summary) and the clips' folder;
    the others, the records file or folder and the media folder (image benchmarks embed their images)."""
    if benchmark in BENCH_HUB:
        return bench_hub_inputs(benchmark)
    records, media = eval_paths(benchmark, config["eval"], out=OUT, world=WORLD)
    if BENCHMARKS[benchmark].tiny_split:
        return [records, os.path.splitext(records)[0] + ".skipped.json", VIDEOS]
    return [records] + ([media] if BENCHMARKS[benchmark].media else [])


def eval_job_inputs(wildcards):
    """Rule evaluate's inputs besides the model: those of each of its benchmarks, each file once."""
    return list(dict.fromkeys(f for b in wildcards.benchmarks.split("+") for f in benchmark_inputs(b)))


def eval_plan(wildcards):
    """JSON of what `videoktr evaluate` does per benchmark: where its records and media are, where its predictions go."""
    plan = []
    for b in wildcards.benchmarks.split("+"):
        records, data_dir = eval_paths(b, config["eval"], out=OUT, world=WORLD)
        plan.append({"benchmark": b, "records": records, "data_dir": data_dir,
                     "predictions": f"{OUT}/eval/{wildcards.model}/{b}/f{wildcards.frames}.jsonl"})
    return json.dumps(plan)


def eval_job_file(wildcards):
    """The file of the evaluation job that scores (model, benchmark, frames)."""
    names = grid.evaluation_job(EVAL_JOBS, wildcards.model, wildcards.benchmark, wildcards.frames)
    return f"{OUT}/eval/{wildcards.model}/f{wildcards.frames}.{'+'.join(names)}.json"
