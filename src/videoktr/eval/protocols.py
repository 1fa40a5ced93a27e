"""The evaluation protocols: each one's prompt (:func:`user_text`, :func:`conversation`) and answer parser and
scorer (:func:`score`), as the benchmark's own evaluation code does it; the answer rules they share with the
training reward (answer extraction, exact letter, number parsing, decimal style) are those of
videoktr.eval.answers.  docs/benchmarks.md gives the sources.

Protocols (config ``eval.protocols`` may override a benchmark's default; see :data:`PROTOCOLS`):

* ``video_r1``: Video-R1's ``src/eval_bench.py``: its evaluation prompt (think/answer instruction + type suffix),
  the answer inside the first ``<answer>..</answer>``, or the whole output when there is none (or it is empty);
  multiple choice scores 1 only for exactly the ground-truth letter (``"B."``, ``"b"``, ``"(B)"`` and option text
  score 0); numerical: same decimal style and equal after rounding to 2 decimals; regression: mean relative
  accuracy over thresholds 0.50..0.95; OCR and free-form score 0.0, as there (``reward_fn``'s ``else`` branch).
* ``video_r1_relaxed`` (ChartQA): the same prompt and answer extraction, scored by relaxed accuracy: a number
  within 5% of a non-zero numeric target ("12%" reads 0.12), otherwise a case-insensitive exact match.
* ``video_holmes``: Video-Holmes' ``evaluate.py``: its own prompt; the answer is the LAST ``<answer>..</answer>``
  or the whole output; the letter is the first of A..F found as "X ", "X:" or "[X", else the first of A..F
  contained anywhere ("Answer: B" therefore reads "A", as there); no letter -> wrong and unparseable.
* ``tiny``: the tiny world's splits, exactly as before this module existed: Video-R1's training prompt and the
  training reward's rules (strict letter, no whole-output fallback).

Letters beyond the option count score 0 under every protocol and are counted as unparseable.  Hostile outputs
for a 4-option question whose answer is B (score, parsed; "unp." = unparseable; tests/test_benchmarks.py
checks this table):

| output                                   | video_r1 (7 benchmarks) | video_holmes   | tiny          |
|------------------------------------------|-------------------------|----------------|---------------|
| <think>..</think><answer>B</answer>      | 1, B                    | 1, B           | 1, B          |
| B  (no tags)                             | 1, B (whole output)     | 1, B           | 0, unp.       |
| The answer is B  (no tags)               | 0, unp.                 | 1, B           | 0, unp.       |
| <answer>A</answer> .. <answer>B</answer> | 0, A (first pair)       | 1, B (last)    | 0, A          |
| <answer>B.</answer>                      | 0, unp.                 | 1, B           | 0, unp.       |
| <answer>b</answer>                       | 0, unp.                 | 0, unp.        | 0, unp.       |
| <answer>blue</answer>  (option text)     | 0, unp.                 | 0, unp.        | 0, unp.       |
| (empty)                                  | 0, unp.                 | 0, unp.        | 0, unp.       |
| <answer>G</answer>  (beyond the options) | 0, G unp.               | 0, unp. (A-F)  | 0, G unp.     |
| Answer: B  (no tags)                     | 0, unp.                 | 0, A           | 0, unp.       |
| megabytes of text, then <answer>B</..>   | 1, B (linear time)      | 1, B           | 1, B          |

ChartQA (``video_r1_relaxed``) reads the same answer and scores it by relaxed accuracy instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from videoktr.data.prompts import build_question
from videoktr.eval.answers import (
    Score,
    extract_answer,
    numerical_accuracy,
    parse_number,
    parse_solution,
    strict_letter,
)
from videoktr.eval.answers import score as reward_score

if TYPE_CHECKING:
    from videoktr.eval.benchmarks import Benchmark

__all__ = [
    "Protocol",
    "PROTOCOLS",
    "resolve_protocol",
    "user_text",
    "conversation",
    "check",
    "score",
    "holmes_letter",
    "relaxed_correctness",
    "mean_relative_accuracy",
]


@dataclass(frozen=True)
class Protocol:
    name: str
    prompt: str  # "video_r1" or "video_holmes"
    template: str  # video_r1 prompt: "eval" (src/eval_bench.py) or "train" (grpo.py)
    scorer: str  # "video_r1_eval", "video_r1_reward", "relaxed" or "video_holmes"
    source: str


PROTOCOLS: dict[str, Protocol] = {
    "video_r1": Protocol("video_r1", "video_r1", "eval", "video_r1_eval",
                         "tulerfeng/Video-R1 src/eval_bench.py"),
    "video_r1_relaxed": Protocol("video_r1_relaxed", "video_r1", "eval", "relaxed",
                                 "Video-R1 prompt; ChartQA relaxed accuracy (Masry et al. 2022, 5%)"),
    "video_holmes": Protocol("video_holmes", "video_holmes", "eval", "video_holmes",
                             "TencentARC/Video-Holmes evaluate.py"),
    "tiny": Protocol("tiny", "video_r1", "train", "video_r1_reward",
                     "the tiny world: Video-R1 training prompt and reward rules"),
}

# Video-Holmes evaluate.py, verbatim (protocol text).
HOLMES_PROMPT = (
    "Based on the given video, reason and answer the single-choice question. Provide your reasoning between the "
    "<think> and </think> tags, and then give your final answer between the <answer> and </answer> tags. "
    "The question is: {question}. The options are: {options}. Your answer:"
)
HOLMES_LETTERS = "ABCDEF"


def resolve_protocol(benchmark: Benchmark | None, eval_cfg: dict | None = None) -> Protocol:
    """The benchmark's protocol, or the one config `eval.protocols.<benchmark>` names."""
    name = benchmark.protocol if benchmark is not None else "tiny"
    if benchmark is not None and eval_cfg:
        name = (eval_cfg.get("protocols") or {}).get(benchmark.name, name)
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def _letters_of(record: dict) -> list[str]:
    return [str(o).strip()[:1] for o in record.get("options") or []]


