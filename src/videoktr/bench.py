"""Attribution-cost benchmark: a Video-KTR step against a vanilla GRPO step, side by side (DESIGN.md section 6).

What runs. For every configuration (frames F, completion length L) both trainers run `steps` optimizer steps from
the same initial weights (reloaded from disk for each), the same seed and the same batches:
- one warm-up step (lazy initialisation, optimizer state allocation) is run and not timed;
- completions are forced to exactly L tokens (`min_new_tokens = max_completion_length = L`), so L is what was
  asked for and not whatever the sampled EOS gives;
- the learning rate is 0: the optimizer still steps (Adam moments, update, zero_grad), but the weights do not move,
  so both trainers sample token-identical completions at every step (the cost of a step does not depend on the
  learning rate's value). Every step's prompt + completion ids are hashed and `batches_identical` says whether the
  two trainers really saw the same batches;
- clips with fewer than F frames are resampled (each frame repeated, nearest neighbour) into F-frame MP4s written
  with `videoktr.world.write_mp4`, so between configurations only the frame count changes, never the questions.

Time. Wall clock (`time.perf_counter`, after a CUDA synchronize on a GPU) from `on_step_begin` to `on_step_end` of
the HF Trainer loop: generation, rewards, reference log-probs, (KTR) attribution, loss forward, backward, clipping and
the optimizer step. Both methods run in this one process, in lockstep: each trainer in its own thread, taking turns
one optimizer step at a time (GRPO step 1, KTR step 1, GRPO step 2, ...), only one thread running at a time and each
with its own saved and restored RNG streams (see `Lockstep`). On a shared machine this matters: a burst of load from
elsewhere hits neighbouring GRPO and KTR steps alike, where running one method after the other would charge it to
whichever ran during it. `time_ratio` = mean KTR step / mean GRPO step; `time_ratio_median` = median over the step
pairs of KTR step / GRPO step (robust to a single disturbed step). The attribution share is the time inside
`KTRTrainer.attribution_scores` divided by the KTR step time. Where the time goes: each trainer is instrumented on
its instance (the trainer classes are untouched) with nested timers: generation, prompt preparation (decoding +
processor), rewards, reference log-probs, attribution (with its vision encoder and decoder passes), loss forward,
backward, optimizer. Times are inclusive: "attribution/decoder_pass" is part of "attribution".

Memory. CPU has no allocator statistics in torch and tracemalloc does not see torch's allocations, so peak memory is
the process's resident-set high-water mark (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), measured in a fresh
subprocess per (configuration, method) that runs the same steps; the high-water mark never resets, so one process
can honestly measure one run only. Reported per run: the whole-process peak, and the peak above the RSS after
imports (weights, reference model, optimizer state, activations, batches: the analogue of a GPU's
max_memory_allocated, which does not count the CUDA context). `memory_ratio` uses the latter, which is the stricter
one: the import baseline (~0.5-1 GB of libraries) is the same for both methods and only dilutes a whole-process
ratio towards 1. The subprocesses run KTR first, then GRPO, and their step times are reported as a cross-check of
the in-process ratio (`time_ratio_separate_processes`).

Configurations: the frames sweep at the first completion length, and the completion-length sweep at the first
frame count (a cross, not the full grid).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import hashlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

log = logging.getLogger(__name__)

TARGETS = {"time_ratio": 1.05, "memory_ratio": 1.02}
PAPER = {"time_ratio": 1.106, "memory_ratio": 1.008}
# The tiny config's RL settings (config/config.yaml `train`); --cfg replaces them with the study's.
DEFAULT_TRAIN = {"lr": 1.0e-3, "beta": 0.04, "num_generations": 4, "per_device_batch_size": 8,
                 "max_completion_length": 48, "temperature": 1.0, "epochs": 1, "max_steps": 8, "loss_type": "grpo",
                 "save_steps": 4, "logging_steps": 1}
DEFAULT_KTR = {"ratio": 0.2, "signals": ["E", "V", "T"]}
METHODS = ("grpo", "ktr")


# -- memory ------------------------------------------------------------------------------------------------------
def rss_mib() -> float:
    """Current resident set size (VmRSS), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """The process's resident-set high-water mark, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- timers ------------------------------------------------------------------------------------------------------
class PhaseTimer:
    """Nested named regions; per step, inclusive seconds per path ("attribution/decoder_pass")."""

    def __init__(self):
        self.stack: list[str] = []
        self.current: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def region(self, name: str):
        self.stack.append(name)
        path = "/".join(self.stack)
        _sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            _sync()
            self.current[path] += time.perf_counter() - start
            self.stack.pop()

    def wrap(self, fn, name: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            with self.region(name):
                return fn(*args, **kwargs)
        return timed

    def take(self) -> dict[str, float]:
        out, self.current = dict(self.current), defaultdict(float)
        return out


def _instrument(trainer, timer: PhaseTimer, fingerprints: list[dict]) -> None:
    """Timers on the trainer instance and its policy model; the classes stay untouched."""
    import torch

    for name, label in (("_generate_single_turn", "generate"), ("_tokenize_prompts", "prepare_prompts"),
                        ("_calculate_rewards", "rewards"), ("attribution_scores", "attribution")):
        if hasattr(trainer, name):
            setattr(trainer, name, timer.wrap(getattr(trainer, name), label))

    logps = trainer._get_per_token_logps_and_entropies

    def timed_logps(model, *args, **kwargs):
        if model is trainer.ref_model:
            label = "ref_logps"
        else:
            label = "loss_forward" if torch.is_grad_enabled() else "old_logps"
        with timer.region(label):
            return logps(model, *args, **kwargs)

    trainer._get_per_token_logps_and_entropies = timed_logps
    trainer.accelerator.backward = timer.wrap(trainer.accelerator.backward, "backward")
    # The policy's backbone (vision encoder + decoder layers, no LM head), its vision encoder and M-RoPE index:
    # nested under whichever phase calls them ("attribution/backbone", "loss_forward/backbone/vision_encoder").
    policy = trainer.accelerator.unwrap_model(trainer.model).model
    for name, label in (("forward", "backbone"), ("get_video_features", "vision_encoder"),
                        ("get_rope_index", "rope_index")):
        setattr(policy, name, timer.wrap(getattr(policy, name), label))

    score = trainer._generate_and_score_completions

    def fingerprinted(inputs):
        output = score(inputs)
        digest = hashlib.sha256()
        for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask"):
            digest.update(output[key].cpu().numpy().tobytes())
        fingerprints.append({"sha256": digest.hexdigest(), "rows": int(output["completion_ids"].size(0)),
                             "prompt_tokens": int(output["prompt_mask"].sum(1).max()),
                             "completion_tokens": output["completion_mask"].sum(1).tolist()})
        return output

    trainer._generate_and_score_completions = fingerprinted


# Module-level helpers of videoktr.trainers that KTR's attribution calls, timed where they exist.
TRAINER_HELPERS = ("completion_scores", "decoder_logps", "visual_perturbation", "permute_slices")


@contextlib.contextmanager
def _timed_helpers(timer: PhaseTimer):
    """Time KTR's helper functions (looked up in videoktr.trainers' globals at call time), in the benchmark only."""
    from videoktr import trainers

    originals = {n: getattr(trainers, n) for n in TRAINER_HELPERS if callable(getattr(trainers, n, None))}
    for name, fn in originals.items():
        setattr(trainers, name, timer.wrap(fn, name))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(trainers, name, fn)


# -- runs --------------------------------------------------------------------------------------------------------
def _sync() -> None:
    """Wait for queued GPU work, so that a wall-clock reading means what it says (no-op on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _rng_state() -> dict:
    import random

    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class Lockstep:
    """Trainers in threads that take turns one optimizer step at a time (GRPO step 1, KTR step 1, GRPO step 2, ...).

    Only the thread holding the turn runs, so the two never compete for the cores, and a change in the machine's
    load hits both methods alike instead of whichever happened to run during it. Each trainer keeps its own global
    RNG streams (python, numpy, torch), saved when it hands the turn on and restored when it gets it back, so it
    samples exactly what it would sample alone.
    """

    def __init__(self, names, states: dict):
        self.cond = threading.Condition()
        self.order, self.turn, self.done, self.rng = list(names), names[0], set(), dict(states)

    def _next(self, name):
        i = self.order.index(name)
        for other in self.order[i + 1:] + self.order[:i + 1]:
            if other not in self.done:
                return other
        return None

    def acquire(self, name) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == name)
        _set_rng_state(self.rng[name])

    def release(self, name, finished: bool = False) -> None:
        self.rng[name] = _rng_state()
        with self.cond:
            if finished:
                self.done.add(name)
            self.turn = self._next(name)
            self.cond.notify_all()


