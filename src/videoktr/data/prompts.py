"""Prompt construction following Video-R1's protocol (which Video-KTR reuses).

The template text below is protocol data, reproduced verbatim from the Video-R1
repository (tulerfeng/Video-R1):

* ``QUESTION_TEMPLATE`` -- ``src/r1-v/src/open_r1/grpo.py`` (RL training) and
  ``src/r1-v/src/open_r1/sft_video.py`` (CoT SFT): "... between the <think> </think>
  tags, ... between the <answer> </answer> tags."
* ``EVAL_QUESTION_TEMPLATE`` -- ``src/eval_bench.py`` and ``src/inference_example.py``:
  identical except for the last sentence, which reads "between the <think> and </think>
  tags, ... between the <answer> and </answer> tags."
* ``TYPE_TEMPLATE`` -- identical in all four files.

Video-KTR's released code (zywang0104/Video-KTR) keeps these texts unchanged.

Layout of the question (Video-R1, all four files): for multiple choice the options are
appended *directly* to the problem text -- ``problem + "Options:\\n"`` with no separator
(the problem strings in Video-R1-260k carry none either) -- followed by each option and a
newline.  The template then adds another ``"\\n"`` after the question, so a multiple
choice prompt has an empty line between the last option and the instruction.  This is
reproduced byte for byte because the SFT model was trained on exactly this text.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "QUESTION_TEMPLATE",
    "EVAL_QUESTION_TEMPLATE",
    "TYPE_TEMPLATE",
    "PROBLEM_TYPES",
    "build_question",
]

QUESTION_TEMPLATE = (
    "{Question}\n"
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', "
    "'oh, I see', 'let's break it down', etc, or other natural language thought expressions "
    "It's encouraged to include self-reflection or verification in the reasoning process. "
    "Provide your detailed reasoning between the <think> </think> tags, and then give your "
    "final answer between the <answer> </answer> tags."
)
"""Training (GRPO / SFT) template, Video-R1 ``src/r1-v/src/open_r1/grpo.py``."""

EVAL_QUESTION_TEMPLATE = (
    "{Question}\n"
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', "
    "'oh, I see', 'let's break it down', etc, or other natural language thought expressions "
    "It's encouraged to include self-reflection or verification in the reasoning process. "
    "Provide your detailed reasoning between the <think> and </think> tags, and then give "
    "your final answer between the <answer> and </answer> tags."
)
"""Evaluation template, Video-R1 ``src/eval_bench.py`` (differs only in "and" twice)."""

TYPE_TEMPLATE: dict[str, str] = {
    "multiple choice": " Please provide only the single option letter (e.g., A, B, C, D, etc.) "
    "within the <answer> </answer> tags.",
    "numerical": " Please provide the numerical value (e.g., 42 or 3.14) within the "
    "<answer> </answer> tags.",
    "OCR": " Please transcribe text from the image/video clearly and provide your text answer "
    "within the <answer> </answer> tags.",
    "free-form": " Please provide your text answer within the <answer> </answer> tags.",
    "regression": " Please provide the numerical value (e.g., 42 or 3.14) within the "
    "<answer> </answer> tags.",
}

PROBLEM_TYPES: tuple[str, ...] = tuple(TYPE_TEMPLATE)

_TEMPLATES = {"train": QUESTION_TEMPLATE, "eval": EVAL_QUESTION_TEMPLATE}


def _record_id(record: Mapping) -> str:
    pid = record.get("problem_id") if isinstance(record, Mapping) else None
    return repr(pid) if pid is not None else "<no problem_id>"


def build_question(record: Mapping, *, stage: str = "train") -> str:
    """Return the user text of the prompt for one Video-R1-style record.

    ``record`` needs ``problem`` (non-empty str) and ``problem_type`` (one of
    ``PROBLEM_TYPES``); a multiple-choice record also needs ``options`` (a non-empty list
    of strings, e.g. ``["A. red", "B. blue"]``, used as given).  ``stage`` picks the
    template: ``"train"`` (``QUESTION_TEMPLATE``, as in Video-R1's grpo.py/sft_video.py)
    or ``"eval"`` (``EVAL_QUESTION_TEMPLATE``, as in its eval_bench.py).

    The result is ``template.format(Question=question) + TYPE_TEMPLATE[problem_type]``
    where ``question`` is ``problem`` (+ ``"Options:\\n"`` + ``option + "\\n"`` for each
    option, for multiple choice).

    Raises ``ValueError`` naming the record's ``problem_id`` when a field is missing or
    malformed, or the problem type is unknown; ``ValueError`` for an unknown ``stage``.
    """
    if stage not in _TEMPLATES:
        raise ValueError(f"unknown prompt stage {stage!r}; expected one of {sorted(_TEMPLATES)}")
    if not isinstance(record, Mapping):
        raise ValueError(f"record must be a mapping, got {type(record).__name__}")
    rid = _record_id(record)

    problem_type = record.get("problem_type")
    if problem_type is None:
        raise ValueError(f"record {rid}: missing field 'problem_type'")
    if problem_type not in TYPE_TEMPLATE:
        raise ValueError(
            f"record {rid}: unknown problem_type {problem_type!r}; "
            f"expected one of {list(PROBLEM_TYPES)}"
        )

    problem = record.get("problem")
    if problem is None:
        raise ValueError(f"record {rid}: missing field 'problem'")
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError(f"record {rid}: field 'problem' must be a non-empty string")

    question = problem
    if problem_type == "multiple choice":
        options = record.get("options")
        if options is None:
            raise ValueError(f"record {rid}: multiple-choice record lacks field 'options'")
        if isinstance(options, str) or not isinstance(options, (list, tuple)) or not options:
            raise ValueError(
                f"record {rid}: field 'options' must be a non-empty list of strings"
            )
        for i, option in enumerate(options):
            if not isinstance(option, str) or not option.strip():
                raise ValueError(
                    f"record {rid}: option {i} must be a non-empty string, got {option!r}"
                )
        question = problem + "Options:\n" + "".join(option + "\n" for option in options)

    return _TEMPLATES[stage].format(Question=question) + TYPE_TEMPLATE[problem_type]


def source_of(record: dict) -> str:
    """A record's question source as the reports name it: the last part of its `data_source` ("all" without one);
    the tiny world's subtask, and the key of the per-source training reward."""
    return str(record.get("data_source", "all")).split("/")[-1]