def user_text(record: dict, protocol: Protocol) -> str:
    """The text of the user turn (ValueError naming the record when it is malformed)."""
    if protocol.prompt == "video_r1":
        return build_question(record, stage=protocol.template)
    if protocol.prompt == "video_holmes":
        choices = record.get("choices")
        if not isinstance(choices, dict) or not choices:
            choices = {o[:1]: o[3:] for o in record.get("options") or []}
        options = ", ".join(f"{k}: {v}" for k, v in choices.items())
        return HOLMES_PROMPT.format(question=record["problem"], options=options)
    raise ValueError(f"unknown prompt kind {protocol.prompt!r}")


def n_images(record: dict) -> int:
    images = record.get("images")
    return len(images) if isinstance(images, (list, tuple)) and images else 1


def conversation(record: dict, protocol: Protocol) -> list[dict]:
    """The user turn: the clip (one video) or the image(s), then the text; as Video-R1's eval_bench builds it."""
    if record.get("data_type") == "image":
        media = [{"type": "image"} for _ in range(n_images(record))]
    else:
        media = [{"type": "video"}]
    return [{"role": "user", "content": [*media, {"type": "text", "text": user_text(record, protocol)}]}]


def check(record: dict, protocol: Protocol) -> None:
    """Raise ValueError (the reason) if the record cannot be prompted or scored under the protocol."""
    user_text(record, protocol)
    gt = parse_solution(record["solution"])
    if record["problem_type"] == "multiple choice" and gt not in _letters_of(record):
        raise ValueError(f"ground truth {gt!r} is not one of the option letters {''.join(_letters_of(record))}")
    if record["problem_type"] in ("numerical", "regression") and parse_number(gt) is None:
        raise ValueError(f"{record['problem_type']} ground truth is not a number: {gt!r}")


def _video_r1_answer(output: str) -> str:
    """eval_bench.py: the first <answer> pair's content, or the whole output when it is missing or empty."""
    answer = extract_answer(output)
    return answer if answer else output


