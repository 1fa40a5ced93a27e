"""The rehearsal of the paper study (`make rehearse`, docs/rehearsal.md): config/paper.yaml's DAG, shrunk in size only
by config/rehearsal.yaml, through profiles/slurm on the one-node SLURM of scripts/slurm-local.sh, against a local hub
in the published layouts (videoktr.data.rehearsal_mirror); then the checks below, on the rehearsal's own outputs.

    python -m videoktr.rehearsal [--jobs 2] [--check-only] [-- EXTRA SNAKEMAKE ARGS]

Writes results/rehearsal/rehearsal.json: wall time, jobs run, and each check with what it read. Exits 1 when the
workflow or a check fails.

The checks (what the paper fixes, read from the runs, not from the config):
  video_input_*     every training and filtering clip at most video.train_frames frames of at most video.max_pixels
                    (128x28x28: at most 1,024 video tokens a clip), short clips fewer frames; every video evaluation
                    at most its frame count, of at most eval.max_pixels (256x28x28) a frame
  holmes_unfiltered the Video-Holmes training questions are all in the RL set; Video-R1's only inside the band
  trained_with      each RL run trained with the paper config's settings for its row (lr, beta, generations,
                    temperature, schedule, weight decay, grad-norm, KL estimator, pixel cap, ratio, signals, ...)
  targets           every table and figure of the paper is a target of the rehearsal, and its files exist
  bad_input         the corrupt clip is named and counted by the split check, and the broken zip in the manifest
  engines           the filter and every evaluation sampled with the backend the config names (vLLM: its version),
                    read from the filter rows and the summaries; also written as `engines` in rehearsal.json, with
                    `engines.train.<run>`: world size, ZeRO stage, accelerator, padded widths and parameter share
  zero3_training    every RL run trained on 2 ranks under ZeRO-3, loaded partitioned, with ragged lengths somewhere
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

PAPER, OVERLAY, PROFILE = "config/paper.yaml", "config/rehearsal.yaml", "profiles/slurm/config.yaml"
TOKEN_FIGURES = ["fig2", "fig4", "fig5", "fig6", "fig11", "fig12"]
# The paper profile asks for 4 nodes x 8 GPUs per training run: on a 2-CPU node every rule gets the same kind of
# request, scaled down (one node, one task, one CPU, no GPU).
# Offline; RL over two ranks with DeepSpeed's CPU accelerator, as GPU nodes run it (scripts/launch.sh; sbatch passes
# the environment on to every job, preflight's engine start included)
REHEARSAL_ENV = {"HF_HUB_OFFLINE": "1", "VIDEOKTR_CPU_RANKS": "2", "DS_ACCELERATOR": "cpu"}
SCALED = {"nodes": 1, "tasks": 1, "cpus_per_task": 1, "mem_mb": 3000, "runtime": 60, "gpu": 0}


def load_config(root: Path) -> dict:
    """config/paper.yaml with config/rehearsal.yaml merged over it as Snakemake merges --configfile's, validated."""
    from snakemake.utils import update_config

    from videoktr.config import validate

    config = yaml.safe_load((root / PAPER).read_text())
    update_config(config, yaml.safe_load((root / OVERLAY).read_text()))
    return validate(config)


def snakemake_args(root: Path, jobs: int) -> list[str]:
    """`snakemake all` through profiles/slurm, on the paper config with the overlay, every rule's resources scaled."""
    profile = yaml.safe_load((root / PROFILE).read_text())
    scaled = [f"{rule}:{k}={v}" for rule in profile.get("set-resources", {}) for k, v in SCALED.items()]
    return ["all", "--profile", "profiles/slurm", "--configfile", PAPER, OVERLAY, "--jobs", str(jobs),
            "--retries", "0", "--default-resources", *[f"{k}={v}" for k, v in SCALED.items()],
            "--set-resources", *scaled]


# ------------------------------------------------------------------------------------------------------ checks


