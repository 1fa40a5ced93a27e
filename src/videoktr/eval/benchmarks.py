"""The evaluation benchmarks: each reads its released files as published into one common record, with its protocol.

Common record (the Video-R1 shape used everywhere in this package)::

    problem_id   str, unique within the benchmark
    problem      the question text (for multiple choice without the options)
    data_type    "video" or "image"
    problem_type "multiple choice", "numerical", "OCR", "free-form" or "regression"
    options      ["A. text", "B. text", ...] (multiple choice), else []
    solution     "<answer>X</answer>"
    path         the clip, relative to the benchmark's media folder (images: a label, see `images`)
    data_source  where the record came from (benchmark / file)
    subtask      the benchmark's breakdown field (see the table below)
    images       image benchmarks only: the image(s) as bytes (as the parquet files embed them) or paths
    choices      Video-Holmes only: {"A": text, ...} as published (its own prompt lists them as "A: text, ...")

Formats, as published (checked against the public files or the evaluation code that reads them; see the report
of each loader for what could not be confirmed):

| benchmark     | file(s) read                                         | id            | subtask            | count |
|---------------|------------------------------------------------------|---------------|--------------------|-------|
| video_holmes  | test_Video-Holmes.json ("Question ID", "Question     | Question ID   | Question Type      | 1,837 |
|               | Type", "Question", "Options" {A..F}, "Answer",       |               | (SR IMC TCI TA MHR |       |
|               | "video ID"); clips videos/<video ID>.mp4             |               |  PAR CTI)          |       |
| videommmu     | lmms-lab/VideoMMMU: <Track>/*.parquet or <Track>.json| <Track>/<id>  | track (Perception, |   900 |
|               | (id, question, options, answer, question_type);      |               | Comprehension,     |       |
|               | clips <id>.mp4 or <Discipline>/<id>.mp4              |               | Adaptation)        |       |
| mmvu          | yale-nlp/MMVU validation.json (id, video URL,        | id            | metadata.subject   |   625 |
|               | question_type, question, choices {A..E}, answer);    |               |                    | (mc)  |
|               | only question_type == "multiple-choice"; clips at    |               |                    |       |
|               | videos/<Subject>/<n>.mp4 (the URL's path)            |               |                    |       |
| tempcompass   | llyx97/TempCompass questions/multi-choice.json       | <video>/<dim>/| dim (action, speed,| 1,580 |
|               | ({video: {dim: [{question, answer}]}}) or lmms-lab   | <k>           | direction, order,  |       |
|               | multi-choice parquet (video_id, question, answer,    |               | attribute_change)  |       |
|               | dim); clips videos/<video_id>.mp4                    |               |                    |       |
| videomme      | lmms-lab/Video-MME videomme/test-*.parquet (videoID, | question_id   | duration (short,   | 2,700 |
|               | question_id, duration, question, options, answer);   |               | medium, long)      |       |
|               | clips data/<videoID>.mp4; no subtitles               |               |                    |       |
| mmmu          | MMMU/MMMU validation parquet (id, question, options  | id            | subject (from id)  |   900 |
|               | as a Python-literal string, image_1..image_7,        |               |                    |       |
|               | answer, question_type)                               |               |                    |       |
| ai2d          | lmms-lab/ai2d test parquet (question, options,       | ai2d_<row>    | all                | 3,088 |
|               | answer = option index, image)                        |               |                    |       |
| mmstar        | Lin-Chen/MMStar mmstar.parquet (index, question with | index         | category           | 1,500 |
|               | "Options: A: .., B: ..", image, answer, category)    |               |                    |       |
| chartqa       | lmms-lab/ChartQA test parquet (type, question,       | chartqa_<row> | type (human_test,  | 2,500 |
|               | answer, image)                                       |               | augmented_test)    |       |

Video-R1-eval JSON files (``eval_videommmu.json``, ``eval_mmvu.json``, ``eval_tempcompass.json``,
``eval_videomme.json`` from the Video-R1/Video-R1-eval dataset) are accepted in place of the published files of
the same benchmark: they are Video-R1 records already; their ``path`` ("./Evaluation/VideoMMMU/<id>.mp4") is taken
relative to the media folder.  Their subtask field could NOT be confirmed (VideoMMMU's ``data_source`` there is a
YouTube URL): a ``subtask`` key is used if present, else "all".

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

import ast
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from videoktr.data.prompts import build_question
from videoktr.eval.answers import Score, extract_answer, parse_number, parse_solution
from videoktr.eval.answers import score as reward_score

__all__ = [
    "Benchmark",
    "BENCHMARKS",
    "Loaded",
    "Protocol",
    "PROTOCOLS",
    "BadRecord",
    "conversation",
    "user_text",
    "check",
    "score",
    "load_benchmark",
    "load_images",
    "holmes_letter",
    "relaxed_correctness",
    "mean_relative_accuracy",
    "resolve_protocol",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class BadRecord(ValueError):
    """A record that does not have its benchmark's published shape; the message is the reason."""


