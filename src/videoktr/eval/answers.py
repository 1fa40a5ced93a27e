"""Rule-based rewards and answer parsing following Video-R1's protocol.

Reference: tulerfeng/Video-R1, ``src/r1-v/src/open_r1/grpo.py`` (``accuracy_reward``,
``format_reward``: the RL training rewards) and ``src/eval_bench.py`` (``reward_fn``: the
benchmark scorer).  Video-KTR's released code (zywang0104/Video-KTR) uses the same
functions unchanged.  Everything here is a pure function of strings; no model.

Rules (Video-R1), as implemented here:

* answer: the text between the first ``<answer>`` and the first ``</answer>`` after it,
  stripped (see :func:`extract_answer`).  The ground truth is parsed the same way.
* multiple choice: exact letter.  Video-R1 compares ``answer.strip() == gt.strip()``.
* numerical: the answer and the ground truth must have the same "decimal style" (a ``.``
  or ``,`` present in both or in neither), then, with commas removed, equal after
  ``round(x, 2)``.
* OCR: ``1 - WER(gt, answer)`` clipped to [0, 1] (word level, whitespace tokens).
* free-form: mean of the ROUGE-1, ROUGE-2 and ROUGE-L F-measures (``rouge_score`` with
  the Porter stemmer), clipped to [0, 1].
* regression: ``1 - min(1, |answer - gt| / |gt|)``.
* format: ``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", text, re.DOTALL)``.

A missing or unparseable answer scores 0.0 for every type.  Deviations from Video-R1 are
listed in the docstrings of the functions concerned (search for "Deviation").
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

__all__ = [
    "PROBLEM_TYPES",
    "MC_MODES",
    "Score",
    "extract_answer",
    "parse_solution",
    "extract_choice_letter",
    "parse_number",
    "strict_letter",
    "numerical_accuracy",
    "score",
    "accuracy",
    "format_reward",
]

PROBLEM_TYPES: tuple[str, ...] = (
    "multiple choice",
    "numerical",
    "OCR",
    "free-form",
    "regression",
)
MC_MODES: tuple[str, ...] = ("strict", "lenient")

_OPEN = "<answer>"
_CLOSE = "</answer>"


@dataclass(frozen=True)
class Score:
    """Outcome of scoring one completion.

    accuracy:  the reward in [0, 1].
    parsed:    the normalised answer that was scored (an option letter for multiple
               choice, the number as written for numerical/regression, the answer text
               for OCR/free-form), or None when no usable answer was found.
    parseable: ``parsed is not None``; False means the completion earned 0.0 because
               its answer was missing or could not be read, not because it was wrong.
    """

    accuracy: float
    parsed: str | None
    parseable: bool


# --------------------------------------------------------------------------- parsing


def extract_answer(text: str) -> str | None:
    """Return the stripped content of the first ``<answer>...</answer>`` pair, or None.

    Rule (Video-R1): ``re.search(r"<answer>\\s*(.*?)\\s*</answer>", text, re.DOTALL)``,
    then ``.strip()``.  ``re.search`` returns the leftmost match and the lazy ``.*?``
    stops at the nearest ``</answer>``, so with several tags the FIRST complete pair is
    taken: content from the first ``<answer>`` to the first ``</answer>`` after it (if
    the first ``<answer>`` is never closed, no later one is either, so there is no
    answer).  We keep "first" rather than "last" because Video-R1 uses it both for the
    training reward and for benchmark scoring, so rewards and benchmark numbers stay
    comparable with the papers; it also means a model cannot "fix" a wrong answer by
    appending a second tag.  Nested tags are not balanced:
    ``"<answer><answer>B</answer>"`` gives ``"<answer>B"``, as in Video-R1.

    Returns ``""`` when the tags are present but empty, ``None`` when no pair exists
    (Video-R1 returns ``""`` for both).  Implemented with ``str.find`` (linear time even
    for hostile outputs with many unclosed tags, where the regex is quadratic); the
    result equals the regex's.
    """
    if not isinstance(text, str):
        raise TypeError(f"completion must be a str, got {type(text).__name__}")
    start = text.find(_OPEN)
    if start < 0:
        return None
    end = text.find(_CLOSE, start + len(_OPEN))
    if end < 0:
        return None
    return text[start + len(_OPEN) : end].strip()


def parse_solution(solution: str) -> str:
    """Return the ground-truth answer: the content of its ``<answer>`` tags, stripped.

    Deviation: a solution without tags is taken as the answer itself (stripped), where
    Video-R1 would read ``""`` -- which it then treats as matching any untagged
    completion.  An empty ground truth raises ``ValueError`` (a malformed record; callers
    report it with the record's id) instead of silently scoring.
    """
    if not isinstance(solution, str):
        raise TypeError(f"solution must be a str, got {type(solution).__name__}")
    answer = extract_answer(solution)
    if answer is None:
        answer = solution.strip()
    if not answer:
        raise ValueError(f"empty ground-truth solution: {solution!r}")
    return answer


# Lone letter, optionally bracketed and/or followed by "." or ":": "B", "b", "(B)",
# "B.", "B)", "[b]:".  Upper or lower case.
_LONE_LETTER = re.compile(r"[(\[]?([A-Za-z])[)\]]?[.:]?")
# Upper-case letter with a delimiter, then the option text: "B. red", "(B) red",
# "B: red", "B) red".  Upper case only, so that "a dog" is not read as option A.
_LETTER_THEN_TEXT = re.compile(r"(?:\(([A-Z])\)|\[([A-Z])\]|([A-Z])[.:)])\s+\S")
# "Answer: B", "The answer is (B)", "Option B", "correct choice: B." (letter upper case,
# not followed by another letter or digit).
_PHRASE_LETTER = re.compile(
    r"(?i:(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)(?:\s+is)?)"
    r"\s*[:\-]?\s*[(\[]?([A-Z])(?![A-Za-z0-9])"
)
_DECORATION = " \t\r\n*`\"'"


def extract_choice_letter(answer: str) -> str | None:
    """Read an option letter from an answer string; upper case, or None.

    Accepted (after stripping whitespace and ``* ` " '`` decoration at both ends):

    * a lone letter, either case, optionally bracketed or followed by ``.``/``:``:
      ``"B"``, ``" B "``, ``"b"``, ``"B."``, ``"(B)"``, ``"b)"`` -> ``"B"``;
    * an UPPER-case letter with a delimiter, then text: ``"B. red"``, ``"(B) red"``,
      ``"B: red"`` -> ``"B"`` (lower case is not accepted here: ``"a. dog"`` /
      ``"a dog"`` read as English, not as option A);
    * ``"Answer: B"``, ``"The answer is B"``, ``"Option (B)"`` -> ``"B"``.

    Anything else -- option text without its letter (``"red"``), several letters
    (``"A, B"``), an empty string -- gives None.  Option text is not mapped back to a
    letter (that would need the options and invites false matches).
    """
    text = answer.strip(_DECORATION)
    if not text:
        return None
    m = _LONE_LETTER.fullmatch(text)
    if m:
        return m.group(1).upper()
    m = _LETTER_THEN_TEXT.match(text)
    if m:
        return next(g for g in m.groups() if g)
    m = _PHRASE_LETTER.match(text)
    if m:
        return m.group(1)
    return None


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_number(text: str, *, strict: bool = True) -> float | None:
    """Parse a number the way Video-R1 does: drop every ``,``, then ``float``.

    ``"1,000"`` -> 1000.0, ``"2,5"`` -> 25.0 (a comma is a thousands separator, never a
    decimal comma), ``" -3.50 "`` -> -3.5.  Deviation (robustness): only plain decimal
    or scientific notation is accepted, so Python-only spellings that ``float`` takes
    (``"nan"``, ``"inf"``, ``"1_000"``) and non-finite values give None, like any other
    non-number (``"2 apples"``, ``"$2"``, ``""``).

    ``strict=False``: exactly Video-R1's ``eval_bench.py`` ``normalize_number`` (the
    benchmark scorer), with no such deviation: whatever ``float`` reads after dropping
    the commas, ``"nan"``, ``"inf"`` and ``"1_000"`` included.
    """
    cleaned = text.replace(",", "")
    if not strict:
        try:
            return float(cleaned)
        except ValueError:
            return None
    cleaned = cleaned.strip()
    if not _NUMBER.fullmatch(cleaned):
        return None
    value = float(cleaned)
    return value if math.isfinite(value) else None


def strict_letter(answer: str) -> str | None:
    """The answer if it is exactly one capital letter, else None.

    Video-R1 compares ``answer.strip() == gt.strip()`` and a ground truth is one option
    letter, so only a lone capital letter can ever match: ``"B."``, ``"b"``, ``"(B)"``
    and option text cannot (and are read as no letter at all).
    """
    return answer if re.fullmatch(r"[A-Z]", answer) else None


def _has_decimal(text: str) -> bool:
    # Video-R1's "decimal style": a '.' or a ',' anywhere in the answer string.
    return "." in text or "," in text


def numerical_accuracy(answer: str, value: float, gt: str, gt_value: float) -> float:
    """Video-R1's numerical rule: 0.0 unless the answer and the ground truth have the
    same decimal style (a ``.`` or ``,`` in both or in neither); then 1.0 iff their
    values (``value``, ``gt_value``: as parsed by :func:`parse_number`) are equal after
    ``round(x, 2)``."""
    if _has_decimal(answer) != _has_decimal(gt):
        return 0.0
    return 1.0 if round(value, 2) == round(gt_value, 2) else 0.0


# --------------------------------------------------------------------------- metrics


def _wer(reference: str, hypothesis: str) -> float:
    import jiwer

    # Video-R1 splits on any whitespace (str.split()); jiwer splits on single spaces,
    # so "a\nb" would be one word there.  Normalise first so both agree.
    ref = " ".join(reference.split())
    hyp = " ".join(hypothesis.split())
    if not ref:  # unreachable via score(): an empty ground truth raises earlier
        return 0.0 if not hyp else float(len(hyp.split()))
    return float(jiwer.wer(ref, hyp))


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def _rouge_mean_f(reference: str, hypothesis: str) -> float:
    scores = _rouge_scorer().score(reference, hypothesis)
    return (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure + scores["rougeL"].fmeasure) / 3


def _clip01(x: float) -> float:
    return max(0.0, min(1.0, float(x)))


# --------------------------------------------------------------------------- scoring


def score(
    completion: str,
    solution: str,
    problem_type: str,
    *,
    mc_mode: str = "strict",
    fallback_raw: bool = False,
) -> Score:
    """Score one completion against its ground truth under Video-R1's rules.

    ``problem_type``: one of ``PROBLEM_TYPES``; anything else raises ``ValueError``
    naming it (Deviation: Video-R1 gives 0.0).  A malformed ground truth (empty; not an
    option letter for multiple choice; not a number for numerical/regression) raises
    ``ValueError``: it is a data error, not a wrong answer.

    ``mc_mode`` (multiple choice only):

    * ``"strict"`` (default, Video-R1's behaviour): the stripped answer must be exactly
      the ground-truth letter.  ``" B "`` scores 1 (surrounding whitespace is stripped
      by the extraction); ``"B."``, ``"b"``, ``"(B)"``, ``"B. red"`` and option text
      score 0 and are unparseable (``parsed`` is None).
    * ``"lenient"``: the letter is read with :func:`extract_choice_letter`, so ``"B."``,
      ``"b"``, ``"(B)"``, ``"B. red"``, ``"Answer: B"`` all read as ``"B"``; option text
      without a letter is still unparseable.

    ``fallback_raw``: Video-R1's ``eval_bench.py`` scores the whole output when
    ``<answer>`` is missing or empty; pass True to reproduce that for benchmarks.
    Default False, as in the training reward (missing answer -> 0.0).
    """
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(
            f"unknown problem_type {problem_type!r}; expected one of {list(PROBLEM_TYPES)}"
        )
    if mc_mode not in MC_MODES:
        raise ValueError(f"unknown mc_mode {mc_mode!r}; expected one of {list(MC_MODES)}")
    gt = parse_solution(solution)
    answer = extract_answer(completion)
    if fallback_raw and not answer:
        answer = completion.strip()
    unparseable = Score(0.0, None, False)

    if problem_type == "multiple choice":
        gt_letter = extract_choice_letter(gt)
        if gt_letter is None:
            raise ValueError(f"multiple-choice ground truth is not an option letter: {gt!r}")
        if answer is None:
            return unparseable
        if mc_mode == "strict":
            letter = strict_letter(answer)
        else:
            letter = extract_choice_letter(answer)
        if letter is None:
            return unparseable
        return Score(1.0 if letter == gt_letter else 0.0, letter, True)

    if problem_type in ("numerical", "regression"):
        gt_value = parse_number(gt)
        if gt_value is None:
            raise ValueError(f"{problem_type} ground truth is not a number: {gt!r}")
        value = parse_number(answer) if answer is not None else None
        if value is None:
            return unparseable
        if problem_type == "numerical":
            return Score(numerical_accuracy(answer, value, gt, gt_value), answer, True)
        # regression.  Deviation: Video-R1 adds 1e-9 to numerator and denominator, which
        # makes an exact answer score 1 - 1e-9/|gt| and gives 0.0 to every answer when
        # gt == 0; here an exact answer scores exactly 1.0 and gt == 0 scores 1.0 only
        # for an answer of 0.
        if gt_value == 0.0:
            rel_err = 0.0 if value == 0.0 else math.inf
        else:
            rel_err = abs(value - gt_value) / abs(gt_value)
        return Score(1.0 - min(1.0, rel_err), answer, True)

    # OCR, free-form: any non-empty answer text is readable.
    if not answer:
        return unparseable
    if problem_type == "OCR":
        return Score(_clip01(1.0 - _wer(gt, answer)), answer, True)
    return Score(_clip01(_rouge_mean_f(gt, answer)), answer, True)


def accuracy(completion: str, solution: str, problem_type: str, **options) -> float:
    """Video-R1 accuracy reward in [0, 1]; ``score(...).accuracy`` (see :func:`score`;
    ``options``: its keywords ``mc_mode`` and ``fallback_raw``)."""
    return score(completion, solution, problem_type, **options).accuracy


_THINK_CLOSE_THEN_ANSWER = re.compile(r"</think>\s*<answer>")


def format_reward(completion: str) -> float:
    """1.0 iff ``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", completion,
    re.DOTALL)`` matches (Video-R1 ``format_reward``), else 0.0.

    The whole string must match: no text (not even whitespace or a newline) before
    ``<think>`` or after the final ``</answer>``.  Because ``.*?`` may span tags, extra
    tags inside the think or answer parts still match, as in Video-R1.

    Implemented without the regex's backtracking (which is quadratic on outputs with
    many ``</think><answer>`` pairs): the text starts with ``<think>``, ends with
    ``</answer>``, and contains ``</think>\\s*<answer>`` after the opening tag.  That is
    equivalent to the regex because the ``.*?`` parts match anything and no tag can
    overlap another (``<think>``/``</think>`` and ``<answer>``/``</answer>`` differ in
    their second character), so a ``<answer>`` found before the end always ends before
    the closing ``</answer>`` begins.
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    head = "<think>"
    if not (completion.startswith(head) and completion.endswith(_CLOSE)):
        return 0.0
    return 1.0 if _THINK_CLOSE_THEN_ANSWER.search(completion, len(head)) else 0.0
