"""The benchmark's clocks: nested phase timers on a trainer instance, a per-step timer callback, and the lockstep
that makes a GRPO and a KTR trainer take turns one optimizer step at a time, each with its own RNG streams.

Times are wall clock (`time.perf_counter`, after a CUDA synchronize on a GPU) and inclusive: "attribution/backbone"
is part of "attribution" (docs/costbench.md, "Time").
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time
from collections import defaultdict

from videoktr.costbench.memory import peak_rss_mib

_CUDA: bool | None = None


def sync() -> None:
    """Wait for queued GPU work, so that a wall-clock reading means what it says (no-op on CPU)."""
    global _CUDA
    import torch

    if _CUDA is None:
        _CUDA = torch.cuda.is_available()
    if _CUDA:
        torch.cuda.synchronize()


def rng_state() -> dict:
    """The global RNG streams (python, numpy, torch and, on a GPU, CUDA)."""
    import random

    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


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
        sync()
        start, start_ns = time.perf_counter(), time.time_ns()
        try:
            yield
        finally:
            sync()
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


def instrument(trainer, timer: PhaseTimer, fingerprints: list[dict]) -> None:
    """Timers on the trainer instance and its policy model, and a hash of every step's ids into `fingerprints`;
    the classes stay untouched."""
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


# Module-level helpers that KTR's attribution calls, timed where they exist (in the module KTRTrainer lives in).
TRAINER_HELPERS = ("completion_scores", "decoder_logps", "visual_perturbation", "permute_slices")


@contextlib.contextmanager
def timed_helpers(timer: PhaseTimer, module):
    """Time KTR's helper functions, looked up in `module`'s globals at call time (KTRTrainer's module), in the
    benchmark only."""
    originals = {n: getattr(module, n) for n in TRAINER_HELPERS if callable(getattr(module, n, None))}
    for name, fn in originals.items():
        setattr(module, name, timer.wrap(fn, name))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


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
        set_rng_state(self.rng[name])

    def release(self, name, finished: bool = False) -> None:
        self.rng[name] = rng_state()
        with self.cond:
            if finished:
                self.done.add(name)
            self.turn = self._next(name)
            self.cond.notify_all()


def step_timer_callback(timer: PhaseTimer, steps: list[dict], name: str, lockstep: Lockstep | None):
    """A TrainerCallback appending each optimizer step's wall time and phases to `steps`; with a `lockstep`, the
    turn changes between steps."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step, with the phases recorded inside it; the turn changes between steps."""

        def on_step_begin(self, args, state, control, **kwargs):
            if lockstep is not None:
                lockstep.release(name)
                lockstep.acquire(name)
            sync()
            timer.take()
            self.start = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            sync()
            self.opt_start, self.opt_start_ns = time.perf_counter(), time.time_ns()

        def on_optimizer_step(self, args, state, control, **kwargs):
            sync()
            timer.current["optimizer"] += time.perf_counter() - self.opt_start
            timer.spans.append(("optimizer", self.opt_start_ns, time.time_ns()))
            timer.note_high_water("optimizer")

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            seconds = time.perf_counter() - self.start
            steps.append({"step": state.global_step, "seconds": seconds, "phases": timer.take()})

    return StepTimer()
