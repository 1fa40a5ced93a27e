"""Attribution-cost benchmark: a Video-KTR step against a vanilla GRPO step, side by side (DESIGN.md section 6).

What runs. For every configuration (frames F, completion length L) both trainers, built as `videoktr.rl.run.train_run`
builds them, run `steps` optimizer steps from the same initial weights (loaded from disk for each), the same seed
and the same batches:
- the first step is a warm-up (lazy initialisation, optimizer state allocation) and is not timed;
- completions are forced to exactly L tokens (`min_new_tokens = max_completion_length = L`);
- the learning rate is 0: the optimizer still steps, but the weights do not move, so both trainers sample
  token-identical completions at every step (a step's cost does not depend on the learning rate's value); every
  step's prompt + completion ids are hashed and `batches_identical` says whether the two really saw the same;
- a benchmark-only reward hashed from the completion text joins the project's rewards: with a random-init model
  those are all 0, so advantages and gradients would be all zero, which is not a training step;
- precision: TRL's GRPOConfig turns bf16 autocast on by default; it is kept only where the hardware has bf16 units
  (`native_bf16`). On a CPU without them every bf16 product of the loss forward/backward is emulated (measured here:
  the backward 15-20x slower than fp32), which would inflate the GRPO step, the denominator, with a cost a GPU does
  not have;
- clips with fewer than F frames are resampled (frames repeated, nearest neighbour) into F-frame MP4s written with
  `videoktr.data.world.write_mp4`: between configurations only the frame count changes, never the questions.

Time. Wall clock (`time.perf_counter`, after a CUDA synchronize on a GPU) from `on_step_begin` to `on_step_end` of
the HF Trainer loop: generation, rewards, reference log-probs, (KTR) attribution, loss forward, backward, clipping and
the optimizer step. Both methods run in this one process, in lockstep: each trainer in its own thread, taking turns
one optimizer step at a time (GRPO step 1, KTR step 1, GRPO step 2, ...), only one running at a time and each with
its own saved and restored RNG streams (see `Lockstep`). On a shared machine this matters: a burst of load from
elsewhere hits neighbouring GRPO and KTR steps alike, where one method after the other would charge it to
whichever ran during it. Torch runs one intra-op thread by default (`threads`): on a loaded CPU, OpenMP teams make
generation erratically slow. `time_ratio` = mean KTR step / mean GRPO step; `time_ratio_median` = median over step
pairs of KTR / GRPO; `attribution_share` = time inside `KTRTrainer.attribution_scores` / KTR step time;
`time_ratio_within_step` = 1 / (1 - attribution_share), what the ratio is if the rest of a KTR step costs what a GRPO
step costs, read inside the same steps and so less exposed to the machine's load. Where the time goes: the trainer
instances (never the classes) carry nested timers: generate, prepare_prompts (decoding + processor), rewards,
ref_logps, attribution, loss_forward, backward, optimizer, and under them the policy's backbone (vision encoder +
decoder layers, no LM head), vision_encoder, rope_index and KTR's helper functions (completion_scores = its chunked
vocabulary projection). Times are inclusive: "attribution/backbone" is part of "attribution".

Memory. A fresh subprocess per (configuration, method) runs the warm-up step and one more (shapes are fixed, so
nothing new is allocated later); KTR first, then GRPO. `memory_ratio` = KTR / GRPO of:
- on a GPU, torch.cuda.max_memory_allocated (the paper's kind of number);
- on a CPU, `torch_peak_allocated_mib`: the parameters and buffers of policy and reference model plus the peak of
  live torch CPU allocations during the steps, replayed from the profiler's allocation and free events
  (profile_memory=True). CPU torch keeps no allocator statistics and tracemalloc does not see torch's allocations;
  this is the counterpart of max_memory_allocated, exact to the byte and blind to allocator caching.
  `memory_ratio_training` compares the training peak alone (activations, gradients, optimizer state: what the
  attribution passes could raise) and `torch_peak_by_phase_mib` gives the highest live bytes inside each phase, so
  the headroom of the attribution under the step's peak is visible.
The resident set is reported as context: VmHWM of /proc/self/status, reset (/proc/self/clear_refs) after the imports
and before the first step, with per-phase rises in `high_water_raised_mib`. Not getrusage's ru_maxrss: a child
inherits its parent's RSS there (measured: a child of an 800 MB parent read 814 MB before doing anything). RSS is a
coarse instrument at this size: without the profiler, KTR/GRPO RSS ratios scattered from 0.98 to 1.07 between
configurations whose torch peaks were equal, and with the profiler on, RSS also holds its event buffers, so RSS
ratios are only given with `memory_method="rss"`.

Configurations: the frames sweep at the first completion length and the completion-length sweep at the first frame
count (a cross, not the full grid).
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

log = logging.getLogger("videoktr.costbench.harness")  # also when run as __main__

TARGETS = {"time_ratio": 1.05, "memory_ratio": 1.02}
PAPER = {"time_ratio": 1.106, "memory_ratio": 1.008}
# RL settings when none are given (--cfg passes the study's `train`); lr, max_steps, max_completion_length and
# save_steps are overridden per run anyway.
DEFAULT_TRAIN = {"lr": 1.0e-3, "beta": 0.04, "num_generations": 4, "per_device_batch_size": 8,
                 "max_completion_length": 48, "temperature": 1.0, "epochs": 1, "max_steps": 8, "loss_type": "grpo",
                 "save_steps": 4, "logging_steps": 1}
DEFAULT_KTR = {"ratio": 0.2, "signals": ["E", "V", "T"]}
METHODS = ("grpo", "ktr")
# Memory runs: the warm-up step (which allocates the optimizer state) and one more; shapes are fixed (forced
# completion length, same prompts), so later steps allocate nothing new.
MEMORY_STEPS = 2


# -- memory ------------------------------------------------------------------------------------------------------
def _status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mib() -> float:
    """Current resident set size (VmRSS), MiB."""
    value = _status_mib("VmRSS")
    return float("nan") if value is None else value


def peak_rss_mib() -> float:
    """This process's resident-set high-water mark (VmHWM), MiB.

    Not getrusage's ru_maxrss: in a child started by a large parent, ru_maxrss reports the parent's RSS at the fork
    (Linux carries the old address space's high-water mark over the exec), so every child would read at least the
    parent's size. VmHWM belongs to the child's own address space. Falls back to ru_maxrss without /proc.
    """
    value = _status_mib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if value is None else value


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: `5` to /proc/self/clear_refs); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tensor_bytes(*modules) -> int:
    """Bytes of the distinct parameters and buffers of `modules` (None skipped)."""
    import itertools

    seen, total = set(), 0
    for m in modules:
        if m is None:
            continue
        for t in itertools.chain(m.parameters(), m.buffers()):
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


@contextlib.contextmanager
def torch_cpu_peak(out: dict):
    """Peak of live torch CPU allocations inside the block, above those alive at its start, into out["bytes"].

    From the profiler's allocation and free events (profile_memory=True): the CPU counterpart of
    torch.cuda.max_memory_allocated, exact to the byte, blind to allocator caching and to non-torch memory.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")]
    live, timeline = 0, []
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        timeline.append((e.start_ns(), live))
    out.update(bytes=max((b for _, b in timeline), default=0), events=len(events), timeline=timeline)


def peak_by_phase(timeline: list[tuple[int, int]], spans: list[tuple[str, int, int]]) -> dict[str, int]:
    """The highest live-bytes reading of `timeline` inside each phase's time spans (wall-clock ns)."""
    import bisect

    times = [t for t, _ in timeline]
    out: dict[str, int] = {}
    for name, t0, t1 in spans:
        i, j = bisect.bisect_left(times, t0), bisect.bisect_right(times, t1)
        if i < j:
            out[name] = max(out.get(name, 0), max(b for _, b in timeline[i:j]))
    return out


# -- timers ------------------------------------------------------------------------------------------------------
class PhaseTimer:
    """Nested named regions; per step, inclusive seconds per path ("attribution/backbone")."""

    def __init__(self):
        self.stack: list[str] = []
        self.current: dict[str, float] = defaultdict(float)
        # Where the process's RSS high-water mark rose: MiB per top-level phase (read when each phase ends).
        self.high_water = peak_rss_mib()
        self.raised: dict[str, float] = defaultdict(float)
        self.last_raised: str | None = None
        self.spans: list[tuple[str, int, int]] = []  # top-level phases: (name, start, end) in time.time_ns()

    def note_high_water(self, phase: str) -> None:
        hw = peak_rss_mib()
        if hw > self.high_water:
            self.raised[phase] += hw - self.high_water
            self.high_water, self.last_raised = hw, phase

    @contextlib.contextmanager
    def region(self, name: str):
        self.stack.append(name)
        path = "/".join(self.stack)
        _sync()
        start, start_ns = time.perf_counter(), time.time_ns()
        try:
            yield
        finally:
            _sync()
            self.current[path] += time.perf_counter() - start
            self.stack.pop()
            if not self.stack:
                self.spans.append((path, start_ns, time.time_ns()))
                self.note_high_water(path)

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


# Module-level helpers of videoktr.rl.grpo that KTR's attribution calls, timed where they exist.
TRAINER_HELPERS = ("completion_scores", "decoder_logps", "visual_perturbation", "permute_slices")


@contextlib.contextmanager
def _timed_helpers(timer: PhaseTimer):
    """Time KTR's helper functions (looked up in videoktr.rl.grpo' globals at call time), in the benchmark only."""
    from videoktr.rl import grpo as trainers

    originals = {n: getattr(trainers, n) for n in TRAINER_HELPERS if callable(getattr(trainers, n, None))}
    for name, fn in originals.items():
        setattr(trainers, name, timer.wrap(fn, name))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(trainers, name, fn)


# -- runs --------------------------------------------------------------------------------------------------------
_CUDA: bool | None = None


def _sync() -> None:
    """Wait for queued GPU work, so that a wall-clock reading means what it says (no-op on CPU)."""
    global _CUDA
    import torch

    if _CUDA is None:
        _CUDA = torch.cuda.is_available()
    if _CUDA:
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
    samples exactly what it would sample alone. `run_pair` keeps every thread alive until all have finished: a
    thread's exit (its OpenMP team torn down) made the other's next step several times slower.
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
            self.opt_start, self.opt_start_ns = time.perf_counter(), time.time_ns()

        def on_optimizer_step(self, args, state, control, **kwargs):
            _sync()
            timer.current["optimizer"] += time.perf_counter() - self.opt_start
            timer.spans.append(("optimizer", self.opt_start_ns, time.time_ns()))
            timer.note_high_water("optimizer")

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            seconds = time.perf_counter() - self.start
            steps.append({"step": state.global_step, "seconds": seconds, "phases": timer.take()})

    return StepTimer()


def spread_reward(prompts, completions, **kwargs) -> list[float]:
    """A benchmark-only reward in [0, 1): a hash of the completion text.

    With a random-init model every project reward is 0, so every advantage is 0 and the backward runs on a
    degenerate all-zero gradient, which is not what a training step computes (and is slow on CPU for reasons
    of its own). This reward spreads the advantages; it is a function of the completion only, so both methods,
    which sample identical completions, get identical rewards. Its cost is negligible.
    """
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) / 2**32 for t in texts]


