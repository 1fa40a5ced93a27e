"""`videoktr <step>`: the command each Snakemake rule calls, and `videoktr ask`. Thin: parse, call the package,
write outputs.

Every step takes `--cfg`, the JSON of the validated config sections it depends on (the Snakefile passes them).
Bad data and config errors end with one line naming the item and the reason, never a bare traceback.
`videoktr table`, `videoktr figure` and `videoktr bench` hand the rest of the command line to the tables, the
figures and the attribution-cost benchmark (`videoktr table --help` and so on list their options).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

log = logging.getLogger("videoktr")


def _write_json(path, obj, keep_same: bool = False) -> None:
    """`keep_same`: a file that already holds this very text is left as it is (its time too), so that a rerun which
    reuses a result (a requeued `train` of a finished run) changes no file of results/."""
    text = json.dumps(obj, indent=1, default=str) + "\n"
    path = Path(path)
    if keep_same and path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _made_before(out, key: str, what: str) -> bool:
    """A finished output of this very command and inputs, left in place (a requeued job, the command repeated):
    logged and reused, not made again (videoktr.provenance.already_made)."""
    from videoktr.provenance import already_made

    if already_made(out, key):
        log.info("%s in %s was made before from these settings and inputs and is as it was written: reusing it, "
                 "not making it again", what, out)
        return True
    return False


def cmd_world(a, cfg):
    from videoktr.data.world import generate_world
    from videoktr.provenance import made_from, mark_made

    key = made_from({"seed": cfg["seed"], "world": cfg["world"]})
    if _made_before(a.out, key, "the world"):
        return
    w = cfg["world"]
    summary = generate_world(a.out, seed=cfg["seed"], n_train=w["n_train"], n_eval=w["n_eval"], frames=w["frames"],
                             size=w["size"], fps=w["fps"])
    mark_made(a.out, key)
    log.info("world: %s", json.dumps(summary))


def cmd_prepare(a, cfg):
    from videoktr.data.records import prepare

    stats = prepare(a.records, a.data_dir, a.out, a.skipped, video_cfg=cfg["video"],
                    max_bad_fraction=cfg["data"]["max_bad_fraction"])
    log.info("prepared %s: %s", a.records, stats)


def cmd_build_model(a, cfg):
    from videoktr.data.prompts import build_question
    from videoktr.data.records import load_json_records
    from videoktr.models.sft import sft_target
    from videoktr.models.tiny import build_tiny_model

    if cfg["model"]["source"] != "tiny":
        raise SystemExit("build-model builds the tiny model only (model.source: tiny); with model.source: hub the "
                         "SFT model is downloaded by `videoktr fetch` (rule sft)")
    from videoktr.provenance import made_from, mark_made

    key = made_from(cfg, a.records)
    if _made_before(a.out, key, "the tiny model"):
        return
    records = load_json_records(a.records)
    texts = [t for r in records for t in (build_question(r), build_question(r, stage="eval"), sft_target(r))]
    v = cfg["video"]
    summary = build_tiny_model(a.out, texts, **cfg["model"]["tiny"], min_pixels=v["min_pixels"],
                               max_pixels=v["max_pixels"], seed=cfg["seed"])
    mark_made(a.out, key)
    log.info("tiny model: %s", summary)


def cmd_sft(a, cfg):
    from videoktr.data.records import load_json_records
    from videoktr.models.sft import train_sft

    from videoktr.provenance import made_from, mark_made

    key = made_from(cfg, a.model, a.records, a.data_dir)
    if _made_before(a.out, key, "the SFT model"):
        return
    metrics = train_sft(a.model, load_json_records(a.records), a.data_dir, a.out, video_cfg=cfg["video"],
                        sft_cfg=cfg["sft"], seed=cfg["seed"])
    _write_json(Path(a.out) / "sft_metrics.json", metrics)
    mark_made(a.out, key)


def cmd_train(a, cfg):
    from videoktr.data.records import load_json_records
    from videoktr.rl.finished import is_retry, keep_metrics
    from videoktr.rl.run import train_run

    try:
        metrics = train_run(a.name, cfg["run"], a.model, load_json_records(a.records), a.data_dir, a.work_dir, a.out,
                            video_cfg=cfg["video"], seed=cfg["seed"],
                            retry_metrics=a.metrics if is_retry(a.attempt) else None)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one writer
            _write_json(a.metrics, metrics, keep_same=True)
            keep_metrics(a.work_dir, a.metrics)  # a retried or requeued job restores it (videoktr.rl.finished)
    finally:
        _close_process_group()


def _close_process_group():
    """Under torchrun, a process that exits with its process group still open can abort in the group's destructor
    ("terminate called without an active exception"), failing a run that finished."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cmd_evaluate(a, cfg):
    """One model at one frame count on every benchmark of `--plan` (rule evaluate): the model is loaded once (on vLLM,
    one engine start) for all of them. Each benchmark is evaluated, then summarized on the question set of its
    current records; a records file `<split>.json` with a `<split>.skipped.json` beside it (rule prepare_split) has
    its dropped records listed in the summary. `--out` holds {benchmark: summary}. A benchmark that cannot be read is
    named and the others are still evaluated; the job then fails, their predictions kept for the rerun to resume."""
    from videoktr.data.records import BadDataError
    from videoktr.eval.backends import BackendUnavailable, make_backend

    try:
        plan = json.loads(a.plan)
        benchmarks = [item["benchmark"] for item in plan]
    except (ValueError, TypeError, KeyError) as err:
        raise SystemExit(f"videoktr evaluate: --plan is not a list of {{benchmark, records, data_dir, predictions}} "
                         f"({err})") from None
    try:
        backend = make_backend(cfg["eval"]["backend"], a.model, seed=cfg["seed"], eval_cfg=cfg["eval"])
    except BackendUnavailable as err:
        raise SystemExit(f"videoktr evaluate: {err}") from None
    summaries, failed = {}, {}
    for item in plan:
        try:
            summaries[item["benchmark"]] = _evaluate_one(backend, item, a, cfg)
        except (BadDataError, OSError) as err:
            log.error("%s on %s at %d frames: %s", a.name, item["benchmark"], a.frames, err)
            failed[item["benchmark"]] = str(err)
    if failed:
        raise BadDataError(f"{len(failed)} of {len(benchmarks)} benchmarks not evaluated: "
                           + "; ".join(f"{b}: {err}" for b, err in failed.items())
                           + " (the predictions made are kept; a rerun resumes them)")
    _write_json(a.out, summaries)


