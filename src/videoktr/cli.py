"""`videoktr <step>`: the command each Snakemake rule calls. Thin: parse, call the package, write outputs.

Every step takes `--cfg`, the JSON of the validated config sections it depends on (the Snakefile passes them).
Bad data and config errors end with one line naming the item and the reason, never a bare traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from pathlib import Path

log = logging.getLogger("videoktr")


def _write_json(path, obj) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=1, default=str) + "\n")


def cmd_world(a, cfg):
    from videoktr.world import generate_world

    w = cfg["world"]
    summary = generate_world(a.out, seed=cfg["seed"], n_train=w["n_train"], n_eval=w["n_eval"], frames=w["frames"],
                             size=w["size"], fps=w["fps"])
    log.info("world: %s", json.dumps(summary))


def cmd_prepare(a, cfg):
    from videoktr.records import prepare

    stats = prepare(a.records, a.data_dir, a.out, a.skipped, video_cfg=cfg["video"],
                    max_bad_fraction=cfg["data"]["max_bad_fraction"])
    log.info("prepared %s: %s", a.records, stats)


def cmd_build_model(a, cfg):
    from videoktr.prompts import build_question
    from videoktr.records import load_json_records
    from videoktr.sft import sft_target
    from videoktr.tiny_model import build_tiny_model

    if cfg["model"]["source"] != "tiny":
        raise SystemExit("model.source 'hub' is the paper-scale path, which is not built yet: use config/config.yaml")
    records = load_json_records(a.records)
    texts = [t for r in records for t in (build_question(r), build_question(r, stage="eval"), sft_target(r))]
    v = cfg["video"]
    summary = build_tiny_model(a.out, texts, **cfg["model"]["tiny"], min_pixels=v["min_pixels"],
                               max_pixels=v["max_pixels"], seed=cfg["seed"])
    log.info("tiny model: %s", summary)


def cmd_sft(a, cfg):
    from videoktr.records import load_json_records
    from videoktr.sft import train_sft

    metrics = train_sft(a.model, load_json_records(a.records), a.data_dir, a.out, video_cfg=cfg["video"],
                        sft_cfg=cfg["sft"], seed=cfg["seed"])
    _write_json(Path(a.out) / "sft_metrics.json", metrics)


def cmd_filter(a, cfg):
    from videoktr.filtering import keep_in_band, run_filter
    from videoktr.generation import TransformersBackend
    from videoktr.records import load_json_records

    f = cfg["filter"]
    records = load_json_records(a.records)
    if f["max_questions"] and len(records) > f["max_questions"]:  # a seeded subset: the tiny world's time budget
        keep = set(random.Random(cfg["seed"]).sample(range(len(records)), f["max_questions"]))
        records = [r for i, r in enumerate(records) if i in keep]
    backend = TransformersBackend(a.model, seed=cfg["seed"])
    accuracy = run_filter(backend, records, a.data_dir, a.scores, k=f["k"], temperature=f["temperature"],
                          max_new_tokens=f["max_new_tokens"], batch_size=f["batch_size"], video_cfg=cfg["video"])
    keep = keep_in_band(accuracy, f["low"], f["high"])
    kept = [r for r in records if r["problem_id"] in keep]
    log.info("difficulty filter kept %d of %d questions (accuracy in [%s, %s])", len(kept), len(records), f["low"],
             f["high"])
    if not kept:
        raise SystemExit(f"difficulty filter kept no question of {len(records)}: widen filter.low/filter.high")
    _write_json(a.out, kept)


def cmd_train(a, cfg):
    from videoktr.records import load_json_records
    from videoktr.rl import train_run

    metrics = train_run(a.name, cfg["run"], a.model, load_json_records(a.records), a.data_dir, a.work_dir, a.out,
                        video_cfg=cfg["video"], seed=cfg["seed"])
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one writer
        _write_json(a.metrics, metrics)


def cmd_evaluate(a, cfg):
    from videoktr.evaluation import evaluate_benchmark, summarize
    from videoktr.generation import BackendUnavailable, make_backend

    e = cfg["eval"]
    Path(a.predictions).parent.mkdir(parents=True, exist_ok=True)
    try:
        backend = make_backend(e["backend"], a.model, seed=cfg["seed"], eval_cfg=e)
    except BackendUnavailable as err:
        raise SystemExit(f"videoktr evaluate: {err}") from None
    evaluate_benchmark(backend, a.benchmark, a.records, a.data_dir, a.predictions, frames=a.frames,
                       video_cfg=cfg["video"], eval_cfg=e)
    summary = summarize(a.predictions, model=a.name, benchmark=a.benchmark, frames=a.frames, backend=backend.name,
                        protocol=(e.get("protocols") or {}).get(a.benchmark))
    log.info("%s on %s at %d frames: accuracy %.3f (%d answered, %d errors)", a.name, a.benchmark, a.frames,
             summary["accuracy"], summary["answered"], summary["errors"])
    _write_json(a.out, summary)


def cmd_table1(a, cfg):
    from videoktr.tables import load_summaries, table1, write_table

    write_table(table1(load_summaries(a.summaries)), Path(a.csv), Path(a.md),
                "Table 1: accuracy (%) per method, benchmark and frame count")


def cmd_semantics(a, cfg):
    from videoktr.analysis import attribution_semantics, read_token_log, words_of

    result = attribution_semantics(words_of(read_token_log(a.token_log)))
    log.info("attribution semantics: %s", json.dumps(result["signals"]))
    _write_json(a.out, result)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="videoktr", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, *args):
        s = sub.add_parser(name)
        s.add_argument("--cfg", default="{}", help="JSON of the config sections this step uses")
        for arg in args:
            kind = int if arg == "frames" else str
            s.add_argument(f"--{arg.replace('_', '-')}", dest=arg, required=True, type=kind,
                           nargs="+" if arg == "summaries" else None)
        s.set_defaults(fn=fn)

    add("world", cmd_world, "out")
    add("prepare", cmd_prepare, "records", "data_dir", "out", "skipped")
    add("build-model", cmd_build_model, "records", "out")
    add("sft", cmd_sft, "model", "records", "data_dir", "out")
    add("filter", cmd_filter, "model", "records", "data_dir", "scores", "out")
    add("train", cmd_train, "name", "model", "records", "data_dir", "work_dir", "out", "metrics")
    add("evaluate", cmd_evaluate, "model", "name", "benchmark", "records", "data_dir", "frames", "predictions", "out")
    add("table1", cmd_table1, "summaries", "csv", "md")
    add("semantics", cmd_semantics, "token_log", "out")
    return p


def main(argv=None) -> int:
    from videoktr.records import BadDataError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = parser().parse_args(argv)
    try:
        a.fn(a, json.loads(a.cfg))
    except BadDataError as e:
        log.error("%s", e)
        print(f"videoktr {a.cmd}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
