"""Table 4's cost numbers, measured on a run's own training: wall time, peak memory, throughput, forward latency and
forward FLOPs.

Forward = the policy's backbones (vision encoder, decoder) and LM head outside generation: the reference-free
log-prob forwards of the loss and, for Video-KTR, the attribution passes. Generation is excluded (its cost is the
same for every method and depends on the rollout engine). FLOPs are counted with torch's FlopCounterMode over every
such forward of one optimizer step (the run's second, after the warm-up), per process.

A run killed and resumed is measured over all its segments (one per invocation of `train()`): each checkpoint carries
the segments up to it in its trainer_state.json (`stateful_callbacks.CostMeter`, written with the checkpoint, before
the file that marks it complete), and a resumed segment adds its own. The steps a killed segment took past its last
checkpoint are redone by the next one and counted once, as in an uninterrupted run.
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from videoktr.memory import peak_rss_bytes

FLOP_STEP = 2  # the run's optimizer step whose forwards are counted (1-based; the first one warms up)


def peak_memory_bytes() -> tuple[int, str]:
    """The process's peak: CUDA's max allocated on a GPU, else the resident set's high-water mark (VmHWM)."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "cuda_max_memory_allocated"
    return peak_rss_bytes()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class CostMeter(TrainerCallback, ExportableState):
    """Attach to a (Video)GRPOTrainer before `train()`; `summary()` afterwards gives the cost dict of metrics.json.

    Keep `restore_callback_states_from_checkpoint` off (TrainerArguments' default): the meter reads its saved segments
    itself in `on_train_begin`; that option would replace it by a new instance without its hooks."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.generating = False
        self.forward_seconds = 0.0
        self.flops = 0
        self.flops_counted = False
        self.counting = False
        self.started = None
        self.previous: list[dict] = []  # the segments before this one (from the checkpoint resumed from)
        self.resumed_from: str | None = None
        self.final: dict | None = None
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
            self.flops_counted = True

    # -- segments ---------------------------------------------------------------------------------------------
    def segment(self, ended: bool = False) -> dict:
        """This invocation so far: its steps, time, forward time and FLOPs, peak memory and summed loss (transformers
        sums the loss since the last logging step into `_total_loss_scalar` when training ends)."""
        _sync()
        state = self.trainer.state
        memory, _ = peak_memory_bytes()
        tr_loss = None if ended else getattr(self.trainer, "_tr_loss", None)
        loss_sum = getattr(self.trainer, "_total_loss_scalar", 0.0) + (float(tr_loss) if tr_loss is not None else 0.0)
        return {"from_step": self.first_step, "to_step": state.global_step,
                "optimizer_steps": state.global_step - self.first_step,
                "seconds": time.perf_counter() - self.started, "forward_seconds": self.forward_seconds,
                "forward_flops": self.flops if self.flops_counted else None, "peak_memory_bytes": memory,
                "loss_sum": loss_sum, "resumed_from": self.resumed_from}

    def state(self) -> dict:
        """Saved in each checkpoint's trainer_state.json: the run's segments up to that checkpoint."""
        if self.started is None:  # asked by TrainerState before training starts
            return {"args": {}, "attributes": {"segments": []}}
        return {"args": {}, "attributes": {"segments": self.previous + [self.segment()]}}

    def adopt(self, state) -> None:
        """The segments saved with the checkpoint whose TrainerState is `state` (a run resumed from it)."""
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        self.previous = list(((saved or {}).get("attributes") or {}).get("segments") or [])
        self.final = None

    # -- the training loop ------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.previous, self.resumed_from = [], None
        if state.global_step:  # resumed: the checkpoint's trainer_state.json holds the segments before it
            self.adopt(state)
            self.resumed_from = f"checkpoint-{state.global_step}"
            # a checkpoint saved without the meter's state: transformers' next save would fail on the missing key
            state.stateful_callbacks.setdefault(type(self).__name__, {"args": {}, "attributes": {"segments": []}})
        self.forward_seconds, self.flops, self.flops_counted = 0.0, 0, False
        self.first_step, self.started = state.global_step, time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.counting = state.global_step + 1 == FLOP_STEP

    def on_step_end(self, args, state, control, **kwargs):
        self.counting = False

    def on_train_end(self, args, state, control, **kwargs):
        self.final = self.segment(ended=True)

    def summary(self) -> dict:
        """The whole run over its segments. Per process, except samples_per_second (completions per second over every
        process). `unaccounted_steps`: steps before a resumed checkpoint that carries no segments (saved by an older
        version), missing from the totals. Without a segment of its own (`adopt`ed, not trained), the saved ones."""
        args = self.trainer.args
        _, kind = peak_memory_bytes()
        segments = self.previous + ([self.final] if self.final else [])
        steps = sum(s["optimizer_steps"] for s in segments)
        seconds = sum(s["seconds"] for s in segments)
        flops = next((s["forward_flops"] for s in segments if s.get("forward_flops") is not None), None)
        return {
            "train_seconds": seconds,
            "optimizer_steps": steps,
            "peak_memory_bytes": max((s["peak_memory_bytes"] for s in segments), default=None),
            "peak_memory_kind": kind,
            "samples_per_second": (steps * args.per_device_train_batch_size * args.world_size / seconds
                                   if seconds else 0.0),
            "forward_latency_seconds": sum(s["forward_seconds"] for s in segments) / max(steps, 1),
            "forward_flops": flops,
            "forward": "policy vision encoder + decoder + LM head outside generation, per optimizer step; FLOPs of "
                       f"optimizer step {FLOP_STEP} of the run",
            "world_size": args.world_size,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "segments": len(segments),
            "unaccounted_steps": self.trainer.state.global_step - steps,
            "per_segment": segments,
        }