def _step_timer_callback(timer: PhaseTimer, steps: list[dict], name: str, lockstep: Lockstep | None):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step, with the phases recorded inside it; the turn changes between steps."""

        def on_step_begin(self, args, state, control, **kwargs):
            if lockstep is not None:
                lockstep.release(name)
                lockstep.acquire(name)
            _sync()
            timer.take()
            self.start = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            _sync()
            self.opt_start = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kwargs):
            _sync()
            timer.current["optimizer"] += time.perf_counter() - self.opt_start

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            seconds = time.perf_counter() - self.start
            steps.append({"step": state.global_step, "seconds": seconds, "phases": timer.take()})

    return StepTimer()


def build_trainer(method: str, model_dir, records: list[dict], data_dir, work_dir, *, video_cfg: dict, train: dict,
                  ktr: dict, steps: int, completion_length: int, seed: int):
    """One instrumented trainer from the weights in `model_dir`, as videoktr.rl.train_run builds it."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from videoktr.rl import KTR_KEYS, AccuracyReward, format_reward_func, grpo_config, to_dataset
    from videoktr.tiny_model import vision_token_ids
    from videoktr.trainers import KTRSettings, KTRTrainer, VideoGRPOTrainer

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (known: {METHODS})")
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    settings = dict(train, lr=0.0, max_steps=steps, max_completion_length=completion_length, epochs=1,
                    save_steps=10**9, logging_steps=1)
    args = grpo_config(settings, Path(work_dir) / method, seed, vision_token_ids(model))
    args.generation_kwargs["min_new_tokens"] = completion_length  # every completion is exactly L tokens
    args.disable_tqdm = True
    common = dict(model=model, reward_funcs=[AccuracyReward(), format_reward_func], args=args,
                  train_dataset=to_dataset(records), processing_class=processor, data_dir=data_dir,
                  video_cfg=video_cfg)
    if method == "ktr":
        # As videoktr.rl.train_run builds it, minus the token log and gradient diagnostics (analysis outputs that
        # are off by default and not part of the method's cost).
        settings = KTRSettings(**{k: ktr[k] for k in KTR_KEYS if k in ktr}, signals=tuple(ktr["signals"]))
        trainer = KTRTrainer(**common, ktr=settings)
    else:
        trainer = VideoGRPOTrainer(**common)
    run = {"method": method, "steps": [], "fingerprints": [], "rss_ready_mib": rss_mib(),
           "torch_threads": torch.get_num_threads(), "device": str(trainer.accelerator.device),
           "gradient_checkpointing": bool(args.gradient_checkpointing), "rng": _rng_state()}
    run["timer"] = PhaseTimer()
    _instrument(trainer, run["timer"], run["fingerprints"])
    return trainer, run


