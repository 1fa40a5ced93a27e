"""Video-R1 rewards: answer extraction, per-type accuracy, format, hostile outputs.

Every expected value below is derived by hand from the rule stated in the comment next
to it (Video-R1 src/r1-v/src/open_r1/grpo.py and src/eval_bench.py).
"""

import random
import re
import time

import pytest

from videoktr.eval.answers import (
    Score,
    accuracy,
    extract_answer,
    extract_choice_letter,
    format_reward,
    parse_number,
    parse_solution,
    score,
)

MC, NUM, OCR, FREE, REG = "multiple choice", "numerical", "OCR", "free-form", "regression"


def wrap(answer: str) -> str:
    return f"<think>reasoning</think><answer>{answer}</answer>"


# ----------------------------------------------------------------- extract_answer


def test_extract_basic_and_strip():
    assert extract_answer("<answer>B</answer>") == "B"
    assert extract_answer("<think>x</think>\n<answer>\n  B \n</answer>") == "B"
    assert extract_answer("<answer></answer>") == ""  # present but empty
    assert extract_answer("<answer>  </answer>") == ""


def test_extract_absent():
    assert extract_answer("") is None
    assert extract_answer("The answer is B.") is None
    assert extract_answer("<answer>B") is None  # never closed
    assert extract_answer("B</answer>") is None  # never opened
    assert extract_answer("</answer><answer>B") is None  # close before open only


def test_extract_several_tags_takes_first_pair():
    text = "<answer>A</answer> wait, no: <answer>B</answer>"
    assert extract_answer(text) == "A"
    # first opening tag wins even if it is closed only by the later pair's closer
    assert extract_answer("<answer>A ... <answer>B</answer>") == "A ... <answer>B"
    # a stray closer before the first opening tag is ignored
    assert extract_answer("</answer> <answer>C</answer>") == "C"


def _video_r1_extract(text):
    # Video-R1's rule written as its regex; "" stands for "no answer" there.
    m = re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.DOTALL)
    return m.group(1).strip() if m else None


def _random_text(rng, pieces, n):
    return "".join(rng.choice(pieces) for _ in range(n))


def test_extract_equals_video_r1_regex_on_random_strings():
    rng = random.Random(0)
    pieces = ["<answer>", "</answer>", "<think>", "</think>", " ", "\n", "A", "b", "<", ">", "/"]
    for _ in range(5000):
        text = _random_text(rng, pieces, rng.randint(0, 12))
        assert extract_answer(text) == _video_r1_extract(text), repr(text)


def test_parse_solution():
    assert parse_solution("<answer>B</answer>") == "B"
    assert parse_solution("<answer> 3.5 </answer>") == "3.5"
    assert parse_solution("  B ") == "B"  # untagged ground truth taken as is
    for bad in ["", "   ", "<answer></answer>", "<answer> \n </answer>"]:
        with pytest.raises(ValueError, match="empty ground-truth"):
            parse_solution(bad)


# ----------------------------------------------------------------- multiple choice


@pytest.mark.parametrize(
    "answer,acc,parsed",
    [
        ("B", 1.0, "B"),
        (" B ", 1.0, "B"),  # whitespace inside the tags is stripped by the extraction
        ("\nB\n", 1.0, "B"),
        ("C", 0.0, "C"),  # readable, wrong
        ("B.", 0.0, None),  # Video-R1: "B." != "B"
        ("b", 0.0, None),  # Video-R1: case-sensitive
        ("(B)", 0.0, None),
        ("B. A military command", 0.0, None),
        ("A military command", 0.0, None),  # option text instead of the letter
        ("", 0.0, None),
    ],
)
def test_mc_strict_is_video_r1(answer, acc, parsed):
    s = score(wrap(answer), "<answer>B</answer>", MC)
    assert s == Score(acc, parsed, parsed is not None)
    assert accuracy(wrap(answer), "<answer>B</answer>", MC) == acc


@pytest.mark.parametrize(
    "answer,acc,parsed",
    [
        ("B", 1.0, "B"),
        ("B.", 1.0, "B"),
        ("b", 1.0, "B"),
        ("b.", 1.0, "B"),
        ("(B)", 1.0, "B"),
        ("[B]", 1.0, "B"),
        ("**B**", 1.0, "B"),
        ("B. A military command", 1.0, "B"),
        ("(B) A military command", 1.0, "B"),
        ("B: A military command", 1.0, "B"),
        ("Answer: B", 1.0, "B"),
        ("The answer is (B).", 1.0, "B"),
        ("option B", 1.0, "B"),
        ("C.", 0.0, "C"),
        ("A military command", 0.0, None),  # option text: not mapped to a letter
        ("a dog", 0.0, None),  # lower-case article is not option A
        ("A, B", 0.0, None),  # several letters
        ("Answer: Beautiful", 0.0, None),
        ("", 0.0, None),
    ],
)
def test_mc_lenient(answer, acc, parsed):
    s = score(wrap(answer), "<answer>B</answer>", MC, mc_mode="lenient")
    assert s == Score(acc, parsed, parsed is not None)