def _evaluate_one(backend, item: dict, a, cfg) -> dict:
    from videoktr.data.records import BadDataError
    from videoktr.eval.evaluate import DEFAULT_ERROR_RETRIES, evaluate_benchmark, read_skipped, summarize
    from videoktr.jsonl import one_writer
    from videoktr.provenance import model_fingerprint

    e, bench, records, predictions = cfg["eval"], item["benchmark"], item["records"], item["predictions"]
    Path(predictions).parent.mkdir(parents=True, exist_ok=True)
    skipped_path = Path(records).with_suffix(".skipped.json") if Path(records).suffix == ".json" else None
    try:
        skipped = read_skipped(skipped_path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise BadDataError(f"cannot read {skipped_path} ({err})") from None
    # one writer per predictions file: another job of this model and frame count whose benchmark list holds this
    # benchmark waits, then finds these rows
    with one_writer(predictions, job=f"the evaluation job of {a.out}"):
        qs = evaluate_benchmark(backend, bench, records, item["data_dir"], predictions, frames=a.frames,
                                video_cfg=cfg["video"], eval_cfg=e, model_key=model_fingerprint(a.model))
        summary = summarize(predictions, model=a.name, benchmark=bench, frames=a.frames, backend=backend.name,
                            protocol=(e.get("protocols") or {}).get(bench), ids=qs["ids"], skipped=skipped,
                            excluded=qs["excluded"],
                            error_retries=int(e.get("error_retries", DEFAULT_ERROR_RETRIES)))
    summary["engine"] = getattr(backend, "engine", None)  # what answered: backend, its version, device
    log.info("%s on %s at %d frames: accuracy %.3f (%d questions, %d answered, %d errors: %d to be retried on the "
             "next run; %d from a retry; %d rows of dropped records left out, %d records skipped by the split's "
             "check)", a.name, bench, a.frames, summary["accuracy"], summary["questions"], summary["answered"],
             summary["errors"], summary["errors_to_retry"], summary["retried"], summary["dropped_rows"],
             len(summary["skipped_ids"]))
    return summary


def cmd_eval_summary(a, cfg):
    """One benchmark's summary out of the file of the evaluation job that made it (rule eval_summary)."""
    try:
        summaries = json.loads(Path(a.job).read_text())
        summary = summaries[a.benchmark]
    except (OSError, ValueError) as err:
        raise SystemExit(f"videoktr eval-summary: unreadable evaluation job file {a.job} ({err})") from None
    except (KeyError, TypeError):
        raise SystemExit(f"videoktr eval-summary: {a.job} holds no summary of {a.benchmark}") from None
    _write_json(a.out, summary)


def cmd_semantics(a, cfg):
    from videoktr.report.semantics import attribution_semantics, words_of
    from videoktr.rl.token_log import read_token_log

    result = attribution_semantics(words_of(read_token_log(a.token_log)))
    log.info("attribution semantics: %s", json.dumps(result["signals"]))
    _write_json(a.out, result)


def cmd_training_summary(a, cfg):
    """analysis/training.json: each RL run's reward rise and where its rollouts leave GRPO's (videoktr.report.training)."""
    from videoktr.report.summaries import read_json
    from videoktr.report.training import training_summary

    metrics = {m["run"]: m for m in (read_json(p, "training log") for p in a.run_metrics)}
    summary = training_summary(metrics, cfg["start"])
    for name, row in summary["runs"].items():
        log.info("%s: %s", name, json.dumps(row))
    _write_json(a.out, summary)


TINY_CAVEAT = ("The embedded tiny world: a tiny model on generated clips, one seed; compare the order of the methods, "
               "not the values, with the paper's.")


def cmd_headline(a, cfg):
    """The report's first page: Table 1's mean accuracies and paired differences (videoktr.report.headline)."""
    from videoktr.report.headline import write_headline

    caveat = TINY_CAVEAT if cfg.get("model", {}).get("source", "tiny") == "tiny" else ""
    rows = write_headline(Path(a.table1), Path(a.out), caveat)
    log.info("headline: %d rows of Table 1 at %s.{png,pdf,csv,html}", len(rows), a.out)


def hub_access(cfg: dict, key: str) -> dict:
    """Mirror and retries of a source: given in --cfg, else from VIDEOKTR_HUB_ACCESS (set by the workflow, keyed by
    the config section: data, model, sft_models.<name>)."""
    from videoktr.data.hub import config_section

    env = json.loads(os.environ.get("VIDEOKTR_HUB_ACCESS") or "{}").get(config_section(key), {})
    return {"mirror": cfg.get("mirror", env.get("mirror")), "retries": cfg.get("retries", env.get("retries", 3))}


def cmd_fetch(a, cfg):
    """Download (or link from a mirror) one hub source's records, media archives or model files; check them."""
    from videoktr.data.hub import BadDownload, HubUnavailable, extract, fetch, write_manifest

    src = cfg["source"]
    access = hub_access(cfg, src.get("config_key", ""))
    # bench-records / bench-media: an evaluation benchmark of config eval.hub, kept in its published layout
    patterns = {"records": [src.get("records")], "media": src.get("media") or [],
                "model": src.get("files") or ["*"], "bench-records": src.get("files") or [src.get("records")],
                "bench-media": src.get("media") or []}[a.what]
    bad: list = []
    try:
        manifest = fetch(src, patterns, Path(a.download_dir), mirror=access["mirror"], retries=access["retries"])
        if a.what in ("media", "bench-media"):
            archives = [Path(a.download_dir) / n for n in manifest["files"] if n.endswith(".zip")]
            # a benchmark's unreadable archive is named and counted; the rest of the benchmark is evaluated
            manifest["extracted_now"] = extract(archives, Path(a.download_dir),
                                                bad=bad if a.what == "bench-media" else None)
    except (HubUnavailable, BadDownload) as err:
        raise SystemExit(f"videoktr fetch: {err}") from None
    out = Path(a.out)
    if a.what == "bench-media":
        manifest["bad_archives"] = bad
        if bad:
            log.warning("%s: %d of %d archive(s) unreadable (%s); the questions on their clips count as errors",
                        src["repo"], len(bad), sum(n.endswith(".zip") for n in manifest["files"]),
                        ", ".join(b["path"] for b in bad))
    if a.what == "bench-media" and bad and not out.exists():
        out.mkdir(parents=True)  # every archive unreadable: an empty clips' folder, each question an error
    if a.what.startswith("bench-") and not out.exists():
        what = "records" if a.what == "bench-records" else "media_dir"
        raise SystemExit(f"videoktr fetch: {src['repo']} ({src.get('config_key', 'eval.hub')}): {out} is not there "
                         f"after the download: fix {src.get('config_key', 'eval.hub')}.{what}")
    if a.what == "records":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        out.symlink_to((Path(a.download_dir) / src["records"]).resolve())
    elif a.what == "model":  # file by file, so that deleting the rule output never deletes the download
        for name in manifest["files"]:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).unlink(missing_ok=True)
            (out / name).symlink_to((Path(a.download_dir) / name).resolve())
        if not (out / "config.json").is_file():
            raise SystemExit(f"videoktr fetch: {src['repo']} has no config.json: not a model checkpoint")
    write_manifest(a.manifest, manifest)
    log.info("%s: %d file(s) at %s (%d checked against a known sha256)", src["repo"], len(manifest["files"]),
             manifest["commit"] or "the mirror", sum(f["checked"] for f in manifest["files"].values()))