def _finish(run: dict) -> dict:
    run.pop("timer", None)
    run.pop("rng", None)
    return run


def run_method(method: str, model_dir, records: list[dict], data_dir, work_dir, **kw) -> dict:
    """`steps` optimizer steps of one trainer alone (the memory runs); per-step times and phases."""
    trainer, run = build_trainer(method, model_dir, records, data_dir, work_dir, **kw)
    trainer.add_callback(_step_timer_callback(run["timer"], run["steps"], method, None))
    with _timed_helpers(run["timer"]):
        trainer.train()
    del trainer
    gc.collect()
    return _finish(run)


def run_pair(model_dir, records: list[dict], data_dir, work_dir, **kw) -> dict:
    """GRPO and KTR side by side in this process, in lockstep (see `Lockstep`), from the same weights and seed."""
    trainers, runs = {}, {}
    for method in METHODS:  # the initial weights are loaded from disk for each
        trainers[method], runs[method] = build_trainer(method, model_dir, records, data_dir, work_dir, **kw)
    lockstep = Lockstep(METHODS, {m: runs[m]["rng"] for m in METHODS})
    errors = {}

    def body(method):
        lockstep.acquire(method)
        try:
            trainers[method].train()
        except BaseException as e:  # re-raised below, in the caller's thread
            errors[method] = e
        finally:
            lockstep.release(method, finished=True)

    for method in METHODS:
        trainers[method].add_callback(_step_timer_callback(runs[method]["timer"], runs[method]["steps"], method,
                                                           lockstep))
    threads = [threading.Thread(target=body, args=(m,), name=f"bench-{m}") for m in METHODS]
    with _timed_helpers(runs["ktr"]["timer"]):  # only KTR calls them
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for method, e in errors.items():
        raise RuntimeError(f"benchmark run of {method} failed: {e!r}") from e
    del trainers
    gc.collect()
    return {m: _finish(r) for m, r in runs.items()}


