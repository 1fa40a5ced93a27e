"""Attribution-cost benchmark: a Video-KTR step against a vanilla GRPO step, side by side (docs/costbench.md).

`run_benchmark` times both methods in lockstep in this process for every configuration (frames, completion length),
measures each one's peak memory in a fresh process (`python -m videoktr.costbench.harness --worker SPEC OUT`), and
writes a JSON report with a figure beside it. `main` is its command line (`videoktr bench ...`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from videoktr.costbench.inputs import describe_model, frames_data_dir, native_bf16, resize_model, warm_frames
from videoktr.costbench.memory import reset_peak_rss, rss_mib
from videoktr.costbench.report import benchmark_report, configuration_entry, memory_entry, plot
from videoktr.costbench.trainers import METHODS, run_method, run_pair

log = logging.getLogger("videoktr.costbench.harness")  # also when run as __main__

# Memory runs: the warm-up step (which allocates the optimizer state) and one more; shapes are fixed (forced
# completion length, same prompts), so later steps allocate nothing new.
MEMORY_STEPS = 2


# -- memory worker (a fresh process per measurement) -------------------------------------------------------------
def _worker(spec_path: str, out_path: str) -> None:
    rss_imports_before = rss_mib()  # python + this module (stdlib only so far)
    import torch  # noqa: F401  (the libraries every run needs, before the baseline is read)
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from videoktr.rl import grpo, ktr  # noqa: F401

    spec = json.loads(Path(spec_path).read_text())
    threads = spec.pop("threads", None)
    if threads:
        torch.set_num_threads(threads)
    reset_peak_rss()  # import transients are not the run's
    rss_imports = rss_mib()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run = run_method(spec["method"], spec["model_dir"], spec["records"], spec["data_dir"], spec["work_dir"],
                     video_cfg=spec["video_cfg"], train=spec["train"], ktr=spec["ktr"], steps=spec["steps"],
                     completion_length=spec["completion_length"], seed=spec["seed"], bf16=spec.get("bf16"),
                     profile_memory=spec.get("memory_method", "auto") == "auto" and not torch.cuda.is_available())
    peak = max(run["peak_loading_mib"], run["peak_training_mib"])
    run.update(rss_python_mib=rss_imports_before, rss_after_imports_mib=rss_imports, peak_rss_mib=peak,
               peak_above_imports_mib=peak - rss_imports,
               peak_training_above_start_mib=run["peak_training_mib"] - run["rss_train_start_mib"])
    if torch.cuda.is_available():  # on a GPU the paper's measure: the allocator's peak
        run["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    Path(out_path).write_text(json.dumps(run))


def measure_memory(spec: dict, work: Path) -> dict:
    """Run one (configuration, method) in a fresh interpreter and return its peak RSS figures."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = work / f"{spec['method']}.spec.json", work / f"{spec['method']}.result.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    command = [sys.executable, "-m", "videoktr.costbench.harness", "--worker", str(spec_path), str(out_path)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory run {spec['method']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(out_path.read_text())


def configurations(frames_list, completion_lengths, temporal_units=("frame",)) -> list[tuple[int, int, str]]:
    """(frames, completion length, temporal unit): the frames sweep at the first completion length and the length
    sweep at the first frame count, with the first temporal unit; each further unit at the first frame count and
    length (the temporal counterfactual's cost: shuffled frames through the vision encoder, or reused patches)."""
    f0, l0, u0 = frames_list[0], completion_lengths[0], temporal_units[0]
    configs = [(f, l0, u0) for f in frames_list] + [(f0, n, u0) for n in completion_lengths]
    configs += [(f0, l0, u) for u in temporal_units[1:]]
    return list(dict.fromkeys(configs))


# -- the benchmark -----------------------------------------------------------------------------------------------
def run_benchmark(model_dir, records: list[dict], data_dir, out_json, *, video_cfg: dict, steps: int,
                  frames_list, completion_lengths, seed: int, train: dict | None = None, ktr: dict | None = None,
                  model_size: dict | None = None, memory: bool = True, bf16: bool | None = None,
                  threads: int | None = 1, memory_method: str = "auto", temporal_units=None) -> dict:
    """Benchmark every configuration, write `out_json` and a figure beside it (same stem, .png); return the dict.

    `bf16` None: bf16 autocast (TRL's default) only where the hardware has bf16 units (`native_bf16`), fp32
    otherwise. `memory_method` "auto": torch.cuda.max_memory_allocated on a GPU, the profiler's allocation events on
    a CPU; "rss": the RSS high-water mark only (no profiler). `threads`: torch intra-op threads here and in the
    memory processes (None: torch's default). One by default: on a CPU shared with other jobs, OpenMP teams of two
    or more threads make the many small ops of generation erratically slow (measured on the 2-core development
    machine under load: the same generate call took 1.2 s with one thread and 6-41 s with two), which would drown
    the difference being measured. `temporal_units`: KTR's temporal counterfactual (`temporal_unit`: frame, patch)
    to time, the first over both sweeps, the others at the first configuration only (None: the run's own).
    """
    import torch

    if steps < 2:
        raise ValueError(f"need steps >= 2 (one warm-up step, then timed steps), got {steps}")
    if memory_method not in ("auto", "rss"):
        raise ValueError(f"unknown memory_method {memory_method!r} (known: auto, rss)")
    frames_list, completion_lengths = [int(f) for f in frames_list], [int(n) for n in completion_lengths]
    if not frames_list or not completion_lengths:
        raise ValueError("need at least one frame count and one completion length")
    from videoktr.config import schema_defaults

    # The schema's defaults where no config is given: the study's `train` section and one run of the grid (Video-KTR's
    # knobs). What the benchmark changes in them (lr 0, steps, forced completion length, no checkpoints) is set per
    # run in `build_trainer`.
    train = {**schema_defaults("train"), **(train or {})}
    ktr = {**schema_defaults("runs", "*"), **(ktr or {})}
    temporal_units = list(dict.fromkeys(temporal_units or [ktr["temporal_unit"]]))
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    prompts_per_step = train["per_device_batch_size"] // train["num_generations"]
    records = list(records)[:max(1, prompts_per_step * steps)]
    if bf16 is None:
        bf16 = native_bf16()
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_", dir=out_json.parent) as tmp:
        work = Path(tmp)
        source = Path(model_dir)
        if model_size:
            model_dir = resize_model(source, work / "model", model_size, seed)
        model_info = {"dir": str(source), **({"rebuilt_random_init": model_size} if model_size else {}),
                      **describe_model(model_dir)}
        results = []
        for frames, length, unit in configurations(frames_list, completion_lengths, temporal_units):
            cfg_video = {**video_cfg, "train_frames": frames}
            clips = frames_data_dir(records, data_dir, work, frames, video_cfg)
            common = dict(video_cfg=cfg_video, train=train, ktr={**ktr, "temporal_unit": unit}, steps=steps,
                          completion_length=length, seed=seed, bf16=bf16)
            warm_frames(records, clips, cfg_video)  # decoded once here, not inside whichever step comes first
            log.info("frames %d, completion length %d, temporal unit %s: timing GRPO and KTR in lockstep in this "
                     "process", frames, length, unit)
            tag = f"f{frames}_l{length}" + ("" if unit == temporal_units[0] else f"_{unit}")
            runs = run_pair(model_dir, records, clips, work / tag, **common)
            entry = {**configuration_entry(frames, length, runs), "temporal_unit": unit}
            if memory:
                mem = {}
                for m in reversed(METHODS):  # the other order: a drift in machine load shows as a disagreement
                    log.info("frames %d, completion length %d: peak memory of %s in a fresh process", frames,
                             length, m)
                    spec = dict(common, method=m, model_dir=str(model_dir), records=records, data_dir=str(clips),
                                work_dir=str(work / f"{tag}_mem"), threads=threads,
                                steps=MEMORY_STEPS, memory_method=memory_method)
                    mem[m] = measure_memory(spec, work / f"{tag}_mem")
                entry.update(memory_entry(mem))
            log.info("frames %d, completion length %d: %s", frames, length,
                     json.dumps({k: entry.get(k) for k in ("time_ratio", "attribution_share", "memory_ratio")}))
            results.append(entry)
    settings = {"steps": steps, "timed_steps": steps - 1, "warmup_steps": 1, "memory_steps": MEMORY_STEPS,
                "seed": seed,
                "frames_list": frames_list, "completion_lengths": completion_lengths,
                "configurations": "frames sweep at the first completion length + length sweep at the first "
                                  "frame count (first temporal unit); each further temporal unit at the first "
                                  "frame count and length",
                "temporal_units": temporal_units,
                "video": video_cfg, "train": {**train, "lr": 0.0}, "ktr": ktr,
                "prompts_per_step": prompts_per_step, "records": len(records),
                "torch_threads": results[0]["torch_threads"], "cpu_count": os.cpu_count(),
                "device": results[0]["device"], "gradient_checkpointing": results[0]["gradient_checkpointing"],
                "bf16_autocast": bf16, "native_bf16": native_bf16()}
    report = benchmark_report(results, model_info, settings, time.perf_counter() - started)
    out_json.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, out_json.with_suffix(".png"))
    return report


# -- command line ------------------------------------------------------------------------------------------------
def _ints(values) -> list[int]:
    return [int(v) for item in values for v in str(item).split(",") if v.strip()]


def _size(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key.strip()] = int(value)
    return out


def parser(prog: str = "python -m videoktr.costbench.harness") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder (the SFT model in the DAG)")
    p.add_argument("--records", required=True, help="JSON list of Video-R1 records (the filtered train split)")
    p.add_argument("--data-dir", required=True, help="folder the records' clip paths are relative to")
    p.add_argument("--out", required=True, help="output JSON; the figure is written beside it as .png")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per run, the first is a warm-up")
    p.add_argument("--frames", nargs="+", default=["16", "32", "64"], help="frame counts, e.g. 16 32 64")
    p.add_argument("--completion-lengths", nargs="+", default=["48", "96", "192"], help="completion lengths")
    p.add_argument("--seed", type=int, default=None, help="default: the config's seed, else 0")
    p.add_argument("--cfg", default="{}", help="JSON of the config sections seed, video, train, runs")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default); see run_benchmark")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="bf16 autocast of the loss (auto: only where the hardware has bf16 units)")
    p.add_argument("--memory-method", choices=("auto", "rss"), default="auto",
                   help="auto: CUDA allocator peak on a GPU, torch profiler allocation events on a CPU; rss: RSS only")
    p.add_argument("--temporal-units", nargs="+", default=["frame", "patch"], choices=("frame", "patch"),
                   help="KTR's temporal counterfactual to time: shuffled frames re-encoded, or reused patches "
                        "(the first over both sweeps, the others at the first frame count and length)")
    p.add_argument("--model-size", default="",
                   help="benchmark a random-init model of this size with the model's tokenizer, e.g. "
                        "hidden_size=256,layers=4,heads=4 (keys: hidden_size, layers, heads, vision_hidden, "
                        "vision_depth; the rest from the model)")
    return p