def cmd_hub_records(a, cfg):
    """The paper's datasets, converted to the records of every later step; clips under one folder."""
    from videoktr.data.hub import BadDownload, training_records

    sources = cfg["data"]["hub"]
    hub = Path(a.hub_dir)
    try:
        records, stats = training_records(sources, {n: hub / n / "records.json" for n in sources},
                                          {n: hub / n / "files" for n in sources}, Path(a.videos))
    except BadDownload as err:
        raise SystemExit(f"videoktr hub-records: {err}") from None
    log.info("hub records: %s", json.dumps(stats))
    _write_json(a.out, records)


def cmd_filter_shard(a, cfg):
    """One shard of the difficulty filter (resumable through --partial)."""
    from videoktr.eval.backends import BackendUnavailable
    from videoktr.eval.filtering import check_backend, filter_backend, run_shard, select_questions, shard_of
    from videoktr.provenance import model_fingerprint
    from videoktr.data.records import load_json_records

    f, v = cfg["filter"], cfg["video"]
    try:
        check_backend(f["backend"])
        backend = filter_backend(f["backend"], a.model, seed=cfg["seed"], filter_cfg=f, video_cfg=v)
    except BackendUnavailable as err:
        raise SystemExit(f"videoktr filter-shard: {err}") from None
    records = shard_of(select_questions(load_json_records(a.records), f["max_questions"], cfg["seed"]), int(a.shard),
                       f["shards"])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    acc = run_shard(backend, records, a.data_dir, Path(a.partial), Path(a.out), k=f["k"], temperature=f["temperature"],
                    max_new_tokens=f["max_new_tokens"], batch_size=f["batch_size"], video_cfg=v,
                    model_key=model_fingerprint(a.model))
    log.info("filter shard %s of %d: %d questions scored", a.shard, f["shards"], len(acc))


