"""Table 4's cost numbers, measured on a run's own training: wall time, peak memory, throughput, forward latency and
forward FLOPs.

Forward = the policy's backbones (vision encoder, decoder) and LM head outside generation: the reference-free
log-prob forwards of the loss and, for Video-KTR, the attribution passes. Generation is excluded (its cost is the
same for every method and depends on the rollout engine). FLOPs are counted with torch's FlopCounterMode over every
such forward of one optimizer step (the second, after the warm-up), per process.
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback

from videoktr.memory import peak_rss_bytes

FLOP_STEP = 2  # the optimizer step whose forwards are counted (1-based; the first one warms up)


def peak_memory_bytes() -> tuple[int, str]:
    """The process's peak: CUDA's max allocated on a GPU, else the resident set's high-water mark (VmHWM)."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "cuda_max_memory_allocated"
    return peak_rss_bytes()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class CostMeter(TrainerCallback):
    """Attach to a (Video)GRPOTrainer before `train()`; `summary()` afterwards gives the cost dict of metrics.json."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.generating = False
        self.forward_seconds = 0.0
        self.flops = 0
        self.counting = False
        self._open: list = []
        generate = trainer._generate_single_turn

        def timed_generate(*args, **kwargs):  # instrumentation only: forwards inside generation are not counted
            self.generating = True
            try:
                return generate(*args, **kwargs)
            finally:
                self.generating = False

        trainer._generate_single_turn = timed_generate
        model = trainer.accelerator.unwrap_model(trainer.model)
        for module in (model.model.visual, model.model.language_model, model.lm_head):
            module.register_forward_pre_hook(self._before)
            module.register_forward_hook(self._after)

    def _before(self, module, args):
        if self.generating:
            return
        counter = None
        if self.counting:
            counter = FlopCounterMode(display=False)
            counter.__enter__()
        _sync()
        self._open.append((time.perf_counter(), counter))

    def _after(self, module, args, output):
        if self.generating or not self._open:
            return
        _sync()
        start, counter = self._open.pop()
        self.forward_seconds += time.perf_counter() - start
        if counter is not None:
            counter.__exit__(None, None, None)
            self.flops += counter.get_total_flops()

    # -- the training loop ------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.first_step, self.started = state.global_step, time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.counting = state.global_step - self.first_step + 1 == FLOP_STEP

    def on_step_end(self, args, state, control, **kwargs):
        self.counting = False

    def on_train_end(self, args, state, control, **kwargs):
        _sync()
        self.seconds, self.steps = time.perf_counter() - self.started, state.global_step - self.first_step

    def summary(self) -> dict:
        """Per process, except samples_per_second (completions per second over every process)."""
        args = self.trainer.args
        memory, kind = peak_memory_bytes()
        steps = max(self.steps, 1)
        return {
            "train_seconds": self.seconds,
            "optimizer_steps": self.steps,
            "peak_memory_bytes": memory,
            "peak_memory_kind": kind,
            "samples_per_second": self.steps * args.per_device_train_batch_size * args.world_size / self.seconds,
            "forward_latency_seconds": self.forward_seconds / steps,
            "forward_flops": self.flops if self.steps >= FLOP_STEP else None,
            "forward": "policy vision encoder + decoder + LM head outside generation, per optimizer step; FLOPs of "
                       f"optimizer step {FLOP_STEP} of this invocation",
            "world_size": args.world_size,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        }