def mean_relative_accuracy(pred: float, target: float, start=0.5, end=0.95, interval=0.05) -> float:
    """Video-R1 eval_bench.py: share of thresholds t in [start, end] with relative error < 1 - t (float32)."""
    rel = np.float32(abs(pred - target)) / (np.float32(abs(target)) + np.float32(1e-8))
    thresholds = np.arange(start, end + interval / 2, interval, dtype=np.float32)
    return float(np.mean(rel < (1 - thresholds)))


def relaxed_correctness(prediction: str, target: str, max_relative_change: float = 0.05) -> bool:
    """ChartQA's relaxed accuracy (as in Qwen-VL's and lmms-eval's scorers): numbers within 5% of a non-zero
    numeric target; a trailing "%" divides by 100; anything else needs a case-insensitive exact match."""

    def to_float(text: str):
        try:
            return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            return None

    p, t = to_float(prediction), to_float(target)
    if p is not None and t:
        return abs(p - t) / abs(t) <= max_relative_change
    return prediction.lower() == target.lower()


def _find_all_answers(text: str) -> list[str]:
    """re.findall(r"<answer>\\s*(.*?)\\s*</answer>", text, re.DOTALL), stripped, in linear time."""
    out, pos = [], 0
    while True:
        start = text.find("<answer>", pos)
        if start < 0:
            return out
        end = text.find("</answer>", start + 8)
        if end < 0:
            return out
        out.append(text[start + 8:end].strip())
        pos = end + 9


def holmes_letter(output: str) -> str | None:
    """Video-Holmes evaluate.py's answer parser; None where it says 'WRONG'."""
    matches = _find_all_answers(output)
    choice = matches[-1].strip() if matches else output
    for letter in HOLMES_LETTERS:
        if f"{letter} " in choice or f"{letter}:" in choice or f"[{letter}" in choice:
            return letter
    for letter in HOLMES_LETTERS:
        if letter in choice:
            return letter
    return None


def score(output: str, record: dict, protocol: Protocol) -> Score:
    """Score one output for one record under the protocol (see the module docstring)."""
    ptype, solution = record["problem_type"], record["solution"]
    letters = _letters_of(record)
    if protocol.scorer == "video_holmes":
        letter = holmes_letter(output)
        if letter is None:
            return Score(0.0, None, False)
        return Score(1.0 if letter == parse_solution(solution) else 0.0, letter, letter in letters)
    if protocol.scorer == "relaxed":
        answer = _video_r1_answer(output).strip()
        if not answer:
            return Score(0.0, None, False)
        if ptype == "multiple choice":  # a relaxed benchmark with options: exact letter, as video_r1
            return _mc(answer, parse_solution(solution), letters)
        return Score(1.0 if relaxed_correctness(answer, parse_solution(solution)) else 0.0, answer, True)
    if protocol.scorer == "video_r1_reward":
        s = reward_score(output, solution, ptype)
        if ptype == "multiple choice" and s.parsed is not None and s.parsed not in letters:
            return Score(0.0, s.parsed, False)
        return s
    if protocol.scorer != "video_r1_eval":
        raise ValueError(f"unknown scorer {protocol.scorer!r}")
    answer = _video_r1_answer(output).strip()
    gt = parse_solution(solution)
    if ptype == "multiple choice":
        return _mc(answer, gt, letters)
    if ptype == "numerical":
        value = parse_number(answer, strict=False)  # eval_bench.py normalize_number
        if value is None:
            return Score(0.0, None, False)
        return Score(numerical_accuracy(answer, value, gt, parse_number(gt, strict=False)), answer, True)
    if ptype == "regression":
        value = parse_number(answer, strict=False)
        if value is None:
            return Score(0.0, None, False)
        return Score(mean_relative_accuracy(value, parse_number(gt, strict=False)), answer, True)
    # OCR / free-form: eval_bench.py's reward_fn returns 0.0 for every other type.
    return Score(0.0, answer or None, bool(answer))


def _mc(answer: str, gt: str, letters: list[str]) -> Score:
    # eval_bench.py: output_ans.strip() == gt_ans.strip(); only a lone capital letter can ever match.
    letter = strict_letter(answer)
    if letter is None:
        return Score(0.0, None, False)
    return Score(1.0 if letter == gt else 0.0, letter, letter in letters)