def cmd_filter_gather(a, cfg):
    """Merge the filter shards: accuracy.jsonl, the kept questions and the accuracy histogram (PNG + CSV)."""
    from videoktr.eval.filtering import accuracy_histogram, gather, keep_in_band, select_questions
    from videoktr.data.records import load_json_records

    f = cfg["filter"]
    records = select_questions(load_json_records(a.records), f["max_questions"], cfg["seed"])
    try:
        accuracy = gather([Path(p) for p in a.shards], records, Path(a.scores))
    except ValueError as err:
        raise SystemExit(f"videoktr filter-gather: {err}") from None
    accuracy_histogram(accuracy, f["k"], f["low"], f["high"], Path(a.png), Path(a.csv))
    keep = keep_in_band(accuracy, f["low"], f["high"])
    kept = [r for r in records if r["problem_id"] in keep]
    log.info("difficulty filter kept %d of %d questions (accuracy in [%s, %s])", len(kept), len(records), f["low"],
             f["high"])
    if not kept:
        raise SystemExit(f"difficulty filter kept no question of {len(records)}: widen filter.low/filter.high")
    _write_json(a.out, kept)


def cmd_preflight(a, cfg):
    """Before the long jobs of a GPU study: stop with one line if a GPU part cannot run here."""
    from videoktr.preflight import problems

    found = problems(cfg)
    for p in found:
        log.error("preflight: %s", p)
    if found:
        more = f" (and {len(found) - 1} more problem(s), see the log)" if len(found) > 1 else ""
        raise SystemExit(f"videoktr preflight: {found[0]}{more}")
    _write_json(a.out, {"ok": True})


