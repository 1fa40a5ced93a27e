"""`videoktr ask`: one question about one video to one model, answered with its reasoning and the video tokens used.

The prompt is the evaluation's (Video-R1's eval template, `videoktr.data.prompts`), the decoding the evaluation's
transformers backend (`videoktr.eval.backends.TransformersBackend`), the answer parsed by Video-R1's rule
(`videoktr.eval.answers.extract_answer`): what `ask` says is what the benchmarks would score.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from videoktr.config import schema_defaults

THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def ask(model_dir: Path, video: Path, question: str, *, options: list[str] | None = None,
        problem_type: str | None = None, frames: int = 16, fps: float = 2.0, max_new_tokens: int | None = None,
        temperature: float | None = None, top_p: float | None = None, seed: int = 0,
        min_pixels: int | None = None, max_pixels: int | None = None) -> dict:
    """{answer, reasoning, output, video_tokens, frames, prompt}: the model's reply to `question` about `video`.

    `options` ("A. red", ...) make it a multiple-choice question; `problem_type` is otherwise free-form (or numerical,
    OCR, regression). Sampling defaults are the evaluation's (config schema `eval`: temperature 0.1, top_p 0.001).
    Raises SystemExit with one line naming the file when the model or the video cannot be read."""
    from videoktr.data.prompts import build_question
    from videoktr.data.video import VideoError, read_frames
    from videoktr.eval.answers import extract_answer
    from videoktr.eval.backends import TransformersBackend

    model_dir, video = Path(model_dir), Path(video)
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"videoktr ask: --model {model_dir}: not a model folder (no config.json)")
    if not video.is_file():
        raise SystemExit(f"videoktr ask: --video {video}: no such file")
    kind = problem_type or ("multiple choice" if options else "free-form")
    record = {"problem_id": "ask", "problem": question, "problem_type": kind, "options": list(options or [])}
    try:
        text = build_question(record, stage="eval")
    except ValueError as err:
        raise SystemExit(f"videoktr ask: {str(err).replace('record ' + repr('ask') + ': ', '')}") from None
    try:
        clip = read_frames(video, fps=fps, max_frames=frames)
    except VideoError as err:
        raise SystemExit(f"videoktr ask: --video {err}") from None
    try:
        backend = TransformersBackend(model_dir, seed=seed, min_pixels=min_pixels, max_pixels=max_pixels)
    except (OSError, ValueError) as err:
        raise SystemExit(f"videoktr ask: --model {model_dir}: cannot load it ({str(err).splitlines()[0]})") from None
    prompt = backend.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}],
        tokenize=False, add_generation_prompt=True)
    e = schema_defaults("eval")
    output = backend.generate([prompt], [clip], fps=fps, max_new_tokens=max_new_tokens or e["max_new_tokens"],
                              temperature=e["temperature"] if temperature is None else temperature,
                              top_p=e["top_p"] if top_p is None else top_p)[0]
    think = THINK.search(output)
    stats = backend.last_video_stats or {}
    return {"answer": extract_answer(output), "reasoning": think.group(1).strip() if think else None,
            "output": output, "video_tokens": stats.get("tokens_max"), "frames": len(clip),
            "pixels_per_frame": stats.get("pixels_per_frame_max"), "problem_type": kind, "prompt": text}


def add_ask_parser(sub) -> argparse.ArgumentParser:
    text = "ask a model one question about one video: its answer, its reasoning and the video tokens it used"
    s = sub.add_parser("ask", help=text, description=text[0].upper() + text[1:] + ". " + __doc__.split("\n\n")[1])
    s.add_argument("--model", required=True, help="model folder (a Qwen2.5-VL checkpoint, e.g. results/tiny/models/ktr)")
    s.add_argument("--video", required=True, help="the video file (MP4 or anything PyAV/decord reads)")
    s.add_argument("--question", required=True, help="the question, in words")
    s.add_argument("--options", nargs="+", default=None, metavar="OPTION",
                   help='answer options, e.g. "A. red" "B. blue": makes it a multiple-choice question')
    s.add_argument("--problem-type", default=None,
                   choices=("multiple choice", "numerical", "OCR", "free-form", "regression"),
                   help="Video-R1's problem type (default: multiple choice with --options, else free-form)")
    s.add_argument("--frames", type=int, default=16, help="at most this many frames, sampled at --fps (default 16)")
    s.add_argument("--fps", type=float, default=2.0, help="frame sampling rate (default 2, the paper's; the tiny "
                                                          "world's clips: 8)")
    s.add_argument("--max-new-tokens", type=int, default=None, help="length limit of the reply (default: the "
                                                                    "evaluation's, 1024)")
    s.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the "
                                                                   "evaluation's, 0.1)")
    s.add_argument("--top-p", type=float, default=None, help="nucleus sampling (default: the evaluation's, 0.001)")
    s.add_argument("--min-pixels", type=int, default=None, help="per-frame pixel bounds (default: the model's "
                                                                "processor)")
    s.add_argument("--max-pixels", type=int, default=None, help="per-frame pixel bounds (default: the model's "
                                                                "processor)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    s.add_argument("--json", action="store_true", help="print the whole reply as JSON (answer, reasoning, output, "
                                                       "video_tokens, frames, prompt)")
    s.set_defaults(fn=cmd_ask)
    return s


def cmd_ask(a, cfg) -> None:
    reply = ask(a.model, a.video, a.question, options=a.options, problem_type=a.problem_type, frames=a.frames,
                fps=a.fps, max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p, seed=a.seed,
                min_pixels=a.min_pixels, max_pixels=a.max_pixels)
    if a.json:
        print(json.dumps(reply, indent=1))
        return
    print(f"answer:    {reply['answer'] if reply['answer'] is not None else '(no <answer> tag in the reply)'}")
    print(f"reasoning: {reply['reasoning'] if reply['reasoning'] is not None else '(no <think> tag in the reply)'}")
    print(f"video:     {reply['frames']} frames, {reply['video_tokens']} video tokens "
          f"({reply['pixels_per_frame']} pixels per frame)")
    if reply["answer"] is None:
        print(f"output:    {reply['output']}", file=sys.stderr)
