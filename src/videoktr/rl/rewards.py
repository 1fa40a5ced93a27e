"""The RL rewards as TRL calls them: thin wrappers around Video-R1's rules in `videoktr.eval.answers`."""

from __future__ import annotations

from videoktr.data.prompts import source_of
from videoktr.eval.answers import format_reward, score


BY_SOURCE = "rewards/accuracy_by_source/"  # + a question source: the log key of its mean accuracy reward in a step


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


class AccuracyReward:
    """Video-R1 accuracy per problem type; counts unparseable answers (they score 0). `by_source` holds the last
    call's rewards per question source (the record's data_source, its last part), when the rows carry one."""

    __name__ = "accuracy"

    def __init__(self):
        self.seen = self.unparseable = 0
        self.by_source: dict[str, list[float]] = {}

    def __call__(self, prompts, completions, solution, problem_type, **kwargs) -> list[float]:
        scores = [score(_text(c), s, t) for c, s, t in zip(completions, solution, problem_type)]
        self.seen += len(scores)
        self.unparseable += sum(not s.parseable for s in scores)
        self.by_source = {}
        for source, s in zip(kwargs.get("data_source") or [], scores):
            if source:  # rl.run.to_dataset gives "" to a record without one
                self.by_source.setdefault(source_of({"data_source": source}), []).append(s.accuracy)
        return [s.accuracy for s in scores]


def format_reward_func(prompts, completions, **kwargs) -> list[float]:
    return [format_reward(_text(c)) for c in completions]


format_reward_func.__name__ = "format"
