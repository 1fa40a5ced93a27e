import json

from conftest import VIDEO_CFG, records
from videoktr.evaluation import evaluate, read_predictions, summarize
from videoktr.filtering import keep_in_band, run_filter
from videoktr.generation import TransformersBackend

EVAL = {"batch_size": 4, "max_new_tokens": 6, "temperature": 0.1, "top_p": 0.001}


def test_filter_keeps_exactly_the_questions_in_band():
    acc = {1: 0.0, 2: 0.125, 3: 0.2, 4: 0.5, 5: 0.8, 6: 0.875, 7: 1.0}
    assert keep_in_band(acc, 0.2, 0.8) == {3, 4, 5}
    assert keep_in_band(acc, 0.0, 1.0) == set(acc)
    assert keep_in_band(acc, 0.5, 0.5) == {4}


def test_filter_scores_k_samples_per_question_and_resumes(world, tiny_model_dir, tmp_path):
    backend = TransformersBackend(tiny_model_dir)
    recs = records(world)[:5]
    scores = tmp_path / "acc.jsonl"
    first = run_filter(backend, recs[:2], world, scores, k=4, temperature=1.0, max_new_tokens=4, batch_size=8,
                       video_cfg=VIDEO_CFG)
    assert set(first) == {r["problem_id"] for r in recs[:2]}
    both = run_filter(backend, recs, world, scores, k=4, temperature=1.0, max_new_tokens=4, batch_size=8,
                      video_cfg=VIDEO_CFG)
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert [r["problem_id"] for r in rows] == [r["problem_id"] for r in recs]  # each once, none redone
    assert all(len(r["samples"]) == 4 and r["accuracy"] in {0, .25, .5, .75, 1} for r in rows)
    assert both == {r["problem_id"]: r["accuracy"] for r in rows}


def test_killed_evaluation_resumes_without_losing_or_duplicating(world, tiny_model_dir, tmp_path):
    backend = TransformersBackend(tiny_model_dir)
    recs = records(world, "eval_appearance")
    pred = tmp_path / "p.jsonl"
    evaluate(backend, recs[:3], world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=EVAL)
    with open(pred, "a") as f:
        f.write('{"id": "torn')  # a write cut by the kill
    missing = dict(recs[4], path="videos/gone.mp4")
    evaluate(backend, recs[:4] + [missing] + recs[5:], world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=EVAL)
    rows = read_predictions(pred)
    assert sorted(rows) == sorted(str(r["problem_id"]) for r in recs)
    assert "gone.mp4" in rows[str(missing["problem_id"])]["error"]
    s = summarize(pred, model="m", benchmark="b", frames=8, backend="transformers")
    assert s["questions"] == len(recs) and s["errors"] == 1 and s["answered"] == len(recs) - 1
    assert 0 <= s["accuracy"] <= 1 and s["questions_per_second"] > 0