def _check(name: str, ok: bool, detail) -> dict:
    return {"check": name, "ok": bool(ok), "detail": detail}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_video_input(config: dict, out: Path) -> list[dict]:
    from videoktr.data.model_inputs import merge_video_stats

    v, e = config["video"], config["eval"]
    frames, pixels = int(v["train_frames"]), int(v["max_pixels"])
    # Qwen2.5-VL: a token per 2 frames (temporal patch) x 28x28 pixels (patch 14, merged 2x2)
    tokens = frames // 2 * pixels // (28 * 28)

    def within(stats, max_frames, max_pixels, max_tokens):
        return bool(stats) and stats["clips"] > 0 and stats["frames_max"] <= max_frames and \
            stats["pixels_per_frame_max"] <= max_pixels and stats["tokens_max"] <= max_tokens

    checks = []
    train = {p.parent.name: json.loads(p.read_text()).get("video_input")
             for p in sorted(out.glob("train/*/metrics.json"))}
    checks.append(_check("video_input_train", train and all(within(s, frames, pixels, tokens) for s in train.values()),
                         {"bound": {"frames": frames, "pixels_per_frame": pixels, "tokens": tokens}, "runs": train}))
    rows = [r.get("video_input") for p in sorted(out.glob("data/filtered/shards/*.jsonl"))
            if not p.name.endswith(".partial.jsonl") for r in _jsonl(p)]
    merged = merge_video_stats(rows)
    short = sum(1 for s in rows if s and s["frames_max"] < frames)
    ok = None not in rows and within(merged, frames, pixels, tokens) and short > 0
    checks.append(_check("video_input_filter", ok,
                         {"bound": {"frames": frames, "pixels_per_frame": pixels, "tokens": tokens},
                          "questions": len(rows), "clips_with_fewer_frames": short, "seen": merged}))
    evals, bad = {}, []
    for p in sorted(out.glob("eval/*/*/f*.summary.json")):
        s = json.loads(p.read_text())
        stats = s.get("video_input")
        if stats is None:  # image benchmarks
            continue
        f = int(s["frames"])
        evals[str(p.relative_to(out))] = stats
        if not within(stats, f, int(e["max_pixels"]), f // 2 * int(e["max_pixels"]) // (28 * 28)):
            bad.append(str(p.relative_to(out)))
    checks.append(_check("video_input_eval", evals and not bad,
                         {"bound": {"pixels_per_frame": e["max_pixels"], "frames": "the evaluation's frame count"},
                          "frame_counts": sorted({json.loads((out / k).read_text())["frames"] for k in evals}),
                          "outside": bad, "summaries": len(evals)}))
    return checks


def check_holmes_unfiltered(config: dict, out: Path) -> dict:
    from videoktr.eval.filtering import bypasses_filter

    clean = json.loads((out / "data/clean/train.json").read_text())
    kept = {r["problem_id"] for r in json.loads((out / "data/filtered/train.json").read_text())}
    acc = {r["problem_id"]: r["accuracy"] for r in _jsonl(out / "data/filtered/accuracy.jsonl")}
    lo, hi = config["filter"]["low"], config["filter"]["high"]
    holmes = [r["problem_id"] for r in clean if bypasses_filter(r["problem_id"])]
    others = [r["problem_id"] for r in clean if r["problem_id"] not in set(holmes)]
    in_band = {p for p in others if p in acc and lo <= acc[p] <= hi}
    # Video-R1's questions in the band are what the filter has to find: none in it would make this check vacuous
    ok = bool(holmes) and set(holmes) <= kept and kept - set(holmes) == in_band and bool(in_band)
    return _check("holmes_unfiltered", ok, {
        "holmes_questions": len(holmes), "holmes_kept": len(set(holmes) & kept),
        "holmes_outside_band": sum(1 for p in holmes if p in acc and not lo <= acc[p] <= hi),
        "video_r1_questions": len(others), "video_r1_in_band": len(in_band), "video_r1_kept": len(kept - set(holmes)),
        "band": [lo, hi]})


def expected_settings(paper: dict, run: str) -> dict:
    """What run `run` of the paper config trains with, in trained_with's names (sizes left out)."""
    from videoktr.config import ktr_knob_defaults
    r = paper["runs"][run]
    t = {**paper["train"], **(r.get("train") or {})}
    want = {"learning_rate": t["lr"], "beta": t["beta"], "num_generations": t["num_generations"],
            "temperature": t["temperature"], "loss_type": t["loss_type"],
            "per_device_train_batch_size": t["per_device_batch_size"], "lr_scheduler_type": t["lr_scheduler_type"],
            "weight_decay": t["weight_decay"], "max_grad_norm": t["max_grad_norm"], "kl_estimator": t["kl_estimator"],
            "video_pixels": [paper["video"]["min_pixels"], paper["video"]["max_pixels"]]}
    if r["method"] == "ktr":
        want.update({k: r[k] for k in ktr_knob_defaults()})
    elif r["method"] == "tgrpo":
        want.update(tgrpo_mu=r["tgrpo_mu"], tgrpo_alpha=r["tgrpo_alpha"], temporal_unit=r["temporal_unit"])
    elif r["method"] == "twgrpo":
        want.update(twgrpo_alpha=r["twgrpo_alpha"])
    return want


def check_trained_with(paper: dict, out: Path) -> dict:
    runs, differ = {}, {}
    for p in sorted(out.glob("train/*/metrics.json")):
        run = p.parent.name
        got = json.loads(p.read_text()).get("trained_with") or {}
        want = expected_settings(paper, run)
        runs[run] = want
        diff = {k: {"paper": v, "trained": got.get(k)} for k, v in want.items() if got.get(k) != v}
        if diff:
            differ[run] = diff
    return _check("trained_with", runs and not differ, {"runs": sorted(runs), "differ": differ})


def check_targets(config: dict, out: Path) -> dict:
    from videoktr.report import grid

    missing_targets = sorted(set(grid.TARGETS) - set(grid.configured(config)))
    files = [out / f"tables/{n}.{x}" for n in grid.TABLES for x in ("csv", "md", "tex")]
    files += [out / f"figures/{n}.{x}" for n in [*grid.FIGURES, *TOKEN_FIGURES] for x in ("png", "pdf", "csv")]
    missing = [str(f.relative_to(out)) for f in files if not f.is_file()]
    return _check("targets", not missing_targets and not missing,
                  {"tables_and_figures": len(grid.TARGETS) + len(TOKEN_FIGURES), "not_targets": missing_targets,
                   "missing_files": missing})


def check_bad_input(out: Path) -> dict:
    """The mirror's bad input, each named with its id or path and counted, the rest evaluated: a corrupt training
    clip (the split check), a zip that is not a zip (the media manifest), a malformed benchmark row and a record
    without its clip (error rows of the evaluations)."""
    skipped = json.loads((out / "data/clean/train.skipped.json").read_text())
    manifests = {p.parent.name: json.loads(p.read_text()) for p in out.glob("data/benchmarks/*/media.manifest.json")}
    bad_zips = {n: m.get("bad_archives") for n, m in manifests.items() if m.get("bad_archives")}
    corrupt = [s for s in skipped if "cannot decode" in str(s.get("reason", ""))]
    errors, answered = {}, 0
    for p in sorted(out.glob("eval/*/*/f*.summary.json")):
        s = json.loads(p.read_text())
        answered += s["answered"]
        errors.update({f"{s['benchmark']}/{k}": v for k, v in s["error_ids"].items()})
    malformed = {k: v for k, v in errors.items() if v.startswith("malformed")}
    no_clip = {k: v for k, v in errors.items() if "no such file" in v}
    return _check("bad_input", bool(corrupt) and bool(bad_zips) and bool(malformed) and bool(no_clip) and answered > 0,
                  {"skipped_training_records": skipped, "benchmark_bad_archives": bad_zips,
                   "malformed_benchmark_rows": malformed, "records_without_their_clip": no_clip,
                   "questions_answered": answered})


def engines(config: dict, out: Path) -> dict:
    """What sampled in the filter and the evaluation, read from their outputs (each filter row and summary records
    its backend's `engine`), beside what the config asked."""
    def seen(rows):
        got = {json.dumps(r["engine"], sort_keys=True) for r in rows if r.get("engine")}
        return [json.loads(g) for g in sorted(got)]

    filt = seen(r for p in sorted(out.glob("data/filtered/shards/*.jsonl")) if not p.name.endswith(".partial.jsonl")
                for r in _jsonl(p))
    ev = seen(json.loads(p.read_text()) for p in sorted(out.glob("eval/*/*/f*.summary.json")))
    versions = sorted({e["version"] for e in filt + ev if e["backend"] == "vllm"})
    one = lambda found: found[0]["backend"] if len({e["backend"] for e in found}) == 1 else found  # noqa: E731
    return {"filter": {"backend": one(filt), "asked": config["filter"]["backend"], "seen": filt},
            "evaluate": {"backend": one(ev), "asked": config["eval"]["backend"], "seen": ev},
            "vllm_version": versions[0] if len(versions) == 1 else versions or None}


def train_engines(out: Path) -> dict:
    """Per RL run, how it trained (metrics.json `engine`): world size, ZeRO stage, accelerator, per rank its padded
    completion widths per step and local parameter share; `ragged`: whether the ranks' widths differed in a step."""
    runs = {}
    for path in sorted(out.glob("train/*/metrics.json")):
        m = json.loads(path.read_text())
        e = m.get("engine") or {}
        widths = [r.get("padded_completion_lengths") or [] for r in e.get("ranks") or []]
        use_vllm = (m.get("trained_with") or {}).get("use_vllm")
        runs[m["run"]] = {"world_size": e.get("world_size"), "deepspeed_zero_stage": e.get("deepspeed_zero_stage"),
                          "accelerator": e.get("accelerator"), "rollouts": "vllm" if use_vllm else "generate",
                          "padded_completion_lengths": widths,
                          "local_parameter_share": [r.get("local_parameter_share") for r in e.get("ranks") or []],
                          "ragged": any(len(set(step)) > 1 for step in zip(*widths))}
    return runs


def check_engines(config: dict, out: Path) -> dict:
    e = engines(config, out)
    e["train"] = train_engines(out)
    ok = all(e[k]["backend"] == e[k]["asked"] for k in ("filter", "evaluate")) and (
        "vllm" not in (e["filter"]["asked"], e["evaluate"]["asked"]) or isinstance(e["vllm_version"], str))
    return _check("engines", ok, e)


def check_zero3_training(out: Path) -> dict:
    """Every RL run trained as the cluster trains: 2 ranks, ZeRO-3, each rank holding about half the parameters
    (loaded partitioned); and in some run and step the ranks' padded completion lengths differed (ragged)."""
    runs = train_engines(out)
    ok = bool(runs) and all(r["world_size"] == 2 and r["deepspeed_zero_stage"] == 3
                            and all(s is not None and abs(s - 0.5) < 0.1 for s in r["local_parameter_share"])
                            for r in runs.values()) and any(r["ragged"] for r in runs.values())
    return _check("zero3_training", ok, {n: {k: r[k] for k in ("world_size", "deepspeed_zero_stage", "accelerator",
                                                                 "local_parameter_share", "ragged")}
                                         for n, r in runs.items()})


def run_checks(root: Path, config: dict) -> list[dict]:
    from videoktr.config import validate

    out = root / "results" / config["run_name"]
    paper = validate(yaml.safe_load((root / PAPER).read_text()))
    checks = []
    for name, fn in [("video_input", lambda: check_video_input(config, out)),
                     ("holmes_unfiltered", lambda: [check_holmes_unfiltered(config, out)]),
                     ("trained_with", lambda: [check_trained_with(paper, out)]),
                     ("targets", lambda: [check_targets(config, out)]), ("bad_input", lambda: [check_bad_input(out)]),
                     ("engines", lambda: [check_engines(config, out)]),
                     ("zero3_training", lambda: [check_zero3_training(out)])]:
        try:
            checks += fn()
        except (OSError, KeyError, ValueError) as e:  # a missing or unreadable output: the check fails, naming it
            checks.append(_check(name, False, f"{type(e).__name__}: {e}"))
    return checks


# ------------------------------------------------------------------------------------------------------ run


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="python -m videoktr.rehearsal", description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="SLURM jobs at once (default 2)")
    ap.add_argument("--check-only", action="store_true", help="only the checks, on the outputs already there")
    ap.add_argument("extra", nargs="*", help="further snakemake arguments (after --)")
    a = ap.parse_args(argv)
    root = Path.cwd()
    config = load_config(root)
    out = root / "results" / config["run_name"]
    report = {"workflow": None}
    if not a.check_only:
        hub = Path(config["data"]["mirror"])
        start = time.perf_counter()
        if not (hub / "rehearsal_mirror.json").is_file():
            log.info("building the local hub in %s", hub)
            subprocess.run([sys.executable, "-m", "videoktr.cli", "rehearsal-mirror", "--cfg",
                            json.dumps({"seed": config["seed"]}), "--out", str(hub)], check=True)
        mirror_s = time.perf_counter() - start
        cmd = [str(Path(sys.executable).parent / "snakemake"), *snakemake_args(root, a.jobs), *a.extra]
        log.info("%s", " ".join(cmd))
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "snakemake.log", "w") as logf:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, **REHEARSAL_ENV})
            text = []
            for line in proc.stdout:
                sys.stdout.write(line)
                logf.write(line)
                text.append(line)
            proc.wait()
        done = re.findall(r"(\d+) of (\d+) steps \(\d+%\) done", "".join(text))
        report["workflow"] = {"returncode": proc.returncode, "mirror_seconds": round(mirror_s, 1),
                              "seconds": round(time.perf_counter() - start, 1),
                              "jobs": int(done[-1][0]) if done else 0, "jobs_planned": int(done[-1][1]) if done else 0}
    report["checks"] = run_checks(root, config)
    report["engines"] = next((c["detail"] for c in report["checks"] if c["check"] == "engines" and c["ok"]), None)
    ok = all(c["ok"] for c in report["checks"]) and (a.check_only or report["workflow"]["returncode"] == 0)
    report["ok"] = ok
    out.mkdir(parents=True, exist_ok=True)
    (out / "rehearsal.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    for c in report["checks"]:
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['check']}", flush=True)
    if report["workflow"]:
        w = report["workflow"]
        print(f"rehearsal: {w['jobs']} of {w['jobs_planned']} jobs, {w['seconds'] / 60:.1f} min; "
              f"{out / 'rehearsal.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