def cmd_rehearsal_mirror(a, cfg):
    """A local hub of every repository config/paper.yaml downloads, tiny contents in the published layouts
    (videoktr.data.rehearsal_mirror), for data.mirror / model.mirror / sft_models.*.mirror / released.*.mirror /
    eval.mirror."""
    from videoktr.data.rehearsal_mirror import build_rehearsal_mirror

    summary = build_rehearsal_mirror(Path(a.out), seed=int(cfg.get("seed", 0)))
    log.info("rehearsal mirror in %s: %s", a.out, json.dumps({k: v for k, v in summary.items() if k != "models"}))


def cmd_mirror_model(a, cfg):
    """A model's files into a repository folder of a local mirror, as the hub holds them: not its checkpoints'
    folder, the download manifest or dotfiles."""
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(a.model).iterdir()):
        if f.is_file() and f.name != "hub_manifest.json" and not f.name.startswith("."):
            shutil.copyfile(f, out / f.name)  # follows links: a fetched model's files are links into its download
            log.info("%s (%d bytes)", out / f.name, (out / f.name).stat().st_size)


# Steps with a command line of their own: {step: (module, help)}; `videoktr STEP ARGS...` calls module.main(ARGS).
DELEGATED = {
    "table": ("videoktr.report.tables", "a table of the paper from evaluation summaries or training logs: CSV, "
                                        "Markdown and LaTeX"),
    "figure": ("videoktr.report.figures", "a figure of the paper from evaluation summaries or a token log: PNG, PDF "
                                          "and CSV"),
    "bench": ("videoktr.costbench.harness", "the attribution-cost benchmark: Video-KTR steps timed against GRPO "
                                            "steps on identical batches"),
}

# What each argument is, shared by the steps that take it; a step's own wording in STEPS overrides it.
ARGS = {
    "out": "output file (or folder) this step writes",
    "records": "JSON list of Video-R1 records (problem_id, problem, problem_type, options, solution, path)",
    "data_dir": "folder the records' clip paths are relative to",
    "model": "model folder (a Hugging Face Qwen2.5-VL checkpoint: config.json, weights, processor)",
    "name": "the run's or model's name (config `runs`, `eval.models`), as logged and written in the outputs",
    "skipped": "output JSON: every rejected record with its id and reason",
    "work_dir": "folder of the run's checkpoints, token log and gradient diagnostics (a rerun resumes from it)",
    "metrics": "output JSON: the training log (metrics.json: loss, rewards, KL per step, cost, settings)",
    "frames": "frames per clip",
    "attempt": "which try of this job (Snakemake's attempt, 1 the first); a later try, or a SLURM requeue, of a "
               "finished run restores its outputs instead of training again (default 1)",
    "plan": "the benchmarks to evaluate: a JSON list of {benchmark, records, data_dir, predictions}, given inline "
            "or as the path of a JSON file",
    "job": "an evaluation job's output JSON ({benchmark: summary}, rule evaluate)",
    "benchmark": "the benchmark whose summary to copy out of --job",
    "token_log": "a KTR run's token log: folder of Parquet parts (train/<run>/token_log)",
    "run_metrics": "the RL runs' training logs (train/<run>/metrics.json), one or more",
    "what": "what to download: records, media, model, bench-records or bench-media",
    "download_dir": "folder the hub files are downloaded (or linked from the mirror) into",
    "manifest": "output JSON: the download's commit, files and sha256",
    "hub_dir": "folder holding <source>/records.json and <source>/files/ of each data.hub source",
    "videos": "output folder the training clips are gathered under",
    "shard": "which shard of the difficulty filter (0 .. filter.shards - 1)",
    "partial": "JSONL of this shard's scored questions so far (resumed from, appended to)",
    "shards": "the filter shards' outputs (JSONL), all of them",
    "scores": "output JSONL: each question's accuracy over filter.k samples",
    "png": "output PNG: the histogram of per-question accuracy",
    "csv": "output CSV: the histogram's numbers",
    "table1": "Table 1's CSV (tables/table1.csv)",
}
# Arguments that name files or folders the step reads: checked before the step runs, so a wrong path is one line.
INPUTS = {"table1", "records", "data_dir", "model", "job", "token_log", "run_metrics", "hub_dir", "shards", "video"}