class Loaded(NamedTuple):
    records: list[dict]
    problems: list[dict]  # {"id": ..., "reason": ...} for each malformed record, in file order
    excluded: int  # records left out by the benchmark's definition (e.g. MMVU's open-ended questions)


# --------------------------------------------------------------------------------------------------- protocols


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
        value = _normalize_number(answer)
        if value is None:
            return Score(0.0, None, False)
        if _has_decimal(answer) != _has_decimal(gt):
            return Score(0.0, answer, True)
        return Score(1.0 if round(value, 2) == round(_normalize_number(gt), 2) else 0.0, answer, True)
    if ptype == "regression":
        value = _normalize_number(answer)
        if value is None:
            return Score(0.0, None, False)
        return Score(mean_relative_accuracy(value, _normalize_number(gt)), answer, True)
    # OCR / free-form: eval_bench.py's reward_fn returns 0.0 for every other type.
    return Score(0.0, answer or None, bool(answer))


def _normalize_number(text: str) -> float | None:
    # eval_bench.py normalize_number: drop "," then float() (so " 5 ", "1e3" and "nan" read as Python reads them).
    try:
        return float(text.replace(",", ""))
    except (ValueError, AttributeError):
        return None


def _has_decimal(text: str) -> bool:
    return "." in text or "," in text


def _mc(answer: str, gt: str, letters: list[str]) -> Score:
    # eval_bench.py: output_ans.strip() == gt_ans.strip(); only a lone capital letter can ever match.
    if not re.fullmatch(r"[A-Z]", answer):
        return Score(0.0, None, False)
    return Score(1.0 if answer == gt else 0.0, answer, answer in letters)


# ------------------------------------------------------------------------------------------------ file reading


def _read_any(path: Path):
    """A JSON, JSONL or parquet file as Python objects (parquet and JSONL: a list of row dicts)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def _rows(path: Path, pattern: str = "*.parquet") -> list:
    """Rows of a file, or of every matching file under a folder (sorted, recursive)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob(pattern))
        if not files:
            raise FileNotFoundError(f"{path}: no {pattern} file in this folder")
        rows = []
        for f in files:
            rows.extend(_read_any(f))
        return rows
    data = _read_any(path)
    if not isinstance(data, list):
        raise BadRecord(f"{path}: expected a list of records, got {type(data).__name__}")
    return data


def _is_video_r1(rows) -> bool:
    return (isinstance(rows, list) and bool(rows) and isinstance(rows[0], dict)
            and "problem_id" in rows[0] and "solution" in rows[0])


def _rel(path: str) -> str:
    """Video-R1-eval paths start with "./" (eval_bench.py joins path[1:] onto its Evaluation folder)."""
    return path[2:] if path.startswith("./") else path.lstrip("/")


def _mc_record(pid, question, options: list[tuple[str, str]], answer: str, *, path: str, subtask: str,
               data_source: str, data_type: str = "video", **extra) -> dict:
    if not isinstance(question, str) or not question.strip():
        raise BadRecord("empty or missing question")
    if not options:
        raise BadRecord("no options")
    letters = [k for k, _ in options]
    if letters != list(LETTERS[:len(letters)]):
        raise BadRecord(f"option letters {''.join(letters)!r} are not A, B, C, ... in order")
    for k, text in options:
        if not isinstance(text, str) or not text.strip():
            raise BadRecord(f"option {k} is empty")
    answer = str(answer).strip() if answer is not None else ""
    if answer not in letters:
        raise BadRecord(f"answer {answer!r} is not one of the option letters {''.join(letters)}")
    return {
        "problem_id": str(pid),
        "problem": question,
        "data_type": data_type,
        "problem_type": "multiple choice",
        "options": [f"{k}. {text}" for k, text in options],
        "solution": f"<answer>{answer}</answer>",
        "path": path,
        "data_source": data_source,
        "subtask": str(subtask),
        **extra,
    }


