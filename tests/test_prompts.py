"""Prompt construction: Video-R1's question layout and template text, verbatim."""

import pytest

from videoktr.data import prompts
from videoktr.eval import answers as rewards
from videoktr.data.prompts import (
    EVAL_QUESTION_TEMPLATE,
    QUESTION_TEMPLATE,
    TYPE_TEMPLATE,
    build_question,
)

# The instruction exactly as it appears in Video-R1's src/r1-v/src/open_r1/grpo.py
# (one line here on purpose, so a wrapped or edited constant cannot hide a change).
TRAIN_INSTRUCTION = "Please think about this question as if you were a human pondering deeply. Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', etc, or other natural language thought expressions It's encouraged to include self-reflection or verification in the reasoning process. Provide your detailed reasoning between the <think> </think> tags, and then give your final answer between the <answer> </answer> tags."
# src/eval_bench.py: identical except "<think> and </think>" and "<answer> and </answer>".
EVAL_INSTRUCTION = "Please think about this question as if you were a human pondering deeply. Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', etc, or other natural language thought expressions It's encouraged to include self-reflection or verification in the reasoning process. Provide your detailed reasoning between the <think> and </think> tags, and then give your final answer between the <answer> and </answer> tags."

MC_SUFFIX = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."
NUM_SUFFIX = " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags."
OCR_SUFFIX = " Please transcribe text from the image/video clearly and provide your text answer within the <answer> </answer> tags."
FREE_SUFFIX = " Please provide your text answer within the <answer> </answer> tags."


def mc_record(**over):
    rec = {
        "problem_id": 2,
        "problem": "What appears on the screen in Russian during the missile's ascent?",
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": [
            "A. A YouTube subscription notification",
            "B. A military command",
            "C. A warning message",
            "D. A weather update",
        ],
        "solution": "<answer>A</answer>",
    }
    rec.update(over)
    return rec


def test_templates_are_verbatim():
    assert QUESTION_TEMPLATE == "{Question}\n" + TRAIN_INSTRUCTION
    assert EVAL_QUESTION_TEMPLATE == "{Question}\n" + EVAL_INSTRUCTION
    assert TYPE_TEMPLATE == {
        "multiple choice": MC_SUFFIX,
        "numerical": NUM_SUFFIX,
        "OCR": OCR_SUFFIX,
        "free-form": FREE_SUFFIX,
        "regression": NUM_SUFFIX,
    }


def test_problem_types_agree_with_rewards():
    assert set(prompts.PROBLEM_TYPES) == set(rewards.PROBLEM_TYPES)


def test_multiple_choice_layout_is_video_r1s():
    # Video-R1: problem + "Options:\n" (no separator) + each option + "\n", then the
    # template's own "\n" -> an empty line before the instruction.
    expected = (
        "What appears on the screen in Russian during the missile's ascent?Options:\n"
        "A. A YouTube subscription notification\n"
        "B. A military command\n"
        "C. A warning message\n"
        "D. A weather update\n"
        "\n" + TRAIN_INSTRUCTION + MC_SUFFIX
    )
    assert build_question(mc_record()) == expected


def test_eval_stage_uses_eval_template():
    text = build_question(mc_record(), stage="eval")
    assert text.endswith("D. A weather update\n\n" + EVAL_INSTRUCTION + MC_SUFFIX)
    assert text != build_question(mc_record(), stage="train")


@pytest.mark.parametrize(
    "ptype,suffix",
    [("numerical", NUM_SUFFIX), ("OCR", OCR_SUFFIX), ("free-form", FREE_SUFFIX), ("regression", NUM_SUFFIX)],
)
def test_non_mc_types_have_no_options(ptype, suffix):
    rec = {"problem_id": 7, "problem": "How many cups are on the table?", "problem_type": ptype,
           "options": ["A. 1", "B. 2"]}  # options are ignored for non-MC types
    assert build_question(rec) == "How many cups are on the table?\n" + TRAIN_INSTRUCTION + suffix


def test_options_used_as_given_and_braces_survive():
    rec = mc_record(problem="Is {x} set? ", options=["A. yes {0}", "B. no"])
    text = build_question(rec)
    assert text.startswith("Is {x} set? Options:\nA. yes {0}\nB. no\n\nPlease think")


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"problem_type": "multi-choice"}, "unknown problem_type 'multi-choice'"),
        ({"problem_type": None}, "missing field 'problem_type'"),
        ({"problem": None}, "missing field 'problem'"),
        ({"problem": "   "}, "'problem' must be a non-empty string"),
        ({"problem": 5}, "'problem' must be a non-empty string"),
        ({"options": None}, "lacks field 'options'"),
        ({"options": []}, "'options' must be a non-empty list"),
        ({"options": "A. x\nB. y"}, "'options' must be a non-empty list"),
        ({"options": ["A. x", None]}, "option 1 must be a non-empty string"),
    ],
)
def test_malformed_record_names_problem_id(change, needle):
    rec = mc_record(problem_id="vid-123", **change)
    with pytest.raises(ValueError) as err:
        build_question(rec)
    assert "'vid-123'" in str(err.value)
    assert needle in str(err.value)


def test_missing_keys_and_missing_problem_id():
    rec = mc_record()
    del rec["options"]
    del rec["problem_id"]
    with pytest.raises(ValueError, match=r"<no problem_id>.*'options'"):
        build_question(rec)
    with pytest.raises(ValueError, match="missing field 'problem'"):
        build_question({"problem_id": 1, "problem_type": "numerical"})


def test_unknown_stage():
    with pytest.raises(ValueError, match="stage"):
        build_question(mc_record(), stage="test")