# {step: (function, description, {argument: help or None for ARGS'})}: every step, what it does, its arguments.
STEPS = {
    "world": (cmd_world, "generate the tiny world: MP4 clips of coloured shapes and Video-R1 records (config world)",
              {"out": "output folder: videos/*.mp4, train.json, eval_*.json"}),
    "prepare": (cmd_prepare, "check a split's records and clips; keep the good ones, list the rejected with reasons",
                {"records": None, "data_dir": None, "out": "output JSON: the records that passed", "skipped": None}),
    "build-model": (cmd_build_model, "build the tiny random-init Qwen2.5-VL and a tokenizer trained on the records' "
                                     "text (model.source: tiny)",
                    {"records": None, "out": "output model folder"}),
    "sft": (cmd_sft, "supervised fine-tuning of a model on the records' chain-of-thought targets (config sft)",
            {"model": "the model to fine-tune (folder)", "records": None, "data_dir": None,
             "out": "output model folder (with sft_metrics.json)"}),
    "train": (cmd_train, "one RL run (GRPO, Video-KTR, T-GRPO or TW-GRPO; config run), resumable from its "
                         "checkpoints",
              {"name": None, "model": "the starting (SFT) model folder", "records": None, "data_dir": None,
               "work_dir": None, "out": "output model folder", "metrics": None, "attempt": None}),
    "evaluate": (cmd_evaluate, "evaluate one model at one frame count on every benchmark of --plan (resumable)",
                 {"model": None, "name": None, "frames": None, "plan": None,
                  "out": "output JSON: {benchmark: summary}"}),
    "eval-summary": (cmd_eval_summary, "copy one benchmark's summary out of an evaluation job's file",
                     {"job": None, "benchmark": None, "out": "output JSON: the benchmark's summary"}),
    "semantics": (cmd_semantics, "whether the visual and temporal scores pick appearance and motion words "
                                 "(against their base rates)",
                  {"token_log": None, "out": "output JSON (analysis/attribution_semantics.json)"}),
    "training-summary": (cmd_training_summary, "each RL run's reward rise and where its rollouts part from GRPO's",
                         {"run_metrics": None, "out": "output JSON (analysis/training.json)"}),
    "fetch": (cmd_fetch, "download one hub source (records, media, a model or a benchmark) at its pinned revision, "
                         "checked against sha256",
              {"what": None, "download_dir": None, "out": "output path: the records, model folder or media folder",
               "manifest": None}),
    "hub-records": (cmd_hub_records, "convert the paper's downloaded datasets into the records of every later step",
                    {"hub_dir": None, "out": "output JSON: the training records", "videos": None}),
    "filter-shard": (cmd_filter_shard, "one shard of the difficulty filter: each question's accuracy over k samples",
                     {"model": "the SFT model folder", "records": None, "data_dir": None, "shard": None,
                      "partial": None, "out": "output JSONL: this shard's scored questions"}),
    "filter-gather": (cmd_filter_gather, "merge the filter shards: kept questions, accuracy histogram",
                      {"records": None, "shards": None, "scores": None, "png": None, "csv": None,
                       "out": "output JSON: the questions kept for RL"}),
    "headline": (cmd_headline, "the headline of the report's first page: Table 1's mean accuracies with intervals "
                               "and its paired differences", {"table1": None, "out": "output stem: writes STEM.png, "
                                                              "STEM.pdf, STEM.csv, STEM.html"}),
    "preflight": (cmd_preflight, "check that the GPU parts (vLLM, DeepSpeed) can run here; stop with one line if "
                                 "not", {"out": "output JSON, written when every check passed"}),
    "rehearsal-mirror": (cmd_rehearsal_mirror, "build a local hub of every repository config/paper.yaml downloads, "
                                               "with tiny contents (make rehearse)",
                         {"out": "output folder of the mirror"}),
    "mirror-model": (cmd_mirror_model, "copy a model's files into a repository folder of a local mirror",
                     {"model": "the model folder to copy", "out": "output repository folder"}),
}
NARGS = {"shards": "+", "run_metrics": "+"}
TYPES = {"frames": int, "shard": int, "attempt": int}
OPTIONAL = {"attempt": 1}  # arguments with a default; every other one is required


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videoktr")
    except PackageNotFoundError:  # run from a source tree without an install
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="videoktr", description="Video-KTR's steps, one subcommand each (the Snakemake rules call them), and "
        "`videoktr ask` to ask a model about a video. `videoktr STEP --help` describes a step and its arguments.",
        epilog="Bad data and config errors end with one line naming the item and the reason.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="STEP", help="the step to run")
    from videoktr.ask import add_ask_parser

    add_ask_parser(sub)
    for name, (fn, text, args) in STEPS.items():
        s = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        s.add_argument("--cfg", default="{}", help="the config sections this step uses, as JSON or the path of a "
                                                   "JSON file (the Snakefile passes them)")
        for arg, help_text in args.items():
            s.add_argument(f"--{arg.replace('_', '-')}", dest=arg, required=arg not in OPTIONAL,
                           default=OPTIONAL.get(arg), type=TYPES.get(arg, str),
                           nargs=NARGS.get(arg), help=help_text or ARGS[arg],
                           metavar=arg.upper() if arg not in NARGS else None)
        s.set_defaults(fn=fn)
    for name, (module, text) in DELEGATED.items():
        s = sub.add_parser(name, help=text, add_help=False)  # its own parser answers --help
        s.add_argument("argv", nargs=argparse.REMAINDER, help=f"the arguments of `videoktr {name}` "
                                                              f"(`videoktr {name} --help`)")
        s.set_defaults(delegate=module)
    return p


