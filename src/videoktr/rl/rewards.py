"""The RL rewards as TRL calls them: thin wrappers around Video-R1's rules in `videoktr.eval.answers`."""

from __future__ import annotations

from videoktr.eval.answers import format_reward, score


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


class AccuracyReward:
    """Video-R1 accuracy per problem type; counts unparseable answers (they score 0)."""

    __name__ = "accuracy"

    def __init__(self):
        self.seen = self.unparseable = 0

    def __call__(self, prompts, completions, solution, problem_type, **kwargs) -> list[float]:
        scores = [score(_text(c), s, t) for c, s, t in zip(completions, solution, problem_type)]
        self.seen += len(scores)
        self.unparseable += sum(not s.parseable for s in scores)
        return [s.accuracy for s in scores]


def format_reward_func(prompts, completions, **kwargs) -> list[float]:
    return [format_reward(_text(c)) for c in completions]


format_reward_func.__name__ = "format"