def _summary(run: dict) -> dict:
    """Mean and median step time over the timed steps (the first step is the warm-up), mean phase times."""
    timed = run["steps"][1:]
    seconds = [s["seconds"] for s in timed]
    phases = defaultdict(float)
    for s in timed:
        for k, v in s["phases"].items():
            phases[k] += v / len(timed)
    return {"step_seconds_mean": statistics.fmean(seconds), "step_seconds_median": statistics.median(seconds),
            "step_seconds": seconds, "warmup_seconds": run["steps"][0]["seconds"],
            "phases_seconds_mean": dict(sorted(phases.items()))}


# -- memory worker (a fresh process per measurement) -------------------------------------------------------------
def _worker(spec_path: str, out_path: str) -> None:
    rss_imports_before = rss_mib()  # python + this module (stdlib only so far)
    import torch  # noqa: F401  (the libraries every run needs, before the baseline is read)
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from videoktr import trainers  # noqa: F401

    spec = json.loads(Path(spec_path).read_text())
    rss_imports = rss_mib()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run = run_method(spec["method"], spec["model_dir"], spec["records"], spec["data_dir"], spec["work_dir"],
                     video_cfg=spec["video_cfg"], train=spec["train"], ktr=spec["ktr"], steps=spec["steps"],
                     completion_length=spec["completion_length"], seed=spec["seed"])
    peak = peak_rss_mib()
    run.update(rss_python_mib=rss_imports_before, rss_after_imports_mib=rss_imports, peak_rss_mib=peak,
               peak_above_imports_mib=peak - rss_imports, peak_above_ready_mib=peak - run["rss_ready_mib"])
    if torch.cuda.is_available():  # on a GPU the paper's measure: the allocator's peak
        run["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    Path(out_path).write_text(json.dumps(run))


def measure_memory(spec: dict, work: Path) -> dict:
    """Run one (configuration, method) in a fresh interpreter and return its peak RSS figures."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = work / f"{spec['method']}.spec.json", work / f"{spec['method']}.result.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "videoktr.bench", "--worker", str(spec_path), str(out_path)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory run {spec['method']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(out_path.read_text())


# -- inputs ------------------------------------------------------------------------------------------------------
def frames_data_dir(records: list[dict], data_dir, work: Path, frames: int, video_cfg: dict):
    """A data dir whose clips give `frames` frames at video_cfg's fps: the original one if its clips are long
    enough, otherwise frame-repeated copies of the same clips (only the frame count changes)."""
    import numpy as np

    from videoktr.video import read_frames
    from videoktr.world import write_mp4

    fps = float(video_cfg["fps"])
    backend = video_cfg.get("backend", "auto")
    clips = {r["path"]: read_frames(Path(data_dir) / r["path"], fps=fps, max_frames=10**6, backend=backend)
             for r in records}
    if all(len(c) >= frames for c in clips.values()):
        return Path(data_dir)
    out = work / f"clips_f{frames}"
    for path, clip in clips.items():
        idx = np.minimum((np.arange(frames) * len(clip)) // frames, len(clip) - 1)
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        write_mp4(out / path, clip[idx], fps=max(1, round(fps)))
    return out


def _warm_frames(records: list[dict], data_dir, video_cfg: dict) -> None:
    from videoktr.inputs import load_frames

    for r in records:
        load_frames(r, data_dir, video_cfg)


def resize_model(src_dir, out_dir, size: dict, seed: int) -> Path:
    """A random-init model of another size with `src_dir`'s tokenizer and processor (benchmarking cost only:
    the weights do not matter when completions have a fixed length)."""
    from transformers import AutoConfig, AutoProcessor

    from videoktr.tiny_model import build_model

    processor = AutoProcessor.from_pretrained(src_dir)
    config = AutoConfig.from_pretrained(src_dir)
    text, vision = config.text_config, config.vision_config
    kwargs = {"hidden_size": text.hidden_size, "layers": text.num_hidden_layers, "heads": text.num_attention_heads,
              "vision_hidden": vision.hidden_size, "vision_depth": vision.depth}
    unknown = set(size) - set(kwargs)
    if unknown:
        raise ValueError(f"unknown model size key {sorted(unknown)[0]!r} (known: {sorted(kwargs)})")
    kwargs.update(size)
    model = build_model(processor.tokenizer, **kwargs, seed=seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return Path(out_dir)


def describe_model(model_dir) -> dict:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    text, vision = config.text_config, config.vision_config
    weights = sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))
    return {"hidden_size": text.hidden_size, "layers": text.num_hidden_layers, "heads": text.num_attention_heads,
            "kv_heads": text.num_key_value_heads, "intermediate_size": text.intermediate_size,
            "vocab_size": text.vocab_size, "vision_hidden": vision.hidden_size, "vision_depth": vision.depth,
            "parameters_approx": weights // 4}


def configurations(frames_list, completion_lengths) -> list[tuple[int, int]]:
    """The frames sweep at the first completion length and the length sweep at the first frame count."""
    f0, l0 = frames_list[0], completion_lengths[0]
    configs = [(f, l0) for f in frames_list] + [(f0, n) for n in completion_lengths]
    return list(dict.fromkeys(configs))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


# -- the benchmark -----------------------------------------------------------------------------------------------
def run_benchmark(model_dir, records: list[dict], data_dir, out_json, *, video_cfg: dict, steps: int,
                  frames_list, completion_lengths, seed: int, train: dict | None = None, ktr: dict | None = None,
                  model_size: dict | None = None, memory: bool = True) -> dict:
    """Benchmark every configuration, write `out_json` and a figure beside it (same stem, .png); return the dict."""
    if steps < 2:
        raise ValueError(f"need steps >= 2 (one warm-up step, then timed steps), got {steps}")
    frames_list, completion_lengths = [int(f) for f in frames_list], [int(n) for n in completion_lengths]
    if not frames_list or not completion_lengths:
        raise ValueError("need at least one frame count and one completion length")
    train = {**DEFAULT_TRAIN, **(train or {})}
    ktr = {**DEFAULT_KTR, **(ktr or {})}
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    prompts_per_step = train["per_device_batch_size"] // train["num_generations"]
    records = list(records)[:max(1, prompts_per_step * steps)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_", dir=out_json.parent) as tmp:
        work = Path(tmp)
        source = Path(model_dir)
        if model_size:
            model_dir = resize_model(source, work / "model", model_size, seed)
        model_info = {"dir": str(source), **({"rebuilt_random_init": model_size} if model_size else {}),
                      **describe_model(model_dir)}
        results = []
        for frames, length in configurations(frames_list, completion_lengths):
            cfg_video = {**video_cfg, "train_frames": frames}
            clips = frames_data_dir(records, data_dir, work, frames, video_cfg)
            common = dict(video_cfg=cfg_video, train=train, ktr=ktr, steps=steps, completion_length=length,
                          seed=seed)
            _warm_frames(records, clips, cfg_video)  # decoded once here, not inside whichever step comes first
            log.info("frames %d, completion length %d: timing GRPO and KTR in lockstep in this process", frames,
                     length)
            runs = run_pair(model_dir, records, clips, work / f"f{frames}_l{length}", **common)
            entry = _configuration(frames, length, runs)
            if memory:
                mem = {}
                for m in reversed(METHODS):  # the other order: a drift in machine load shows as a disagreement
                    log.info("frames %d, completion length %d: peak memory of %s in a fresh process", frames,
                             length, m)
                    spec = dict(common, method=m, model_dir=str(model_dir), records=records, data_dir=str(clips),
                                work_dir=str(work / f"f{frames}_l{length}_mem"))
                    mem[m] = measure_memory(spec, work / f"f{frames}_l{length}_mem")
                entry.update(_memory(mem))
            log.info("frames %d, completion length %d: %s", frames, length,
                     json.dumps({k: entry.get(k) for k in ("time_ratio", "attribution_share", "memory_ratio")}))
            results.append(entry)
    report = {
        "what": "Video-KTR step vs vanilla GRPO step, same initial weights, seeds and batches",
        "targets": TARGETS,
        "paper": {**PAPER, "note": "the paper's reported numbers (Video-KTR vs GRPO), not ours"},
        "model": model_info,
        "settings": {"steps": steps, "timed_steps": steps - 1, "warmup_steps": 1, "seed": seed,
                     "frames_list": frames_list, "completion_lengths": completion_lengths,
                     "configurations": "frames sweep at the first completion length + length sweep at the first "
                                       "frame count",
                     "video": video_cfg, "train": {**train, "lr": 0.0}, "ktr": ktr,
                     "prompts_per_step": prompts_per_step, "records": len(records),
                     "torch_threads": results[0]["torch_threads"], "cpu_count": os.cpu_count(),
                     "device": results[0]["device"], "gradient_checkpointing": results[0]["gradient_checkpointing"]},
        "method": {
            "time": "wall clock per optimizer step (on_step_begin..on_step_end), both methods in one process, GRPO "
                    "then KTR, warm-up step excluded; time_ratio = mean KTR step / mean GRPO step",
            "attribution_share": "time inside KTRTrainer.attribution_scores / KTR step time (means)",
            "memory": "peak RSS (getrusage ru_maxrss) of a fresh subprocess per (configuration, method); "
                      "memory_ratio = KTR / GRPO of the peak above the RSS after imports; "
                      "memory_ratio_whole_process uses the whole-process peak",
            "batches": "lr 0 and forced completion length: both trainers sample identical batches "
                       "(batches_identical checks the hashes of every step's ids)",
        },
        "configurations": results,
        "wall_seconds": time.perf_counter() - started,
    }
    for key, target in TARGETS.items():
        values = [r[key] for r in results if key in r]
        report[f"{key}_max"] = max(values) if values else None
        report[f"{key}_meets_target"] = bool(values) and max(values) <= target
    out_json.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, out_json.with_suffix(".png"))
    return report


def _configuration(frames: int, length: int, runs: dict) -> dict:
    grpo, ktr = _summary(runs["grpo"]), _summary(runs["ktr"])
    attribution = ktr["phases_seconds_mean"].get("attribution", 0.0)
    fp = {m: [f["sha256"] for f in runs[m]["fingerprints"]] for m in METHODS}
    return {
        "frames": frames, "completion_length": length,
        "prompt_tokens_max": max(f["prompt_tokens"] for f in runs["grpo"]["fingerprints"]),
        "completion_tokens": sorted({t for f in runs["grpo"]["fingerprints"] for t in f["completion_tokens"]}),
        "time_ratio": _ratio(ktr["step_seconds_mean"], grpo["step_seconds_mean"]),
        "time_ratio_median": statistics.median(_ratio(k, g) for g, k in zip(grpo["step_seconds"], ktr["step_seconds"])),
        "attribution_share": _ratio(attribution, ktr["step_seconds_mean"]),
        "attribution_seconds_mean": attribution,
        "batches_identical": fp["grpo"] == fp["ktr"],
        "grpo": grpo, "ktr": ktr, "torch_threads": runs["grpo"]["torch_threads"], "device": runs["grpo"]["device"],
        "gradient_checkpointing": runs["grpo"]["gradient_checkpointing"],
    }


def _memory(mem: dict) -> dict:
    keys = ("peak_rss_mib", "peak_above_imports_mib", "peak_above_ready_mib", "rss_after_imports_mib",
            "rss_ready_mib")
    keys += ("cuda_peak_allocated_mib",) if "cuda_peak_allocated_mib" in mem["grpo"] else ()
    out = {f"memory_{m}": {k: mem[m][k] for k in keys} for m in METHODS}
    times = {m: _summary(mem[m])["step_seconds_mean"] for m in METHODS}
    basis = "cuda_peak_allocated_mib" if "cuda_peak_allocated_mib" in mem["grpo"] else "peak_above_imports_mib"
    out.update(
        memory_ratio=_ratio(mem["ktr"][basis], mem["grpo"][basis]),
        memory_ratio_basis=basis,
        memory_ratio_whole_process=_ratio(mem["ktr"]["peak_rss_mib"], mem["grpo"]["peak_rss_mib"]),
        memory_ratio_above_ready=_ratio(mem["ktr"]["peak_above_ready_mib"], mem["grpo"]["peak_above_ready_mib"]),
        time_ratio_separate_processes=_ratio(times["ktr"], times["grpo"]),
        step_seconds_separate_processes=times,
    )
    return out


# -- figure ------------------------------------------------------------------------------------------------------
def plot(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["configurations"]
    s = report["settings"]
    f0, l0 = s["frames_list"][0], s["completion_lengths"][0]
    sweeps = [("frames", "frames per clip", [r for r in rows if r["completion_length"] == l0], f"L = {l0}"),
              ("completion_length", "completion length (tokens)", [r for r in rows if r["frames"] == f0],
               f"{f0} frames")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
    for col, (key, label, sweep, fixed) in enumerate(sweeps):
        sweep = sorted(sweep, key=lambda r: r[key])
        x = [r[key] for r in sweep]
        ax = axes[0][col]
        ax.plot(x, [r["time_ratio"] for r in sweep], "o-", color="C0", label="step time ratio (ours)")
        if all("memory_ratio" in r for r in sweep):
            ax.plot(x, [r["memory_ratio"] for r in sweep], "s-", color="C1", label="peak memory ratio (ours)")
        ax.axhline(TARGETS["time_ratio"], color="C0", ls="--", lw=1, label=f"time target {TARGETS['time_ratio']}")
        ax.axhline(TARGETS["memory_ratio"], color="C1", ls="--", lw=1,
                   label=f"memory target {TARGETS['memory_ratio']}")
        ax.axhline(PAPER["time_ratio"], color="C0", ls=":", lw=1, label=f"paper time {PAPER['time_ratio']}")
        ax.axhline(PAPER["memory_ratio"], color="C1", ls=":", lw=1, label=f"paper memory {PAPER['memory_ratio']}")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_xlabel(label)
        ax.set_ylabel("Video-KTR / GRPO")
        ax.set_title(f"ratio vs {label} ({fixed})")
        ax.set_xticks(x)
        ax.legend(fontsize=7)
        ax = axes[1][col]
        names = [n for n in ("generate", "prepare_prompts", "ref_logps", "attribution", "loss_forward", "backward",
                             "optimizer") if any(n in r["ktr"]["phases_seconds_mean"] for r in sweep)]
        width = 0.38
        pos = list(range(len(sweep)))
        for i, method in enumerate(METHODS):
            bottom = [0.0] * len(sweep)
            for j, name in enumerate(names):
                v = [r[method]["phases_seconds_mean"].get(name, 0.0) for r in sweep]
                ax.bar([p + (i - 0.5) * width for p in pos], v, width, bottom=bottom, color=f"C{j}",
                       edgecolor="black" if method == "ktr" else None, label=name if i == 1 else None)
                bottom = [b + w for b, w in zip(bottom, v)]
            for p, r in zip(pos, sweep):
                ax.bar(p + (i - 0.5) * width, r[method]["step_seconds_mean"] - bottom[pos.index(p)], width,
                       bottom=bottom[pos.index(p)], color="lightgrey", label="other" if i == 1 and p == 0 else None)
        ax.set_xticks(pos, [f"{v}\nGRPO | KTR" for v in x])
        ax.set_xlabel(label)
        ax.set_ylabel("mean step time (s)")
        ax.set_title("where the step time goes (left GRPO, right KTR)")
        ax.legend(fontsize=7)
    model = report["model"]
    fig.suptitle(f"Video-KTR attribution cost, CPU, hidden {model['hidden_size']} x {model['layers']} layers, "
                 f"{report['settings']['timed_steps']} timed steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line ------------------------------------------------------------------------------------------------
def _ints(values) -> list[int]:
    return [int(v) for item in values for v in str(item).split(",") if v.strip()]


def _size(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key.strip()] = int(value)
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m videoktr.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder (the SFT model in the DAG)")
    p.add_argument("--records", required=True, help="JSON list of Video-R1 records (the filtered train split)")
    p.add_argument("--data-dir", required=True, help="folder the records' clip paths are relative to")
    p.add_argument("--out", required=True, help="output JSON; the figure is written beside it as .png")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per run, the first is a warm-up")
    p.add_argument("--frames", nargs="+", default=["16", "32", "64"], help="frame counts, e.g. 16 32 64")
    p.add_argument("--completion-lengths", nargs="+", default=["48", "96", "192"], help="completion lengths")
    p.add_argument("--seed", type=int, default=None, help="default: the config's seed, else 0")
    p.add_argument("--cfg", default="{}", help="JSON of the config sections seed, video, train, runs")
    p.add_argument("--model-size", default="",
                   help="benchmark a random-init model of this size with the model's tokenizer, e.g. "
                        "hidden_size=256,layers=4,heads=4 (keys: hidden_size, layers, heads, vision_hidden, "
                        "vision_depth; the rest from the model)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        _worker(argv[1], argv[2])
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    a = parser().parse_args(argv)
    cfg = json.loads(a.cfg)
    if "video" not in cfg:
        from videoktr.config import load

        default = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
        cfg = {**load(default), **cfg}
    runs = cfg.get("runs", {})
    ktr_runs = [runs["ktr"]] if runs.get("ktr", {}).get("method") == "ktr" else \
        [r for r in runs.values() if r.get("method") == "ktr"]
    ktr = {k: v for k, v in ktr_runs[0].items() if k not in ("method", "train")} if ktr_runs else None
    from videoktr.records import load_json_records

    report = run_benchmark(a.model, load_json_records(a.records), a.data_dir, a.out, video_cfg=cfg["video"],
                           steps=a.steps, frames_list=_ints(a.frames), completion_lengths=_ints(a.completion_lengths),
                           seed=a.seed if a.seed is not None else cfg.get("seed", 0), train=cfg.get("train"),
                           ktr=ktr, model_size=_size(a.model_size) or None)
    for r in report["configurations"]:
        log.info("frames %3d  L %4d  time ratio %.3f  attribution share %.3f  memory ratio %s", r["frames"],
                 r["completion_length"], r["time_ratio"], r["attribution_share"],
                 f"{r['memory_ratio']:.3f}" if "memory_ratio" in r else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