def step_parsers() -> dict[str, argparse.ArgumentParser]:
    """{step: its parser} of every step, the delegated ones' own parsers included (what `STEP --help` prints)."""
    import importlib

    top = parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    out = {name: p for name, p in sub.choices.items() if name not in DELEGATED}
    for name, (module, _) in DELEGATED.items():
        out[name] = importlib.import_module(module).parser(f"videoktr {name}")
    return out


class ArgumentFileError(SystemExit):
    pass


def read_json_argument(value: str, option: str, cmd: str):
    """A JSON argument given inline, or as the path of a JSON file; the error names the option and the file."""
    text = value.strip()
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError as err:
            raise ArgumentFileError(f"videoktr {cmd}: {option} is not valid JSON ({err})") from None
    path = Path(value)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArgumentFileError(f"videoktr {cmd}: {option} {path}: no such file (give JSON inline or the path of a "
                                "JSON file)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ArgumentFileError(f"videoktr {cmd}: {option} {path}: cannot read it ({err})") from None
    except ValueError as err:
        raise ArgumentFileError(f"videoktr {cmd}: {option} {path}: not valid JSON ({err})") from None


def check_inputs(a) -> None:
    """Every file or folder the step reads is there and readable: else one line naming the argument and the path."""
    for arg in sorted(INPUTS & set(vars(a))):
        values = getattr(a, arg)
        for value in values if isinstance(values, list) else [values]:
            path, option = Path(value), f"--{arg.replace('_', '-')}"
            if not path.exists():
                raise ArgumentFileError(f"videoktr {a.cmd}: {option} {path}: no such file or folder")
            if not os.access(path, os.R_OK):
                raise ArgumentFileError(f"videoktr {a.cmd}: {option} {path}: not readable (permission denied)")


def main(argv=None) -> int:
    from videoktr.data.records import BadDataError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in DELEGATED:  # before argparse: the rest of the line, options included, is theirs
        import importlib

        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:], prog=f"videoktr {argv[0]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = parser().parse_args(argv)
    try:
        check_inputs(a)
        cfg = read_json_argument(a.cfg, "--cfg", a.cmd) if hasattr(a, "cfg") else {}
        if hasattr(a, "plan"):
            a.plan = json.dumps(read_json_argument(a.plan, "--plan", a.cmd))
        a.fn(a, cfg)
    except ArgumentFileError as e:
        print(e, file=sys.stderr)
        return 2
    except BadDataError as e:
        log.error("%s", e)
        print(f"videoktr {a.cmd}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