spread_reward.__name__ = "bench_spread"


def build_trainer(method: str, model_dir, records: list[dict], data_dir, work_dir, *, video_cfg: dict, train: dict,
                  ktr: dict, steps: int, completion_length: int, seed: int, bf16: bool | None = None):
    """One instrumented trainer from the weights in `model_dir`, as videoktr.rl.run.train_run builds it."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from videoktr.rl.run import KTR_KEYS, AccuracyReward, format_reward_func, grpo_config, to_dataset
    from videoktr.models.tiny import vision_token_ids
    from videoktr.rl.grpo import KTRSettings, KTRTrainer, VideoGRPOTrainer

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (known: {METHODS})")
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    settings = dict(train, lr=0.0, max_steps=steps, max_completion_length=completion_length, epochs=1,
                    save_steps=10**9, logging_steps=1)
    args = grpo_config(settings, Path(work_dir) / method, seed, vision_token_ids(model))
    args.generation_kwargs["min_new_tokens"] = completion_length  # every completion is exactly L tokens
    args.disable_tqdm = True
    if bf16 is not None:  # both fields: the Trainer's Accelerator reads `mixed_precision`, set at construction
        args.bf16, args.mixed_precision = bool(bf16), ("bf16" if bf16 else "no")
    common = dict(model=model, reward_funcs=[AccuracyReward(), format_reward_func, spread_reward], args=args,
                  train_dataset=to_dataset(records), processing_class=processor, data_dir=data_dir,
                  video_cfg=video_cfg)
    if method == "ktr":
        # As videoktr.rl.run.train_run builds it, minus the token log and gradient diagnostics (analysis outputs that
        # are off by default and not part of the method's cost).
        settings = KTRSettings(**{k: ktr[k] for k in KTR_KEYS if k in ktr},
                                signals=tuple(ktr.get("signals", KTRSettings.signals)))
        trainer = KTRTrainer(**common, ktr=settings)
    else:
        trainer = VideoGRPOTrainer(**common)
    run = {"method": method, "steps": [], "fingerprints": [], "rss_ready_mib": rss_mib(),
           "torch_threads": torch.get_num_threads(), "device": str(trainer.accelerator.device),
           "gradient_checkpointing": bool(args.gradient_checkpointing), "bf16": args.mixed_precision == "bf16",
           "rng": _rng_state()}
    run["timer"] = PhaseTimer()
    _instrument(trainer, run["timer"], run["fingerprints"])
    return trainer, run


def _finish(run: dict) -> dict:
    timer = run.pop("timer", None)
    if timer is not None:
        run["high_water_raised_mib"] = {k: round(v, 1) for k, v in timer.raised.items()}
        run["high_water_last_raised_in"] = timer.last_raised
    run.pop("rng", None)
    return run


def run_method(method: str, model_dir, records: list[dict], data_dir, work_dir, *, profile_memory: bool = False,
               **kw) -> dict:
    """`steps` optimizer steps of one trainer alone (the memory runs); per-step times and phases, and the RSS
    high-water mark of the loading (up to here) and of the training steps separately."""
    trainer, run = build_trainer(method, model_dir, records, data_dir, work_dir, **kw)
    trainer.add_callback(_step_timer_callback(run["timer"], run["steps"], method, None))
    run["peak_loading_mib"] = peak_rss_mib()
    run["peak_reset"] = reset_peak_rss()
    run["rss_train_start_mib"] = rss_mib()
    run["timer"].high_water = peak_rss_mib()
    profiled: dict = {}
    with _timed_helpers(run["timer"]), (torch_cpu_peak(profiled) if profile_memory else contextlib.nullcontext()):
        trainer.train()
    run["peak_training_mib"] = peak_rss_mib()
    if profile_memory:
        static = tensor_bytes(trainer.model, trainer.ref_model)
        phases = peak_by_phase(profiled["timeline"], run["timer"].spans)
        run.update(torch_static_mib=static / 2**20, torch_training_peak_mib=profiled["bytes"] / 2**20,
                   torch_peak_allocated_mib=(static + profiled["bytes"]) / 2**20,
                   torch_peak_by_phase_mib={k: round(v / 2**20, 2) for k, v in sorted(phases.items())},
                   torch_memory_events=profiled["events"])
    del trainer
    gc.collect()
    return _finish(run)


def run_pair(model_dir, records: list[dict], data_dir, work_dir, **kw) -> dict:
    """GRPO and KTR side by side in this process, in lockstep (see `Lockstep`), from the same weights and seed."""
    trainers, runs = {}, {}
    for method in METHODS:  # the initial weights are loaded from disk for each
        trainers[method], runs[method] = build_trainer(method, model_dir, records, data_dir, work_dir, **kw)
    import torch

    lockstep = Lockstep(METHODS, {m: runs[m]["rng"] for m in METHODS})
    errors, threads = {}, torch.get_num_threads()
    all_done = threading.Barrier(len(METHODS))

    def body(method):
        torch.set_num_threads(threads)  # OpenMP settings are per thread: a new thread would start from the default
        runs[method]["torch_threads"] = torch.get_num_threads()
        lockstep.acquire(method)
        try:
            trainers[method].train()
        except BaseException as e:  # re-raised below, in the caller's thread
            errors[method] = e
        finally:
            lockstep.release(method, finished=True)
            all_done.wait()  # no thread ends while the other still steps: a thread's exit costs the next step

    for method in METHODS:
        trainers[method].add_callback(_step_timer_callback(runs[method]["timer"], runs[method]["steps"], method,
                                                           lockstep))
    workers = [threading.Thread(target=body, args=(m,), name=f"bench-{m}") for m in METHODS]
    with _timed_helpers(runs["ktr"]["timer"]):  # only KTR calls them
        for t in workers:
            t.start()
        for t in workers:
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

    from videoktr.rl import grpo as trainers  # noqa: F401

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
    proc = subprocess.run([sys.executable, "-m", "videoktr.costbench.harness", "--worker", str(spec_path), str(out_path)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory run {spec['method']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(out_path.read_text())


# -- inputs ------------------------------------------------------------------------------------------------------
def frames_data_dir(records: list[dict], data_dir, work: Path, frames: int, video_cfg: dict):
    """A data dir whose clips give `frames` frames at video_cfg's fps: the original one if its clips are long
    enough, otherwise frame-repeated copies of the same clips (only the frame count changes)."""
    import numpy as np

    from videoktr.data.video import read_frames
    from videoktr.data.world import write_mp4

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


def native_bf16() -> bool:
    """Whether this machine runs bf16 matrix products natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX).

    TRL's GRPOConfig turns bf16 autocast on by default; on a CPU without bf16 units every bf16 product of the loss
    forward and backward is emulated, several times slower than fp32, which inflates the GRPO step (the denominator)
    with a cost a GPU does not have.
    """
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _warm_frames(records: list[dict], data_dir, video_cfg: dict) -> None:
    from videoktr.data.model_inputs import load_frames

    for r in records:
        load_frames(r, data_dir, video_cfg)


def resize_model(src_dir, out_dir, size: dict, seed: int) -> Path:
    """A random-init model of another size with `src_dir`'s tokenizer and processor (benchmarking cost only:
    the weights do not matter when completions have a fixed length)."""
    from transformers import AutoConfig, AutoProcessor

    from videoktr.models.tiny import build_model

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
                  model_size: dict | None = None, memory: bool = True, bf16: bool | None = None,
                  threads: int | None = 1, memory_method: str = "auto") -> dict:
    """Benchmark every configuration, write `out_json` and a figure beside it (same stem, .png); return the dict.

    `bf16` None: bf16 autocast (TRL's default) only where the hardware has bf16 units (`native_bf16`), fp32
    otherwise. `memory_method` "auto": torch.cuda.max_memory_allocated on a GPU, the profiler's allocation events on
    a CPU; "rss": the RSS high-water mark only (no profiler). `threads`: torch intra-op threads here and in the memory processes (None: torch's default). One by
    default: on a CPU shared with other jobs, OpenMP teams of two or more threads make the many small ops of
    generation erratically slow (measured on the 2-core development machine under load: the same generate call
    took 1.2 s with one thread and 6-41 s with two), which would drown the difference being measured.
    """
    import torch

    if steps < 2:
        raise ValueError(f"need steps >= 2 (one warm-up step, then timed steps), got {steps}")
    if memory_method not in ("auto", "rss"):
        raise ValueError(f"unknown memory_method {memory_method!r} (known: auto, rss)")
    frames_list, completion_lengths = [int(f) for f in frames_list], [int(n) for n in completion_lengths]
    if not frames_list or not completion_lengths:
        raise ValueError("need at least one frame count and one completion length")
    train = {**DEFAULT_TRAIN, **(train or {})}
    ktr = {**DEFAULT_KTR, **(ktr or {})}
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
        for frames, length in configurations(frames_list, completion_lengths):
            cfg_video = {**video_cfg, "train_frames": frames}
            clips = frames_data_dir(records, data_dir, work, frames, video_cfg)
            common = dict(video_cfg=cfg_video, train=train, ktr=ktr, steps=steps, completion_length=length,
                          seed=seed, bf16=bf16)
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
                                work_dir=str(work / f"f{frames}_l{length}_mem"), threads=threads,
                                steps=MEMORY_STEPS, memory_method=memory_method)
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
        "settings": {"steps": steps, "timed_steps": steps - 1, "warmup_steps": 1, "memory_steps": MEMORY_STEPS,
                     "seed": seed,
                     "frames_list": frames_list, "completion_lengths": completion_lengths,
                     "configurations": "frames sweep at the first completion length + length sweep at the first "
                                       "frame count",
                     "video": video_cfg, "train": {**train, "lr": 0.0}, "ktr": ktr,
                     "prompts_per_step": prompts_per_step, "records": len(records),
                     "torch_threads": results[0]["torch_threads"], "cpu_count": os.cpu_count(),
                     "device": results[0]["device"], "gradient_checkpointing": results[0]["gradient_checkpointing"],
                     "bf16_autocast": bf16, "native_bf16": native_bf16()},
        "method": {
            "time": "wall clock per optimizer step (on_step_begin..on_step_end), both methods in one process in "
                    "lockstep (alternating steps, one running at a time, own RNG streams each), warm-up step "
                    "excluded; time_ratio = mean KTR step / mean GRPO step; time_ratio_median = median over step "
                    "pairs of KTR / GRPO; time_ratio_within_step = 1 / (1 - attribution_share), what the ratio is "
                    "if the rest of a KTR step costs what a GRPO step costs (read within the same steps, so less "
                    "exposed to the machine's load)",
            "precision": "bf16 autocast as TRL's GRPOConfig defaults only where the hardware has bf16 units; "
                         "otherwise fp32 (emulated bf16 would inflate the loss forward/backward, i.e. the GRPO "
                         "step, with a cost a GPU does not have)",
            "rewards": "the project's accuracy and format rewards plus a benchmark-only reward hashed from the "
                       "completion text, so that advantages and gradients are not all zero with a random-init "
                       "model",
            "attribution_share": "time inside KTRTrainer.attribution_scores / KTR step time (means)",
            "memory": "a fresh subprocess per (configuration, method), warm-up step + 1. memory_ratio = KTR / GRPO "
                      "of memory_ratio_basis: on a CPU torch_peak_allocated_mib = parameters and buffers of policy "
                      "and reference model + the peak of live torch CPU allocations during the steps (from the "
                      "profiler's allocation/free events: the counterpart of torch.cuda.max_memory_allocated); "
                      "memory_ratio_training = of that training peak alone; torch_peak_by_phase_mib = the highest "
                      "live bytes inside each phase. RSS (VmHWM, reset after imports and before the first step) is "
                      "kept as context; with the profiler on it also holds the profiler's buffers, so no RSS ratio "
                      "is given then (memory_method 'rss' gives RSS ratios without the profiler)",
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
        "time_ratio_within_step": _ratio(ktr["step_seconds_mean"], ktr["step_seconds_mean"] - attribution),
        "attribution_seconds_mean": attribution,
        "batches_identical": fp["grpo"] == fp["ktr"],
        "grpo": grpo, "ktr": ktr, "torch_threads": runs["grpo"]["torch_threads"], "device": runs["grpo"]["device"],
        "gradient_checkpointing": runs["grpo"]["gradient_checkpointing"], "bf16_autocast": runs["grpo"]["bf16"],
    }


def _memory(mem: dict) -> dict:
    keys = ("peak_rss_mib", "peak_above_imports_mib", "rss_after_imports_mib", "peak_loading_mib", "rss_ready_mib",
            "rss_train_start_mib", "peak_training_mib", "peak_training_above_start_mib", "peak_reset",
            "torch_static_mib", "torch_training_peak_mib", "torch_peak_allocated_mib", "torch_peak_by_phase_mib",
            "cuda_peak_allocated_mib", "high_water_raised_mib", "high_water_last_raised_in")
    out = {f"memory_{m}": {k: mem[m][k] for k in keys if k in mem[m]} for m in METHODS}
    if "cuda_peak_allocated_mib" in mem["grpo"]:
        basis = "cuda_peak_allocated_mib"
    elif "torch_peak_allocated_mib" in mem["grpo"]:
        basis = "torch_peak_allocated_mib"
        out["memory_ratio_training"] = _ratio(mem["ktr"]["torch_training_peak_mib"],
                                              mem["grpo"]["torch_training_peak_mib"])
    else:
        basis = "peak_above_imports_mib"
    out.update(memory_ratio=_ratio(mem["ktr"][basis], mem["grpo"][basis]), memory_ratio_basis=basis)
    if basis != "torch_peak_allocated_mib":  # with the profiler on, RSS also holds its event buffers
        out.update(
            memory_ratio_rss_training=_ratio(mem["ktr"]["peak_training_above_start_mib"],
                                             mem["grpo"]["peak_training_above_start_mib"]),
            memory_ratio_whole_process=_ratio(mem["ktr"]["peak_rss_mib"], mem["grpo"]["peak_rss_mib"]),
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
    sweeps = [("frames", "frames per clip", [r for r in rows if r["completion_length"] == l0],
               f"completion length {l0}"),
              ("completion_length", "completion length (tokens)", [r for r in rows if r["frames"] == f0],
               f"{f0} frames")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
    for col, (key, label, sweep, fixed) in enumerate(sweeps):
        sweep = sorted(sweep, key=lambda r: r[key])
        x = [r[key] for r in sweep]
        ax = axes[0][col]
        ax.plot(x, [r["time_ratio"] for r in sweep], "o-", color="C0", label="step time ratio (ours)")
        ax.plot(x, [r["time_ratio_within_step"] for r in sweep], "^--", color="C2",
                label="1 / (1 - attribution share) (ours)")
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
        ax.set_title(f"ratio vs {label}, at {fixed}")
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
    fig.suptitle(f"Video-KTR attribution cost on {report['settings']['device']}: hidden {model['hidden_size']} x "
                 f"{model['layers']} layers, {report['settings']['timed_steps']} timed steps per method and point")
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
    p = argparse.ArgumentParser(prog="python -m videoktr.costbench.harness", description=__doc__.split("\n\n")[0])
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
    from videoktr.data.records import load_json_records

    report = run_benchmark(a.model, load_json_records(a.records), a.data_dir, a.out, video_cfg=cfg["video"],
                           steps=a.steps, frames_list=_ints(a.frames), completion_lengths=_ints(a.completion_lengths),
                           seed=a.seed if a.seed is not None else cfg.get("seed", 0), train=cfg.get("train"),
                           ktr=ktr, model_size=_size(a.model_size) or None, threads=a.threads or None,
                           bf16={"auto": None, "on": True, "off": False}[a.bf16], memory_method=a.memory_method)
    for r in report["configurations"]:
        log.info("frames %3d  L %4d  time ratio %.3f  attribution share %.3f  memory ratio %s", r["frames"],
                 r["completion_length"], r["time_ratio"], r["attribution_share"],
                 f"{r['memory_ratio']:.3f}" if "memory_ratio" in r else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