def test_extract_choice_letter_direct():
    assert extract_choice_letter("d") == "D"
    assert extract_choice_letter("  E)  ") == "E"
    assert extract_choice_letter("B.red") is None  # no space after the delimiter
    assert extract_choice_letter("AB") is None
    assert extract_choice_letter("a. red") is None  # lower case + text reads as English
    assert extract_choice_letter("b) red") is None
    assert extract_choice_letter("B) red") == "B"
    assert extract_choice_letter("") is None


def test_mc_ground_truth_forms():
    # an untagged or decorated ground-truth letter is read the same way
    assert accuracy(wrap("B"), "B", MC) == 1.0
    assert accuracy(wrap("B"), "<answer>(B)</answer>", MC) == 1.0
    with pytest.raises(ValueError, match="not an option letter"):
        accuracy(wrap("B"), "<answer>a military command</answer>", MC)


def test_mc_several_answer_tags_first_counts():
    two = "<think>x</think><answer>A</answer><answer>B</answer>"
    assert accuracy(two, "<answer>B</answer>", MC) == 0.0
    assert accuracy(two, "<answer>A</answer>", MC) == 1.0


def test_unknown_mc_mode():
    with pytest.raises(ValueError, match="mc_mode"):
        score(wrap("B"), "<answer>B</answer>", MC, mc_mode="fuzzy")


# ----------------------------------------------------------------- numerical


@pytest.mark.parametrize(
    "answer,gt,acc",
    [
        ("2", "2", 1.0),
        ("2.0", "2", 0.0),  # decimal style differs ('.' in answer only)
        ("2.00", "2", 0.0),
        ("2", "2.0", 0.0),  # decimal style differs ('.' in gt only)
        ("2.00", "2.0", 1.0),  # both decimal, 2.00 == 2.0
        ("2.004", "2.0", 1.0),  # round(2.004, 2) == 2.0
        ("2.01", "2.0", 0.0),
        ("3.14", "3.14159", 1.0),  # round(3.14159, 2) == 3.14
        ("3.15", "3.14159", 0.0),
        ("-3", "-3", 1.0),
        ("+3", "3", 1.0),
        ("1,000", "1,000", 1.0),  # commas dropped before float()
        ("1000", "1,000", 0.0),  # ',' counts as decimal style in Video-R1
        ("1000.0", "1,000", 1.0),  # both "decimal", 1000.0 == 1000
        ("3", "2", 0.0),
    ],
)
def test_numerical(answer, gt, acc):
    s = score(wrap(answer), f"<answer>{gt}</answer>", NUM)
    assert s == Score(acc, answer, True)


@pytest.mark.parametrize("answer", ["two", "2 apples", "$2", "nan", "inf", "1_000", "", "2/3"])
def test_numerical_unparseable(answer):
    assert score(wrap(answer), "<answer>2</answer>", NUM) == Score(0.0, None, False)


def test_parse_number():
    assert parse_number(" -3.50 ") == -3.5
    assert parse_number("2,5") == 25.0  # comma is a thousands separator, as in Video-R1
    assert parse_number("1e3") == 1000.0
    assert parse_number(".5") == 0.5
    assert parse_number("1e999") is None  # overflows to inf
    assert parse_number("") is None


def test_numerical_bad_ground_truth():
    with pytest.raises(ValueError, match="numerical ground truth is not a number"):
        accuracy(wrap("2"), "<answer>two</answer>", NUM)


# ----------------------------------------------------------------- OCR (1 - WER)


@pytest.mark.parametrize(
    "answer,acc",
    [
        ("hello world foo bar", 1.0),
        ("hello world foo baz", 0.75),  # 1 substitution / 4 words
        ("hello world", 0.5),  # 2 deletions / 4
        ("hello big world foo bar", 0.75),  # 1 insertion / 4
        ("Hello world foo bar", 0.75),  # case-sensitive, as Video-R1
        ("hello\nworld   foo\tbar", 1.0),  # any whitespace separates words
        ("a b c d e f g h i", 0.0),  # 4 subs + 5 ins = 9/4 -> 1 - 2.25 clipped to 0
    ],
)
def test_ocr(answer, acc):
    s = score(wrap(answer), "<answer>hello world foo bar</answer>", OCR)
    assert s.accuracy == pytest.approx(acc)
    assert s.parseable and s.parsed == answer.strip()