def _lettered(options: list) -> list[tuple[str, str]]:
    """["A. x", "B. y"] or ["x", "y"] -> [("A", "x"), ("B", "y")] (as lmms-eval's parse_options)."""
    if not isinstance(options, (list, tuple)):
        raise BadRecord(f"options must be a list, got {type(options).__name__}")
    if len(options) > len(LETTERS):
        raise BadRecord(f"{len(options)} options, more than there are letters")
    options = [str(o) for o in options]
    if all(o.startswith(f"{LETTERS[i]}.") for i, o in enumerate(options)):
        return [(LETTERS[i], o[2:].strip()) for i, o in enumerate(options)]
    return [(LETTERS[i], o) for i, o in enumerate(options)]


def _convert(rows, convert: Callable, name: str, id_of: Callable, sub_of: Callable | None = None) -> Loaded:
    """Apply convert(row, index) to each row; a malformed row becomes a problem with its id (and its subtask when
    that can be read); duplicate ids too."""
    records, problems, excluded, seen = [], [], 0, set()
    for i, row in enumerate(rows):
        try:
            rid = id_of(row, i)
        except Exception:  # noqa: BLE001 - an id that cannot even be read
            rid = f"#{i}"
        try:
            rec = convert(row, i)
        except (BadRecord, KeyError, TypeError, ValueError, AttributeError, SyntaxError) as e:
            reason = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            try:
                sub = str(sub_of(row)) if sub_of else "unknown"
            except Exception:  # noqa: BLE001
                sub = "unknown"
            problems.append({"id": str(rid), "subtask": sub, "reason": f"malformed {name} record: {reason}"})
            continue
        if rec is None:
            excluded += 1
            continue
        if rec["problem_id"] in seen:
            problems.append({"id": rec["problem_id"], "subtask": rec["subtask"],
                             "reason": "duplicate id (the first record is kept)"})
            continue
        seen.add(rec["problem_id"])
        records.append(rec)
    return Loaded(records, problems, excluded)


def _row_get(row, key, i=None):
    if not isinstance(row, dict):
        raise BadRecord(f"not a JSON object but {type(row).__name__}")
    return row[key]


# ---------------------------------------------------------------------------------------------------- loaders

VIDEO_R1_REQUIRED = ("problem_id", "problem", "data_type", "problem_type", "options", "solution", "path")


def load_video_r1(records_path: Path, media_root: Path, *, name: str = "video-r1",
                  subtask: Callable[[dict], str] | None = None) -> Loaded:
    """Records already in Video-R1's format (the tiny world's splits, Video-R1-eval JSON files)."""
    rows = _rows(records_path, "*.json")

    def convert(row, i):
        if not isinstance(row, dict):
            raise BadRecord(f"not a JSON object but {type(row).__name__}")
        missing = [k for k in VIDEO_R1_REQUIRED if k not in row]
        if missing:
            raise BadRecord(f"missing field(s) {', '.join(missing)}")
        rec = dict(row, problem_id=str(row["problem_id"]), path=_rel(str(row["path"])))
        rec["subtask"] = str(subtask(rec) if subtask else row.get("subtask", "all"))
        rec.setdefault("data_source", name)
        return rec

    return _convert(rows, convert, name, lambda r, i: r.get("problem_id", f"#{i}"),
                    lambda r: subtask(r) if subtask else r.get("subtask", "all"))


def _tiny_subtask(record: dict) -> str:
    return str(record.get("data_source", "all")).split("/")[-1]


def load_tiny(records_path: Path, media_root: Path) -> Loaded:
    """The tiny world's eval_*.json: Video-R1 records, subtask = last part of data_source (as before)."""
    return load_video_r1(records_path, media_root, name="tiny", subtask=_tiny_subtask)