def main(argv=None, prog: str = "python -m videoktr.costbench.harness") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        _worker(argv[1], argv[2])
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    a = parser(prog).parse_args(argv)
    cfg = json.loads(a.cfg)
    if "video" not in cfg:
        from videoktr.config import load

        default = Path(__file__).resolve().parents[3] / "config" / "config.yaml"
        cfg = {**load(default), **cfg}
    runs = cfg.get("runs", {})
    ktr_runs = [runs["ktr"]] if runs.get("ktr", {}).get("method") == "ktr" else \
        [r for r in runs.values() if r.get("method") == "ktr"]
    ktr = {k: v for k, v in ktr_runs[0].items() if k not in ("method", "train")} if ktr_runs else None
    from videoktr.data.records import load_json_records

    report = run_benchmark(a.model, load_json_records(a.records), a.data_dir, a.out, video_cfg=cfg["video"],
                           steps=a.steps, frames_list=_ints(a.frames), completion_lengths=_ints(a.completion_lengths),
                           seed=a.seed if a.seed is not None else cfg.get("seed", 0), train=cfg.get("train"),
                           ktr=ktr, model_size=_size(a.model_size) or None, threads=a.threads or None,
                           bf16={"auto": None, "on": True, "off": False}[a.bf16], memory_method=a.memory_method,
                           temporal_units=a.temporal_units)
    for r in report["configurations"]:
        log.info("frames %3d  L %4d  %-5s  time ratio %.3f  attribution share %.3f  memory ratio %s", r["frames"],
                 r["completion_length"], r["temporal_unit"], r["time_ratio"], r["attribution_share"],
                 f"{r['memory_ratio']:.3f}" if "memory_ratio" in r else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