def test_ocr_whitespace_in_ground_truth():
    # the ground truth is split on any whitespace too (Video-R1: str.split())
    assert accuracy(wrap("hello world"), "<answer>hello\nworld</answer>", OCR) == 1.0
    assert accuracy(wrap("hello"), "<answer> hello \t world </answer>", OCR) == 0.5


def test_ocr_empty_answer_unparseable():
    assert score(wrap(""), "<answer>hello</answer>", OCR) == Score(0.0, None, False)
    assert score("hello", "<answer>hello</answer>", OCR) == Score(0.0, None, False)


# ----------------------------------------------------------------- free-form (ROUGE)


@pytest.mark.parametrize(
    "answer,acc",
    [
        ("the cat sat on the mat", 1.0),
        ("THE CAT SAT ON THE MAT!", 1.0),  # rouge_score lower-cases and drops punctuation
        ("a dog ran", 0.0),
        # R1: P=3/3 R=3/6 F=2/3; R2: P=2/2 R=2/5 F=4/7; RL: LCS 3 -> F=2/3
        ("the cat sat", (2 / 3 + 4 / 7 + 2 / 3) / 3),
    ],
)
def test_free_form_rouge(answer, acc):
    s = score(wrap(answer), "<answer>the cat sat on the mat</answer>", FREE)
    assert s.accuracy == pytest.approx(acc)
    assert s.parseable


def test_free_form_uses_stemmer():
    # tokens: ref [the, cat, sat], hyp [cat, sit] (Porter: cats->cat, sitting->sit)
    # R1: overlap 1, P=1/2 R=1/3 F=0.4; R2: 0; RL: LCS 1 -> F=0.4; mean 0.8/3
    assert accuracy(wrap("cats sitting"), "<answer>the cat sat</answer>", FREE) == pytest.approx(0.8 / 3)


def test_free_form_empty_unparseable():
    assert score(wrap("  "), "<answer>the cat</answer>", FREE) == Score(0.0, None, False)


# ----------------------------------------------------------------- regression


@pytest.mark.parametrize(
    "answer,gt,acc",
    [
        ("10", "10", 1.0),  # exact -> exactly 1.0
        ("8", "10", 0.8),  # rel err 0.2
        ("12.5", "10", 0.75),  # rel err 0.25; no decimal-style rule for regression
        ("10.0", "10", 1.0),
        ("25", "10", 0.0),  # rel err 1.5 -> min(1, .) = 1
        ("0", "10", 0.0),  # rel err 1
        ("-3", "-4", 0.75),
        ("900", "1,000", 0.9),
        ("0", "0", 1.0),  # gt 0: exact zero only
        ("0.1", "0", 0.0),
    ],
)
def test_regression(answer, gt, acc):
    s = score(wrap(answer), f"<answer>{gt}</answer>", REG)
    assert s.accuracy == pytest.approx(acc, abs=1e-12)
    assert s.parsed == answer and s.parseable


def test_regression_unparseable():
    assert score(wrap("about ten"), "<answer>10</answer>", REG) == Score(0.0, None, False)


# ----------------------------------------------------------------- missing / hostile


@pytest.mark.parametrize("ptype,gt", [(MC, "B"), (NUM, "2"), (OCR, "hi there"), (FREE, "a cat"), (REG, "3")])
@pytest.mark.parametrize(
    "completion",
    ["", "   ", "<think>B</think>", "B", "2", "hi there", "a cat", "3", "<answer>B", "<think>x</think><answer></answer>"],
)
def test_no_usable_answer_scores_zero(ptype, gt, completion):
    s = score(completion, f"<answer>{gt}</answer>", ptype)
    assert s == Score(0.0, None, False)


def test_fallback_raw_reproduces_eval_bench():
    # eval_bench.py: no (or empty) <answer> -> the whole output is the answer
    assert score("B", "<answer>B</answer>", MC, fallback_raw=True) == Score(1.0, "B", True)
    assert accuracy(" 42\n", "<answer>42</answer>", NUM, fallback_raw=True) == 1.0
    assert accuracy("<answer></answer>", "<answer>B</answer>", MC, fallback_raw=True) == 0.0
    assert accuracy("I think B", "<answer>B</answer>", MC, fallback_raw=True) == 0.0
    # tags present: fallback changes nothing
    assert accuracy("B <answer>C</answer>", "<answer>B</answer>", MC, fallback_raw=True) == 0.0


