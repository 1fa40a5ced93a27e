"""Video-KTR on your own data, in your own TRL script: `KTRTrainer` with TRL's `GRPOConfig`.

Your data: a JSONL file, one question per line, {"video": "clips/a.mp4", "question": "...", "answer": "B"}, with
the clip paths relative to --data-dir (and optionally "options": ["A. ...", "B. ..."]). Your reward: any TRL reward
function; here, 1.0 when the reply's <answer> is the expected one. The model: any Qwen2.5-VL folder.

    python examples/ktr_own_dataset.py --model Qwen2.5-VL-7B-Instruct-dir --data my.jsonl --data-dir my_clips \\
        --out my_ktr_model

docs/library.md explains each part. tests/test_library_example.py runs this script on the tiny model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from trl import GRPOConfig

from videoktr.eval.answers import extract_answer
from videoktr.rl.ktr import KTRSettings, KTRTrainer


def load_rows(path: Path) -> Dataset:
    """Your JSONL as TRL conversational rows. KTRTrainer needs `prompt` (one {"type": "video"} placeholder, where
    the clip goes) and `path` (the clip, relative to data_dir); every other column reaches the reward functions."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        text = q["question"] + "".join(f"\n{o}" for o in q.get("options", []))
        text += "\nThink between <think> </think>, then give the answer between <answer> </answer>."
        rows.append({"prompt": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}],
                     "path": q["video"], "answer": str(q["answer"])})
    return Dataset.from_list(rows)


def answer_reward(prompts, completions, answer, **kwargs) -> list[float]:
    """Your reward: 1 when the <answer> tag holds the expected answer (TRL passes the dataset's columns by name)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float((extract_answer(t) or "").strip().lower() == a.strip().lower()) for t, a in zip(texts, answer)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a Qwen2.5-VL model folder")
    p.add_argument("--data", required=True, help="JSONL: video, question, answer (options optional)")
    p.add_argument("--data-dir", required=True, help="folder the videos' paths are relative to")
    p.add_argument("--out", required=True, help="output folder: the trained model, and checkpoints under it")
    p.add_argument("--max-steps", type=int, default=100, help="optimizer steps")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (the paper: 16 in training)")
    p.add_argument("--fps", type=float, default=2.0, help="frame sampling rate (the paper: 2)")
    p.add_argument("--max-pixels", type=int, default=128 * 28 * 28, help="pixels per frame (the paper: 128x28x28)")
    p.add_argument("--max-completion-length", type=int, default=768, help="tokens per reply (the paper: 768)")
    a = p.parse_args(argv)

    processor = AutoProcessor.from_pretrained(a.model)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(a.model, dtype=torch.float32)
    c = model.config
    cuda = torch.cuda.is_available()
    args = GRPOConfig(
        output_dir=str(Path(a.out) / "checkpoints"),
        learning_rate=2e-6 if cuda else 1e-3,  # the paper's at 7B; a tiny model on CPU moves only at a larger one
        beta=0.04, num_generations=2, per_device_train_batch_size=2, max_steps=a.max_steps,
        max_completion_length=a.max_completion_length, temperature=1.0, logging_steps=1, save_steps=a.max_steps,
        # a sampled vision token (<|video_pad|>, ...) would break the next forward: never sample one
        generation_kwargs={"suppress_tokens": [c.image_token_id, c.video_token_id, c.vision_start_token_id,
                                               c.vision_end_token_id]},
        remove_unused_columns=False,  # KTRTrainer reads `path`; the rewards read your columns
        use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(), report_to=[],
    )
    trainer = KTRTrainer(
        model=model, processing_class=processor, args=args, train_dataset=load_rows(a.data),
        reward_funcs=[answer_reward],
        data_dir=a.data_dir,  # where the rows' `path`s are
        video_cfg={"fps": a.fps, "train_frames": a.frames, "min_pixels": 3136, "max_pixels": a.max_pixels},
        ktr=KTRSettings(ratio=0.2, signals=("E", "V", "T")),  # the paper's: top 20% per signal, united
    )
    trainer.train()
    trainer.save_model(a.out)
    processor.save_pretrained(a.out)
    shares = [h["ktr/union_share"] for h in trainer.state.log_history if "ktr/union_share" in h]
    print(json.dumps({"steps": trainer.state.global_step, "key_token_share": shares, "out": a.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
