import json
from pathlib import Path

import pytest

from conftest import VIDEO_CFG, records
from videoktr.eval.evaluate import evaluate, read_predictions, summarize
from videoktr.eval.filtering import keep_in_band, run_filter
from videoktr.eval.backends import TransformersBackend

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
    # the missing clip counts as wrong in `accuracy` (what the tables read), not in `accuracy_answered`
    rows = read_predictions(pred)
    right = sum(r["correct"] for r in rows.values() if "error" not in r)
    assert s["accuracy"] == pytest.approx(right / len(recs)) and s["accuracy_answered"] == pytest.approx(
        right / (len(recs) - 1))
    assert 0 <= s["accuracy"] <= 1 and s["questions_per_second"] > 0
    # per-question scores (an error 0) and the question set they were scored on
    assert s["scores"] == {k: (0.0 if "error" in r else r["correct"]) for k, r in rows.items()}
    assert s["dropped_rows"] == 0 and len(s["question_set"]) == 64
    assert all(r["attempt"] == 1 for r in rows.values())


def test_sharded_filter_resumes_a_killed_shard_and_gathers_with_a_histogram(world, tiny_model_dir, tmp_path):
    import csv

    from videoktr.eval.filtering import accuracy_histogram, gather, run_shard, shard_of

    backend = TransformersBackend(tiny_model_dir)
    recs = records(world)[:5]
    sampling = dict(temperature=1.0, max_new_tokens=4, batch_size=8, video_cfg=VIDEO_CFG)
    shards = [shard_of(recs, i, 2) for i in range(2)]
    assert [len(s) for s in shards] == [3, 2] and not {r["problem_id"] for r in shards[0]} & {
        r["problem_id"] for r in shards[1]}
    # shard 0 was killed after its first question (and mid-write of the next row): the rerun scores the rest only
    partial = tmp_path / "0.partial.jsonl"
    run_filter(backend, shards[0][:1], world, partial, k=4, **sampling)
    with open(partial, "a") as f:
        f.write('{"problem_id": "torn')
    outs = [tmp_path / "0.jsonl", tmp_path / "1.jsonl"]
    run_shard(backend, shards[0], world, partial, outs[0], k=4, **sampling)
    run_shard(backend, shards[1], world, tmp_path / "1.partial.jsonl", outs[1], k=4, **sampling)
    assert len(partial.read_text().splitlines()) == 3  # one row per question: none redone, the torn one dropped
    accuracy = gather(outs, recs, tmp_path / "accuracy.jsonl")
    assert list(accuracy) == [r["problem_id"] for r in recs]
    table = accuracy_histogram(accuracy, 4, 0.25, 0.75, tmp_path / "h.png", tmp_path / "h.csv")
    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    assert [r["correct_of_k"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert sum(int(r["questions"]) for r in rows) == 5 == sum(r["questions"] for r in table)
    assert [r["kept"] for r in rows] == ["false", "true", "true", "true", "false"]
    for level in range(5):
        assert int(rows[level]["questions"]) == sum(round(a * 4) == level for a in accuracy.values())
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    # a shard missing from the gather is an error naming a question
    import pytest

    with pytest.raises(ValueError, match="scored in no shard"):
        gather(outs[:1], recs, tmp_path / "acc2.jsonl")


def test_filter_shard_samples_with_vllms_cpu_build_through_the_command(world, tiny_model_dir, tmp_path):
    """The filter on vLLM, as the rehearsal and the cluster run it: the `videoktr filter-shard` command (whose
    `__main__` guard vLLM's spawned engine core needs), vLLM's CPU build, every row recording the engine."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("vllm", reason="vLLM's CPU build is installed by `make install`")
    cfg = {"seed": 0, "video": VIDEO_CFG, "filter": {"k": 2, "temperature": 1.0, "max_new_tokens": 4, "batch_size": 4,
                                                     "max_questions": None, "shards": 4, "backend": "vllm",
                                                     "vllm": {"gpu_memory_utilization": 0.08, "max_model_len": 2048,
                                                              "enforce_eager": True, "dtype": "float32"}}}
    res = subprocess.run([str(Path(sys.executable).parent / "videoktr"), "filter-shard", "--cfg", json.dumps(cfg),
                          "--model", str(tiny_model_dir), "--records", str(world / "train.json"), "--data-dir",
                          str(world), "--shard", "0", "--partial", str(tmp_path / "p.jsonl"), "--out",
                          str(tmp_path / "o.jsonl")], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(len(r["samples"]) == 2 for r in rows)
    assert {r["engine"]["backend"] for r in rows} == {"vllm"} and {r["engine"]["device"] for r in rows} == {"cpu"}
    assert all(r["video_input"]["tokens_max"] > 0 for r in rows)


def test_predictions_and_filter_scores_of_another_model_are_redone(world, tiny_model_dir, tmp_path):
    """A retrained model in the same folder (another model_key) is never scored by its predecessor's rows."""
    backend = TransformersBackend(tiny_model_dir)
    recs = records(world, "eval_appearance")[:3]
    pred = tmp_path / "p.jsonl"
    evaluate(backend, recs, world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=EVAL, model_key="old")
    first = read_predictions(pred)
    evaluate(backend, recs, world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=EVAL, model_key="old")
    assert read_predictions(pred) == first  # same model and settings: resumed, nothing asked again
    evaluate(backend, recs, world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=EVAL, model_key="new")
    again = read_predictions(pred)
    assert sorted(again) == sorted(first) and len(pred.read_text().splitlines()) == len(recs)  # one row each
    assert all(again[k]["context"] != first[k]["context"] for k in first)
    # other sampling settings count too
    evaluate(backend, recs, world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=dict(EVAL, max_new_tokens=5),
             model_key="new")
    assert all(read_predictions(pred)[k]["context"] != again[k]["context"] for k in first)
    # an error row of another context is retried: the clip is back for the new model
    gone = dict(recs[0], path="videos/gone.mp4")
    evaluate(backend, [gone], world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=EVAL, model_key="new")
    assert "error" in read_predictions(pred)[str(gone["problem_id"])]
    evaluate(backend, [recs[0]], world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=EVAL, model_key="newer")
    assert "output" in read_predictions(pred)[str(gone["problem_id"])]
    # pixel bounds count as settings too
    before = read_predictions(pred)[str(gone["problem_id"])]["context"]
    evaluate(backend, [recs[0]], world, pred, frames=8, video_cfg=VIDEO_CFG, eval_cfg=dict(EVAL, max_pixels=3136),
             model_key="newer")
    assert read_predictions(pred)[str(gone["problem_id"])]["context"] != before

    scores = tmp_path / "acc.jsonl"
    sampling = dict(k=2, temperature=1.0, max_new_tokens=4, batch_size=8, video_cfg=VIDEO_CFG)
    train = records(world)[:2]
    run_filter(backend, train, world, scores, model_key="old", **sampling)
    old = [json.loads(line) for line in scores.read_text().splitlines()]
    run_filter(backend, train, world, scores, model_key="old", **sampling)
    assert [json.loads(line) for line in scores.read_text().splitlines()] == old
    run_filter(backend, train, world, scores, model_key="new", **sampling)
    new = [json.loads(line) for line in scores.read_text().splitlines()]
    assert [r["problem_id"] for r in new] == [r["problem_id"] for r in old]
    assert {r["context"] for r in new}.isdisjoint({r["context"] for r in old})
    # a record changed under the same id (a dataset at a new revision) is sampled again, the other one is not
    changed = [dict(train[0], problem=train[0]["problem"] + " (revised)"), train[1]]
    run_filter(backend, changed, world, scores, model_key="new", **sampling)
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert [r["problem_id"] for r in rows] == [r["problem_id"] for r in train] + [train[0]["problem_id"]]


def test_model_fingerprint_follows_the_files_not_the_folder(tiny_model_dir, tmp_path):
    import os
    import shutil

    from videoktr.provenance import model_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    linked = tmp_path / "linked"
    linked.mkdir()
    for f in Path(tiny_model_dir).iterdir():  # as the hub rule links a download file by file
        (linked / f.name).symlink_to(f)
    assert model_fingerprint(tiny_model_dir) == model_fingerprint(copy) == model_fingerprint(linked)
    # what a workflow engine or a download tool adds to a model folder after its job is no part of the model: every
    # directory output the DAG reuses (models/<sft>, models/<run>, a fetched model) keeps its identity
    (copy / ".snakemake_timestamp").write_text("")
    (copy / ".cache/huggingface").mkdir(parents=True)
    (copy / ".cache/huggingface/x.metadata").write_text("x")
    assert model_fingerprint(copy) == model_fingerprint(tiny_model_dir)
    config = copy / "config.json"
    config.write_text(config.read_text() + " ")
    assert model_fingerprint(copy) != model_fingerprint(tiny_model_dir)
    shutil.rmtree(copy)
    shutil.copytree(tiny_model_dir, copy)
    weights = next(copy.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert model_fingerprint(copy) != model_fingerprint(tiny_model_dir)
    with pytest.raises(FileNotFoundError, match="no model files"):
        model_fingerprint(tmp_path / "empty")
