"""The benchmark's trainers: a GRPO or Video-KTR trainer built as `videoktr.rl.run.train_run` builds it, instrumented
with the timers of `videoktr.costbench.timing`, run alone (the memory runs) or as a pair in lockstep (the time runs).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import threading
from pathlib import Path

from videoktr.costbench.memory import (peak_by_phase, peak_rss_mib, reset_peak_rss, rss_mib, tensor_bytes,
                                       torch_cpu_peak)
from videoktr.costbench.timing import Lockstep, PhaseTimer, instrument, rng_state, step_timer_callback, timed_helpers

METHODS = ("grpo", "ktr")


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


def _ktr_module():
    """videoktr.rl.ktr, where KTRTrainer lives: its globals hold the helpers its attribution calls (`timed_helpers`)."""
    from videoktr.rl import ktr

    return ktr


def build_trainer(method: str, model_dir, records: list[dict], data_dir, work_dir, *, video_cfg: dict, train: dict,
                  ktr: dict, steps: int, completion_length: int, seed: int, bf16: bool | None = None):
    """One instrumented trainer from the weights in `model_dir`, as videoktr.rl.run.train_run builds it."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from videoktr.models.tiny import vision_token_ids
    from videoktr.rl.grpo import VideoGRPOTrainer
    from videoktr.rl.ktr import KTRSettings, KTRTrainer
    from videoktr.rl.rewards import AccuracyReward, format_reward_func
    from videoktr.rl.run import grpo_config, to_dataset

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (known: {METHODS})")
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    # What the benchmark means to change in the study's `train`: lr 0 (the optimizer steps, the weights stay, so
    # both trainers sample identical batches), exactly `steps` optimizer steps of one epoch, completions of exactly
    # `completion_length` tokens (min_new_tokens below), no checkpoints, and every step logged.
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
        trainer = KTRTrainer(**common, ktr=KTRSettings.from_run(ktr))
    else:
        trainer = VideoGRPOTrainer(**common)
    run = {"method": method, "steps": [], "fingerprints": [], "rss_ready_mib": rss_mib(),
           "torch_threads": torch.get_num_threads(), "device": str(trainer.accelerator.device),
           "gradient_checkpointing": bool(args.gradient_checkpointing), "bf16": args.mixed_precision == "bf16",
           "rng": rng_state()}
    run["timer"] = PhaseTimer()
    instrument(trainer, run["timer"], run["fingerprints"])
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
    trainer.add_callback(step_timer_callback(run["timer"], run["steps"], method, None))
    run["peak_loading_mib"] = peak_rss_mib()
    run["peak_reset"] = reset_peak_rss()
    run["rss_train_start_mib"] = rss_mib()
    run["timer"].high_water = peak_rss_mib()
    profiled: dict = {}
    with timed_helpers(run["timer"], _ktr_module()), \
            (torch_cpu_peak(profiled) if profile_memory else contextlib.nullcontext()):
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
        trainers[method].add_callback(step_timer_callback(runs[method]["timer"], runs[method]["steps"], method,
                                                          lockstep))
    workers = [threading.Thread(target=body, args=(m,), name=f"bench-{m}") for m in METHODS]
    with timed_helpers(runs["ktr"]["timer"], _ktr_module()):  # only KTR calls them
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    for method, e in errors.items():
        raise RuntimeError(f"benchmark run of {method} failed: {e!r}") from e
    del trainers
    gc.collect()
    return {m: _finish(r) for m, r in runs.items()}
