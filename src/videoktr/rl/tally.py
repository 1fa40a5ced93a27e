"""metrics.json's counts over a run's generation batches, over every segment of a run killed and resumed.

The trainer and its accuracy reward count what one invocation of `train()` saw: answers scored and unparseable, the
video input of the clips, a digest of each generation batch's rollouts. A resumed run starts them from zero, so on
their own they would cover its last segment only. `RunTally` saves the whole run's counts up to each checkpoint in that
checkpoint's trainer_state.json (`stateful_callbacks.RunTally`, as `CostMeter` saves its segments) and a resumed
segment adds its own to those of the checkpoint it resumed from. The batches a killed segment sampled past its last
checkpoint are sampled again by the next one and counted once, as in an uninterrupted run.

Under torchrun, trainer_state.json is written by the main process: every process resumes with its counts, and only the
main process writes metrics.json.
"""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from videoktr.data.model_inputs import merge_video_stats

EMPTY = {"scored_answers": 0, "unparseable_answers": 0, "video_input": None, "rollouts": []}


def combine(before: dict, scored: int, unparseable: int, video_input: list, rollouts: list) -> dict:
    """The counts up to a checkpoint (`before`) followed by those of a segment."""
    return {"scored_answers": before["scored_answers"] + scored,
            "unparseable_answers": before["unparseable_answers"] + unparseable,
            "video_input": merge_video_stats([before["video_input"], *video_input]),
            "rollouts": list(before["rollouts"]) + list(rollouts)}


class RunTally(TrainerCallback, ExportableState):
    """Attach to a VideoGRPOTrainer (its `video_input` and `rollouts`) with its counting accuracy reward (`seen`,
    `unparseable`) before `train()`; `summary()` gives metrics.json's fields. `from_step` 0: they cover the whole run;
    else the run was resumed from a checkpoint saved without them (an older version) and they begin after that step."""

    def __init__(self, trainer, accuracy):
        self.trainer, self.accuracy = trainer, accuracy
        self.before = dict(EMPTY)
        self.from_step = 0

    def summary(self) -> dict:
        t = self.trainer
        now = combine(self.before, self.accuracy.seen, self.accuracy.unparseable, getattr(t, "video_input", []),
                      getattr(t, "rollouts", []))
        return {**now, "counted_from_step": self.from_step}

    def state(self) -> dict:
        """Saved in each checkpoint's trainer_state.json: the run's counts up to that checkpoint."""
        return {"args": {}, "attributes": {"tally": self.summary()}}

    def adopt(self, state) -> None:
        """The counts saved with the checkpoint whose TrainerState is `state` (a run resumed from it)."""
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        tally = ((saved or {}).get("attributes") or {}).get("tally")
        if tally:
            self.before = {k: tally.get(k, v) for k, v in EMPTY.items()}
            self.from_step = int(tally.get("counted_from_step", 0))
        else:  # a checkpoint saved without them: what came before it is not counted, and metrics.json says so
            self.before, self.from_step = dict(EMPTY), state.global_step

    def on_train_begin(self, args, state, control, **kwargs):
        self.before, self.from_step = dict(EMPTY), 0
        if state.global_step:  # resumed: the checkpoint's trainer_state.json holds the counts before it
            self.adopt(state)
            # without the key, transformers' next save fails on it (see CostMeter)
            state.stateful_callbacks.setdefault(type(self).__name__, {"args": {}, "attributes": {"tally": EMPTY}})