def load_video_holmes(records_path: Path, media_root: Path) -> Loaded:
    """TencentARC/Video-Holmes Benchmark/test_Video-Holmes.json; clips Benchmark/videos/<video ID>.mp4."""
    rows = _rows(records_path, "test_Video-Holmes.json")

    def convert(row, i):
        opts = _row_get(row, "Options")
        if not isinstance(opts, dict):
            raise BadRecord(f"'Options' must be an object {{letter: text}}, got {type(opts).__name__}")
        options = [(str(k), v) for k, v in opts.items()]
        qtype = row["Question Type"]
        return _mc_record(row["Question ID"], row["Question"], options, row["Answer"],
                          path=f"{row['video ID']}.mp4", subtask=qtype, data_source="Video-Holmes",
                          choices={str(k): v for k, v in opts.items()})

    return _convert(rows, convert, "Video-Holmes", lambda r, i: r.get("Question ID", f"#{i}"),
                    lambda r: r["Question Type"])


VIDEOMMMU_TRACKS = ("Perception", "Comprehension", "Adaptation")
# lmms-eval tasks/videommmu/utils.py: the released video zip is split by discipline.
VIDEOMMMU_DISCIPLINE = {
    **dict.fromkeys(["Art", "Art_Theory", "Design", "Music"], "Art"),
    **dict.fromkeys(["Biology", "Chemistry", "Geography", "Math", "Physics"], "Science"),
    **dict.fromkeys(["History", "Literature", "Sociology", "Psychology"], "Humanities"),
    **dict.fromkeys(["Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                     "Energy_and_Power", "Materials", "Mechanical_Engineering"], "Engineering"),
    **dict.fromkeys(["Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                     "Pharmacy", "Public_Health"], "Medicine"),
    **dict.fromkeys(["Accounting", "Economics", "Finance", "Manage", "Marketing"], "Business"),
}


def _videommmu_clip(media_root: Path, vid: str) -> str:
    flat = f"{vid}.mp4"
    subject = "_".join(vid.split("_")[1:-1])
    nested = f"{VIDEOMMMU_DISCIPLINE.get(subject, subject)}/{vid}.mp4"
    return nested if (Path(media_root) / nested).exists() and not (Path(media_root) / flat).exists() else flat


def _open_record(pid, question, answer, *, path, subtask, data_source, data_type="video", **extra) -> dict:
    """An open question: numerical if the answer is a number, else free-form (scored 0 by Video-R1's eval)."""
    if not isinstance(question, str) or not question.strip():
        raise BadRecord("empty or missing question")
    answer = str(answer).strip()
    if not answer:
        raise BadRecord("empty answer")
    return {"problem_id": str(pid), "problem": question, "data_type": data_type,
            "problem_type": "numerical" if parse_number(answer) is not None else "free-form", "options": [],
            "solution": f"<answer>{answer}</answer>", "path": path, "data_source": data_source,
            "subtask": str(subtask), **extra}


def load_videommmu(records_path: Path, media_root: Path) -> Loaded:
    """lmms-lab/VideoMMMU: one folder (parquet) or JSON file per track; or a Video-R1-eval JSON file.

    question_type "multiple-choice" / "perception" with options -> multiple choice; "open" -> numerical or
    free-form (see _open_record).  NOT confirmed: how the Adaptation track's question image is shown (it is not
    used here; the question text keeps its "<image 1>" placeholder).
    """
    records_path = Path(records_path)
    if records_path.is_file():
        rows = _read_any(records_path)
        if _is_video_r1(rows):
            return load_video_r1(records_path, media_root, name="VideoMMMU")
        raise BadRecord(f"{records_path}: not a Video-R1-eval file; give the folder with one entry per track")
    tracks = []
    for track in VIDEOMMMU_TRACKS:
        cands = [records_path / track, records_path / f"{track}.json", records_path / f"{track}.parquet"]
        found = next((c for c in cands if c.exists()), None)
        if found is None:
            raise FileNotFoundError(f"{records_path}: no {track} track (looked for {', '.join(c.name for c in cands)})")
        tracks.extend((track, row) for row in _rows(found))

    def convert(item, i):
        track, row = item
        vid = _row_get(row, "id")
        qtype = row.get("question_type", "multiple-choice")
        options = row.get("options") or []
        common = dict(path=_videommmu_clip(media_root, vid), subtask=track, data_source=f"VideoMMMU/{track}")
        if qtype == "open" or not len(options):
            return _open_record(f"{track}/{vid}", row["question"], row["answer"], **common)
        return _mc_record(f"{track}/{vid}", row["question"], _lettered(list(options)), row["answer"], **common)

    return _convert(tracks, convert, "VideoMMMU",
                    lambda t, i: f"{t[0]}/{t[1].get('id', f'#{i}')}" if isinstance(t[1], dict) else f"#{i}",
                    lambda t: t[0])


def load_mmvu(records_path: Path, media_root: Path) -> Loaded:
    """yale-nlp/MMVU validation.json, multiple-choice questions only ("MMVU (mc)", 625 of 1,000)."""
    rows = _rows(records_path, "validation.json")
    if _is_video_r1(rows):
        return load_video_r1(records_path, media_root, name="MMVU")

    def convert(row, i):
        if _row_get(row, "question_type") != "multiple-choice":
            return None
        choices = row["choices"]
        if not isinstance(choices, dict):
            raise BadRecord("'choices' must be an object {letter: text}")
        url = str(row["video"])
        path = url.split("/resolve/main/", 1)[1] if "/resolve/main/" in url else url
        return _mc_record(row["id"], row["question"], [(str(k), v) for k, v in choices.items()], row["answer"],
                          path=path, subtask=row["metadata"]["subject"], data_source="MMVU")

    return _convert(rows, convert, "MMVU", lambda r, i: r.get("id", f"#{i}"), lambda r: r["metadata"]["subject"])


def _split_question_options(question: str) -> tuple[str, list[tuple[str, str]]]:
    """"stem\\nA. x\\nB. y" -> ("stem", [("A", "x"), ("B", "y")]) (TempCompass multi-choice)."""
    lines = question.split("\n")
    first = next((i for i, line in enumerate(lines) if re.match(r"A\.\s", line)), None)
    if first is None:
        raise BadRecord("no options 'A. ...' in the question")
    options = []
    for line in lines[first:]:
        m = re.match(r"([A-Z])\.\s(.*)\Z", line)
        if not m:
            raise BadRecord(f"option line {line!r} is not 'X. text'")
        options.append((m.group(1), m.group(2)))
    return "\n".join(lines[:first]), options


def load_tempcompass(records_path: Path, media_root: Path) -> Loaded:
    """TempCompass multi-choice: the official questions/multi-choice.json or lmms-lab's flattened rows."""
    records_path = Path(records_path)
    data = _read_any(records_path) if records_path.is_file() else _rows(records_path)
    if _is_video_r1(data):
        return load_video_r1(records_path, media_root, name="TempCompass")
    if isinstance(data, dict):  # official: {video_id: {dim: [{question, answer}, ...]}}
        rows = [{"video_id": vid, "dim": dim, "question": q.get("question"), "answer": q.get("answer")}
                for vid, dims in data.items() for dim, qs in dims.items() for q in qs]
    else:
        rows = data
    counter: dict = {}
    ids = []
    for row in rows:
        key = (row.get("video_id"), row.get("dim")) if isinstance(row, dict) else None
        counter[key] = counter.get(key, -1) + 1
        ids.append(f"{key[0]}/{key[1]}/{counter[key]}" if key else None)

    def convert(row, i):
        stem, options = _split_question_options(_row_get(row, "question"))
        answer = str(row["answer"])
        m = re.match(r"([A-Z])\.", answer)
        if not m:
            raise BadRecord(f"answer {answer!r} is not 'X. text'")
        return _mc_record(ids[i], stem, options, m.group(1), path=f"{row['video_id']}.mp4", subtask=row["dim"],
                          data_source="TempCompass")

    return _convert(rows, convert, "TempCompass", lambda r, i: ids[i] or f"#{i}", lambda r: r["dim"])


def load_videomme(records_path: Path, media_root: Path) -> Loaded:
    """lmms-lab/Video-MME videomme/test-*.parquet (2,700 questions); clips data/<videoID>.mp4; no subtitles."""
    records_path = Path(records_path)
    rows = _read_any(records_path) if records_path.is_file() else _rows(records_path)
    if _is_video_r1(rows):
        return load_video_r1(records_path, media_root, name="VideoMME",
                             subtask=lambda r: r.get("subtask") or r.get("duration") or "all")

    def convert(row, i):
        vid = _row_get(row, "videoID")
        path = f"{vid}.mp4"
        for ext in (".mp4", ".MP4", ".mkv", ".webm"):
            if (Path(media_root) / f"{vid}{ext}").exists():
                path = f"{vid}{ext}"
                break
        return _mc_record(row["question_id"], row["question"], _lettered(list(row["options"])), row["answer"],
                          path=path, subtask=row["duration"], data_source="Video-MME")

    return _convert(rows, convert, "Video-MME", lambda r, i: r.get("question_id", f"#{i}"), lambda r: r["duration"])


def _image_cell(cell):
    """A parquet image cell ({"bytes", "path"}) -> bytes, or a path string."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path"):
            return cell["path"]
        raise BadRecord("image cell holds neither bytes nor a path")
    if isinstance(cell, (bytes, str)) and cell:
        return cell
    raise BadRecord(f"no image (got {type(cell).__name__})")


def load_mmmu(records_path: Path, media_root: Path) -> Loaded:
    """MMMU/MMMU validation parquet (per subject, or lmms-lab/MMMU merged): 900 questions, images embedded.

    Every image_k of a question is given, in order (Qwen2.5-VL takes several images); the question keeps its
    "<image k>" placeholders.  Open questions: numerical or free-form (see _open_record).
    """
    rows = _rows(records_path, "validation-*.parquet")

    def convert(row, i):
        rid = _row_get(row, "id")
        images = [_image_cell(row[f"image_{k}"]) for k in range(1, 8) if row.get(f"image_{k}") is not None]
        if not images:
            raise BadRecord("no image")
        subject = "_".join(str(rid).split("_")[1:-1]) or "all"
        common = dict(path=f"{rid}.png", subtask=subject, data_source="MMMU", data_type="image", images=images)
        if row.get("question_type") == "open":
            return _open_record(rid, row["question"], row["answer"], **common)
        options = row["options"]
        if isinstance(options, str):
            options = ast.literal_eval(options)
        return _mc_record(rid, row["question"], _lettered(list(options)), row["answer"], **common)

    return _convert(rows, convert, "MMMU", lambda r, i: r.get("id", f"#{i}"),
                    lambda r: "_".join(str(r["id"]).split("_")[1:-1]) or "unknown")


def load_ai2d(records_path: Path, media_root: Path) -> Loaded:
    """lmms-lab/ai2d test parquet (3,088): the answer is the index of the right option."""
    rows = _rows(records_path, "test-*.parquet")

    def convert(row, i):
        options = list(_row_get(row, "options"))
        idx = int(str(row["answer"]).strip())
        if not 0 <= idx < len(options):
            raise BadRecord(f"answer index {idx} outside the {len(options)} options")
        return _mc_record(f"ai2d_{i}", row["question"], _lettered(options), LETTERS[idx], path=f"ai2d_{i}.png",
                          subtask="all", data_source="AI2D", data_type="image", images=[_image_cell(row["image"])])

    return _convert(rows, convert, "AI2D", lambda r, i: f"ai2d_{i}", lambda r: "all")


def _mmstar_split(question: str) -> tuple[str, list[tuple[str, str]]]:
    """MMStar: "stem\\nOptions: A: x, B: y, C: z" -> ("stem", [("A", "x"), ...])."""
    at = question.rfind("Options:")
    if at < 0:
        raise BadRecord("no 'Options:' in the question")
    stem, tail = question[:at].rstrip(), question[at + len("Options:"):].strip()
    parts = re.split(r"(?:^|,\s*)([A-Z]):\s*", tail)
    if len(parts) < 3 or parts[0].strip():
        raise BadRecord(f"options {tail!r} are not 'A: x, B: y, ...'")
    return stem, [(parts[k], parts[k + 1].strip()) for k in range(1, len(parts) - 1, 2)]


def load_mmstar(records_path: Path, media_root: Path) -> Loaded:
    """Lin-Chen/MMStar mmstar.parquet (1,500; six categories)."""
    rows = _rows(records_path, "*.parquet")

    def convert(row, i):
        stem, options = _mmstar_split(_row_get(row, "question"))
        return _mc_record(row["index"], stem, options, row["answer"], path=f"mmstar_{row['index']}.png",
                          subtask=row["category"], data_source="MMStar", data_type="image",
                          images=[_image_cell(row["image"])])

    return _convert(rows, convert, "MMStar", lambda r, i: r.get("index", f"#{i}"), lambda r: r["category"])


def load_chartqa(records_path: Path, media_root: Path) -> Loaded:
    """lmms-lab/ChartQA test parquet (2,500 = human_test + augmented_test); relaxed accuracy."""
    rows = _rows(records_path, "test-*.parquet")

    def convert(row, i):
        answer = str(_row_get(row, "answer")).strip()
        if not answer:
            raise BadRecord("empty answer")
        question = row["question"]
        if not isinstance(question, str) or not question.strip():
            raise BadRecord("empty or missing question")
        return {"problem_id": f"chartqa_{i}", "problem": question, "data_type": "image",
                "problem_type": "numerical" if parse_number(answer) is not None else "free-form", "options": [],
                "solution": f"<answer>{answer}</answer>", "path": f"chartqa_{i}.png", "data_source": "ChartQA",
                "subtask": str(row["type"]), "images": [_image_cell(row["image"])]}

    return _convert(rows, convert, "ChartQA", lambda r, i: f"chartqa_{i}", lambda r: r["type"])


def load_tiny_image(records_path: Path, media_root: Path) -> Loaded:
    """The tiny world's appearance questions asked about ONE image: the middle frame of each clip (the shape of an
    appearance clip is static and visible throughout), embedded as PNG bytes; the tiny world's image benchmark
    (Table 3).  A clip that cannot be read makes its question a problem (id, reason), as any malformed record."""
    from PIL import Image

    from videoktr.data.video import VideoError, read_frames

    loaded = load_tiny(records_path, media_root)
    records, problems = [], list(loaded.problems)
    for r in loaded.records:
        try:  # every frame at the clip's own rate (far above it here), then the middle one
            frames = read_frames(Path(media_root) / r["path"], fps=1000.0, max_frames=10_000)
        except VideoError as e:
            problems.append({"id": r["problem_id"], "reason": f"clip {e}"})
            continue
        buf = io.BytesIO()
        Image.fromarray(frames[len(frames) // 2]).save(buf, format="PNG")
        # the question text stays as trained ("... in the video?"): only the input changes, clip -> one image
        records.append(dict(r, data_type="image", images=[buf.getvalue()]))
    return Loaded(records, problems, loaded.excluded)


# --------------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Benchmark:
    name: str
    modality: str  # "video" or "image"
    protocol: str  # default protocol (PROTOCOLS key)
    loader: Callable[[Path, Path], Loaded]
    subtask: str  # what the subtask breakdown is
    records: str | None = None  # default records path under config eval.data_dir (file or folder)
    media: str | None = None  # default media folder under eval.data_dir (None: images embedded in records)
    published: int | None = None  # questions in the published split
    tiny_split: str | None = None  # the tiny world's split (records from results/<run>/data/clean/<split>.json)
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("tiny_appearance", "video", "tiny", load_tiny, "data_source", tiny_split="eval_appearance",
                  source="videoktr.data.world"),
        Benchmark("tiny_temporal", "video", "tiny", load_tiny, "data_source", tiny_split="eval_temporal",
                  source="videoktr.data.world"),
        Benchmark("tiny_counting", "video", "tiny", load_tiny, "data_source", tiny_split="eval_counting",
                  source="videoktr.data.world"),
        # the appearance split again, one frame per question as an image (Table 3 in the tiny world)
        Benchmark("tiny_image", "image", "tiny", load_tiny_image, "data_source", tiny_split="eval_appearance",
                  source="videoktr.data.world (middle frame of each appearance clip)"),
        Benchmark("video_holmes", "video", "video_holmes", load_video_holmes, "Question Type",
                  "Video-Holmes/test_Video-Holmes.json", "Video-Holmes/videos", 1837,
                  source="TencentARC/Video-Holmes (GitHub evaluate.py; HF dataset)"),
        Benchmark("videommmu", "video", "video_r1", load_videommmu, "track", "VideoMMMU", "VideoMMMU/videos", 900,
                  source="lmms-lab/VideoMMMU"),
        Benchmark("mmvu", "video", "video_r1", load_mmvu, "metadata.subject", "MMVU/validation.json", "MMVU", 625,
                  source="yale-nlp/MMVU data/validation.json"),
        Benchmark("tempcompass", "video", "video_r1", load_tempcompass, "dim",
                  "TempCompass/questions/multi-choice.json", "TempCompass/videos", 1580,
                  source="llyx97/TempCompass questions/multi-choice.json; lmms-lab/TempCompass multi-choice"),
        Benchmark("videomme", "video", "video_r1", load_videomme, "duration", "Video-MME/videomme",
                  "Video-MME/data", 2700, source="lmms-lab/Video-MME"),
        Benchmark("mmmu", "image", "video_r1", load_mmmu, "subject", "MMMU", None, 900, source="MMMU/MMMU"),
        Benchmark("ai2d", "image", "video_r1", load_ai2d, "none", "ai2d/data", None, 3088, source="lmms-lab/ai2d"),
        Benchmark("mmstar", "image", "video_r1", load_mmstar, "category", "MMStar/mmstar.parquet", None, 1500,
                  source="Lin-Chen/MMStar"),
        Benchmark("chartqa", "image", "video_r1_relaxed", load_chartqa, "type", "ChartQA/data", None, 2500,
                  source="lmms-lab/ChartQA"),
    ]
}


def eval_paths(name: str, eval_cfg: dict, *, out: str, world: str) -> tuple[str, str]:
    """(records file or folder, media folder) of a benchmark for the workflow; record paths are relative to the
    media folder.  Tiny splits: <out>/data/clean/<split>.json and the world folder.  The others: the released
    files under config `eval.data_dir` in their published layout (Benchmark.records / .media), each overridable
    with `eval.files.<name>.records` / `.media` (relative to eval.data_dir, or absolute)."""
    import os

    b = get_benchmark(name)
    if b.tiny_split:
        return f"{out}/data/clean/{b.tiny_split}.json", world
    root = eval_cfg.get("data_dir", "data/benchmarks")
    given = (eval_cfg.get("files") or {}).get(name) or {}
    records = os.path.join(root, given.get("records", b.records))
    if given.get("media"):
        media = os.path.join(root, given["media"])
    else:
        media = os.path.join(root, b.media) if b.media else os.path.dirname(records)
    return records, media


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def load_benchmark(name: str, records_path: Path, media_root: Path) -> Loaded:
    """Read a benchmark's released file(s); malformed records come back as problems (id, reason), never raise.

    A file that cannot be read at all raises videoktr.data.records.BadDataError (the whole benchmark is unusable).
    """
    from videoktr.data.records import BadDataError

    bench = get_benchmark(name)
    try:
        return bench.loader(Path(records_path), Path(media_root))
    except (OSError, json.JSONDecodeError, BadRecord, ImportError) as e:
        raise BadDataError(f"{name}: cannot read {records_path} ({e})") from None
    except Exception as e:  # pyarrow errors and the like: still one line naming the file
        raise BadDataError(f"{name}: cannot read {records_path} ({type(e).__name__}: {e})") from None


# ------------------------------------------------------------------------------------------------------ media


class MediaError(Exception):
    """An image that cannot be read; the message names it."""


def load_images(record: dict, data_dir: Path) -> list[np.ndarray]:
    """The record's image(s) as uint8 RGB [H, W, 3] arrays (bytes decoded, paths relative to data_dir)."""
    from PIL import Image

    items = record.get("images") or [record["path"]]
    out = []
    for k, item in enumerate(items):
        try:
            if isinstance(item, (bytes, bytearray)):
                img = Image.open(io.BytesIO(item))
            else:
                img = Image.open(Path(data_dir) / str(item))
            out.append(np.array(img.convert("RGB")))
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds; the contract is one MediaError
            where = f"image {k + 1}" if isinstance(item, (bytes, bytearray)) else str(Path(data_dir) / str(item))
            raise MediaError(f"{where}: cannot read ({type(e).__name__}: {e})") from None
    return out
