"""KTR as a library: examples/ktr_own_dataset.py (docs/library.md) trains a user's own JSONL of questions with
KTRTrainer and TRL's GRPOConfig; here on the tiny model and clips of the tiny world, as a user would run it."""

import json
import subprocess
import sys

from conftest import ENV, ROOT, records


def test_the_library_example_trains_a_users_own_dataset_with_ktr(world, tiny_model_dir, tmp_path):
    from videoktr.eval.answers import parse_solution

    data = tmp_path / "my.jsonl"
    rows = [{"video": r["path"], "question": r["problem"], "options": r["options"],
             "answer": parse_solution(r["solution"])} for r in records(world)[:4] if r["problem_type"] ==
            "multiple choice"]
    assert len(rows) >= 2
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "my_ktr_model"
    done = subprocess.run([sys.executable, str(ROOT / "examples/ktr_own_dataset.py"), "--model", str(tiny_model_dir),
                           "--data", str(data), "--data-dir", str(world), "--out", str(out), "--max-steps", "2",
                           "--frames", "4", "--fps", "8", "--max-pixels", "3136", "--max-completion-length", "8"],
                          env=ENV, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # two KTR steps, each with a key-token mask: a share of the completion tokens above 0, at most all of them
    assert result["steps"] == 2 and len(result["key_token_share"]) == 2
    assert all(0 < s <= 1 for s in result["key_token_share"])
    from transformers import Qwen2_5_VLForConditionalGeneration

    assert Qwen2_5_VLForConditionalGeneration.from_pretrained(out) is not None  # a model folder, from_pretrained works