def test_very_long_output():
    filler = "let me think, wait, hmm. " * 40_000  # ~1 MB of reasoning
    text = f"<think>{filler}</think><answer>B</answer>"
    assert accuracy(text, "<answer>B</answer>", MC) == 1.0
    assert format_reward(text) == 1.0
    assert accuracy(filler, "<answer>B</answer>", MC) == 0.0
    assert format_reward(filler) == 0.0


def test_hostile_outputs_are_linear_time():
    # Video-R1's regexes backtrack quadratically here: at a tenth of this size (20,000
    # tags) its answer regex took about a minute on a CPU; at this size, hours.
    unclosed = "<answer>" * 200_000
    pairs = "<think>" + "</think><answer>" * 100_000 + "</answer>x"
    t0 = time.perf_counter()
    assert extract_answer(unclosed) is None
    assert score(unclosed, "<answer>B</answer>", MC) == Score(0.0, None, False)
    assert format_reward(pairs) == 0.0
    assert format_reward(pairs[:-1]) == 1.0
    assert time.perf_counter() - t0 < 5.0


def test_unknown_problem_type_names_it():
    with pytest.raises(ValueError, match="unknown problem_type 'multi-choice'"):
        accuracy(wrap("B"), "<answer>B</answer>", "multi-choice")
    with pytest.raises(ValueError, match="'Multiple Choice'"):
        score("", "<answer>B</answer>", "Multiple Choice")


def test_non_string_completion_is_a_type_error():
    with pytest.raises(TypeError):
        accuracy(None, "<answer>B</answer>", MC)


# ----------------------------------------------------------------- format reward


@pytest.mark.parametrize(
    "text",
    [
        "<think>a</think><answer>B</answer>",
        "<think>a</think>\n\n<answer>B</answer>",  # \s* between the blocks
        "<think>\nline 1\nline 2\n</think>\n<answer>\nB\n</answer>",  # DOTALL
        "<think></think><answer></answer>",  # empty parts still match .*?
        "<think>a</think><answer>A</answer><answer>B</answer>",  # .*? spans the extra tags
        "<think>a</think>b</think><answer>B</answer>",
    ],
)
def test_format_positive(text):
    assert format_reward(text) == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<answer>B</answer>",
        "<think>a</think>",
        "<think>a</think><answer>B</answer>\n",  # full match: no trailing newline
        " <think>a</think><answer>B</answer>",  # nor leading space
        "<think>a</think> so <answer>B</answer>",  # text between the blocks
        "<answer>B</answer><think>a</think>",
        "<think>a</think><answer>B",
        "<think>a<answer>B</answer>",
        "<think>a</think><answer>B</answer> done",
        "<think>a</answer>",
    ],
)
def test_format_negative(text):
    assert format_reward(text) == 0.0


def test_format_equals_video_r1_regex_on_random_strings():
    pattern = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
    rng = random.Random(1)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x"]
    hits = 0
    for _ in range(20000):
        n = rng.randint(0, 8)
        text = ("<think>" if rng.random() < 0.7 else "") + _random_text(rng, pieces, n)
        text += "</answer>" if rng.random() < 0.7 else ""
        expected = 1.0 if pattern.fullmatch(text) else 0.0
        hits += expected == 1.0
        assert format_reward(text) == expected, repr(text)
    assert 500 < hits < 19500  # the sample exercises both outcomes (856 matches)


def test_the_accuracy_reward_keeps_the_last_calls_rewards_per_question_source():
    from videoktr.rl.rewards import AccuracyReward

    reward = AccuracyReward()
    done = [reward(None, ["<answer>A</answer>", "<answer>B</answer>", "<answer>2</answer>"],
                   ["<answer>A</answer>", "<answer>A</answer>", "<answer>2</answer>"],
                   ["multiple choice", "multiple choice", "numerical"],
                   data_source=["tinyworld/appearance", "tinyworld/appearance", "tinyworld/counting"])]
    assert done == [[1.0, 0.0, 1.0]] and reward.by_source == {"appearance": [1.0, 0.0], "counting": [1.0]}
    reward(None, ["<answer>A</answer>"], ["<answer>A</answer>"], ["multiple choice"])  # rows without a source
    assert reward.by_source == {}
    reward(None, ["<answer>A</answer>"], ["<answer>A</answer>"], ["multiple choice"], data_source=[""])  # to_dataset's
    assert reward.by_source == {}
