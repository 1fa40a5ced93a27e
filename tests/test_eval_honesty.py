"""Numbers that stay right after a failure: error rows are retried (a bounded number of times), every summary is
scored on the question set of the current records, and says which set that was (and per-question scores)."""

import hashlib
import json
import shutil

import pytest

from conftest import VIDEO_CFG, records
from videoktr.eval.backends import TransformersBackend
from videoktr.eval.evaluate import evaluate, question_set_digest, read_predictions, read_skipped, summarize

EVAL = {"batch_size": 4, "max_new_tokens": 6, "temperature": 0.1, "top_p": 0.001}
N = 4  # questions per test: seconds on CPU


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return TransformersBackend(tiny_model_dir)


@pytest.fixture
def split(world, tmp_path):
    """N tiny_temporal records with their own copies of the clips (tests break and restore them)."""
    recs = records(world, "eval_temporal")[:N]
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    for r in recs:
        shutil.copy(world / r["path"], data / r["path"])
    return recs, data


def _break(data, recs):
    """Make the records' clips unreadable; return a function that restores them."""
    saved = {r["path"]: (data / r["path"]).read_bytes() for r in recs}
    for p in saved:
        (data / p).write_bytes(b"not an mp4")

    def restore():
        for p, b in saved.items():
            (data / p).write_bytes(b)
    return restore


def _summary(pred, ids=None, **kw):
    return summarize(pred, model="m", benchmark="tiny_temporal", frames=4, backend="transformers", ids=ids, **kw)


def _run(backend, recs, data, pred, **eval_cfg):
    return evaluate(backend, recs, data, pred, frames=4, video_cfg=VIDEO_CFG, eval_cfg={**EVAL, **eval_cfg},
                    benchmark="tiny_temporal")


def test_error_rows_are_retried_once_the_clips_are_back(backend, split, tmp_path):
    """The probe: every clip unreadable, evaluate, restore, evaluate again: the questions are asked again."""
    recs, data = split
    ids = [str(r["problem_id"]) for r in recs]
    pred = tmp_path / "p.jsonl"
    restore = _break(data, recs)
    _run(backend, recs, data, pred)
    first = _summary(pred, error_retries=2)
    assert first["errors"] == N and first["accuracy"] == 0.0 and first["retried"] == 0
    assert first["errors_to_retry"] == N and first["error_attempts"] == {i: 1 for i in ids}
    assert all(r["attempt"] == 1 for r in read_predictions(pred).values())
    restore()
    assert sorted(_run(backend, recs, data, pred)) == sorted(ids)
    rows = read_predictions(pred)
    assert all("output" in r and r["attempt"] == 2 for r in rows.values())
    assert len(pred.read_text().splitlines()) == N  # the superseded error rows are gone: one row per question
    again = _summary(pred, ids=ids, error_retries=2)
    assert again["errors"] == 0 and again["answered"] == N and again["retried"] == N
    assert again["errors_to_retry"] == 0 and again["error_ids"] == {}
    # the same numbers as an evaluation that never failed
    fresh = tmp_path / "fresh.jsonl"
    _run(backend, recs, data, fresh)
    clean = _summary(fresh, ids=ids)
    assert again["accuracy"] == clean["accuracy"] and again["scores"] == clean["scores"]
    assert clean["retried"] == 0


def test_retries_are_bounded_and_counted(backend, split, tmp_path):
    recs, data = split
    pred = tmp_path / "p.jsonl"
    _break(data, recs[:1])  # one clip stays broken
    for run in range(4):
        _run(backend, recs, data, pred, error_retries=1)
        bad = read_predictions(pred)[str(recs[0]["problem_id"])]
        assert "error" in bad and bad["attempt"] == min(run + 1, 2)  # asked twice in all, then left alone
    assert len(pred.read_text().splitlines()) == N
    s = _summary(pred, error_retries=1)
    assert s["errors"] == 1 and s["questions"] == N and s["errors_to_retry"] == 0
    assert s["error_attempts"] == {str(recs[0]["problem_id"]): 2} and s["retried"] == 1
    # accuracy keeps the benchmark's denominator: the error counts as wrong
    assert s["accuracy"] == pytest.approx(sum(s["scores"].values()) / N)
    assert s["scores"][str(recs[0]["problem_id"])] == 0

    # error_retries 0: never asked again
    pred0 = tmp_path / "p0.jsonl"
    _run(backend, recs, data, pred0, error_retries=0)
    lines = pred0.read_text().splitlines()
    _run(backend, recs, data, pred0, error_retries=0)
    assert pred0.read_text().splitlines() == lines
    assert _summary(pred0, error_retries=0)["errors_to_retry"] == 0


def test_a_generation_failure_is_retried_on_the_next_run(backend, split, tmp_path, monkeypatch):
    recs, data = split
    pred = tmp_path / "p.jsonl"
    real = backend.generate
    bad_prompt = {}

    def flaky(texts, media, **kw):
        if any(t == bad_prompt.get("text") for t in texts):
            raise RuntimeError("out of memory")
        return real(texts, media, **kw)

    monkeypatch.setattr(backend, "generate", flaky)
    from videoktr.eval.protocols import conversation, resolve_protocol
    from videoktr.eval.benchmarks import get_benchmark

    protocol = resolve_protocol(get_benchmark("tiny_temporal"), EVAL)
    bad_prompt["text"] = backend.processor.apply_chat_template(conversation(recs[1], protocol), tokenize=False,
                                                               add_generation_prompt=True)
    _run(backend, recs, data, pred)
    row = read_predictions(pred)[str(recs[1]["problem_id"])]
    assert "generation failed" in row["error"] and row["attempt"] == 1 and "prompt_hash" in row
    bad_prompt.clear()
    _run(backend, recs, data, pred)
    row = read_predictions(pred)[str(recs[1]["problem_id"])]
    assert "output" in row and row["attempt"] == 2


def test_summaries_are_scored_on_the_current_question_set(backend, split, tmp_path):
    """A record dropped from the split after evaluating: an old answer, an old error row and a fresh evaluation are
    all scored on the same questions, and say so."""
    recs, data = split
    ids = [str(r["problem_id"]) for r in recs]
    answered, errored, fresh = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    _run(backend, recs, data, answered)  # model A answered all N
    restore = _break(data, recs[:1])
    _run(backend, recs, data, errored, error_retries=0)  # model B got an error row for the first
    restore()
    # the first clip goes bad: prepare_split drops its record and lists it in the skipped file
    skipped_file = tmp_path / "eval_temporal.skipped.json"
    skipped_file.write_text(json.dumps([{"id": ids[0], "reason": "video cannot decode"}]))
    skipped = read_skipped(skipped_file)
    assert skipped == {ids[0]: "video cannot decode"}
    kept = recs[1:]
    summaries = {}
    for name, pred in [("a", answered), ("b", errored), ("c", fresh)]:
        qs = _run(backend, kept, data, pred, error_retries=0)
        summaries[name] = _summary(pred, ids=qs, skipped=skipped)
    for name, s in summaries.items():
        assert s["questions"] == N - 1 and set(s["scores"]) == set(ids[1:]), name
        assert s["question_set"] == question_set_digest(ids[1:]) == hashlib.sha256(
            "\n".join(sorted(ids[1:])).encode()).hexdigest()
        assert s["skipped_ids"] == {ids[0]: "video cannot decode"}
        assert ids[0] not in s["error_ids"] and s["errors"] == 0
        assert s["accuracy"] == pytest.approx(sum(s["scores"].values()) / (N - 1))
        assert sum(v["questions"] for v in s["subtasks"].values()) == N - 1
    assert summaries["a"]["dropped_rows"] == summaries["b"]["dropped_rows"] == 1
    assert summaries["c"]["dropped_rows"] == 0
    # the same answers make the same scores, whichever run they came from
    assert summaries["a"]["scores"] == summaries["c"]["scores"]
    # the dropped record's row stays in the JSONL (the record may come back): only the summary leaves it out
    assert ids[0] in read_predictions(answered)
    # without the question set, every row counts (the old behaviour) and the digest says which set that was
    whole = _summary(answered)
    assert whole["questions"] == N and whole["question_set"] == question_set_digest(ids)


def test_scores_match_the_rows_and_errors_score_zero(backend, split, tmp_path):
    recs, data = split
    pred = tmp_path / "p.jsonl"
    _break(data, recs[2:3])
    qs = _run(backend, recs, data, pred)
    rows = read_predictions(pred)
    s = _summary(pred, ids=qs)
    assert s["scores"] == {k: (0.0 if "error" in r else r["correct"]) for k, r in rows.items()}
    assert set(s["error_ids"]) == {str(recs[2]["problem_id"])}
    right = sum(r["correct"] for r in rows.values() if "error" not in r)
    assert s["accuracy"] == pytest.approx(right / N) and s["accuracy_answered"] == pytest.approx(right / (N - 1))
    assert s["dropped_rows"] == 0 and s["skipped_ids"] == {} and s["excluded"] is None


def test_a_malformed_record_fixed_is_asked_and_an_answer_whose_record_broke_becomes_an_error(backend, split,
                                                                                               tmp_path):
    recs, data = split
    pred = tmp_path / "p.jsonl"
    broken = {k: v for k, v in recs[0].items() if k != "solution"}
    _run(backend, [broken] + recs[1:], data, pred, error_retries=0)
    assert "malformed" in read_predictions(pred)[str(recs[0]["problem_id"])]["error"]
    _run(backend, recs, data, pred, error_retries=0)  # fixed: asked, whatever the retry budget
    assert "output" in read_predictions(pred)[str(recs[0]["problem_id"])]
    _run(backend, recs[:1] + [{k: v for k, v in recs[1].items() if k != "solution"}] + recs[2:], data, pred)
    rows = read_predictions(pred)
    assert "malformed" in rows[str(recs[1]["problem_id"])]["error"]
    assert len(pred.read_text().splitlines()) == N


def test_evaluate_command_writes_the_new_summary_keys(tiny_model_dir, split, tmp_path):
    """`videoktr evaluate` (rule evaluate): the split's skipped.json beside its records lands in the summary."""
    from videoktr.cli import main

    recs, data = split
    records_path = tmp_path / "clean" / "eval_temporal.json"
    records_path.parent.mkdir()
    records_path.write_text(json.dumps(recs[1:]))
    (tmp_path / "clean" / "eval_temporal.skipped.json").write_text(
        json.dumps([{"id": str(recs[0]["problem_id"]), "reason": "video cannot decode"}]))
    pred, job, out = tmp_path / "eval" / "p.jsonl", tmp_path / "eval" / "job.json", tmp_path / "eval" / "p.summary.json"
    pred.parent.mkdir()
    # an old row of the dropped record, made by this model under these settings, must not count
    cfg = {"seed": 0, "video": VIDEO_CFG, "eval": {**EVAL, "backend": "transformers", "error_retries": 2}}
    plan = [{"benchmark": "tiny_temporal", "records": str(records_path), "data_dir": str(data),
             "predictions": str(pred)}]
    args = ["evaluate", "--cfg", json.dumps(cfg), "--model", str(tiny_model_dir), "--name", "m", "--frames", "4",
            "--plan", json.dumps(plan), "--out", str(job)]
    with open(pred, "w") as f:
        f.write(json.dumps({"id": str(recs[0]["problem_id"]), "subtask": "x", "error": "video gone", "attempt": 1})
                + "\n")
    assert main(args) == 0
    # rule eval_summary: the benchmark's summary in a file of its own
    assert main(["eval-summary", "--job", str(job), "--benchmark", "tiny_temporal", "--out", str(out)]) == 0
    s = json.loads(out.read_text())
    assert json.loads(job.read_text()) == {"tiny_temporal": s}
    assert s["questions"] == N - 1 and s["dropped_rows"] == 1 and s["errors"] == 0
    assert s["skipped_ids"] == {str(recs[0]["problem_id"]): "video cannot decode"}
    assert s["question_set"] == question_set_digest(str(r["problem_id"]) for r in recs[1:])
    assert set(s["scores"]) == {str(r["problem_id"]) for r in recs[1:]}
    assert s["excluded"] == 0 and s["errors_to_retry"] == 0 and s["retried"] == 0


def test_an_evaluation_job_evaluates_every_benchmark_it_can_and_names_the_one_it_cannot(tiny_model_dir, split,
                                                                                         tmp_path, capsys):
    """One job, two benchmarks (rule evaluate): a records file that cannot be read stops neither the model load nor
    the other benchmark, whose predictions are kept; the job fails naming the bad one, and writes no job file."""
    from videoktr.cli import main

    recs, data = split
    good = tmp_path / "eval_temporal.json"
    good.write_text(json.dumps(recs))
    bad = tmp_path / "eval_counting.json"
    bad.write_text("{not json")
    plan = [{"benchmark": b, "records": str(r), "data_dir": str(data), "predictions": str(tmp_path / f"{b}.jsonl")}
            for b, r in (("tiny_counting", bad), ("tiny_temporal", good))]
    cfg = {"seed": 0, "video": VIDEO_CFG, "eval": {**EVAL, "backend": "transformers"}}
    job = tmp_path / "job.json"
    assert main(["evaluate", "--cfg", json.dumps(cfg), "--model", str(tiny_model_dir), "--name", "m", "--frames", "4",
                 "--plan", json.dumps(plan), "--out", str(job)]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 benchmarks not evaluated: tiny_counting:" in err and str(bad) in err, err
    assert len(read_predictions(tmp_path / "tiny_temporal.jsonl")) == N and not job.exists()
    # asked for a benchmark the job does not hold, eval-summary names both
    job.write_text(json.dumps({"tiny_temporal": {"accuracy": 0.5}}))
    with pytest.raises(SystemExit, match="holds no summary of tiny_counting"):
        main(["eval-summary", "--job", str(job), "--benchmark", "tiny_counting", "--out", str(tmp_path / "s.json")])


def test_a_question_out_of_retries_says_why_it_is_not_asked_again(backend, split, tmp_path, caplog):
    """Its clip restored after every try failed: the error stays, and one line names the question, the setting and
    what asks it again."""
    import logging

    recs, data = split
    pred = tmp_path / "p.jsonl"
    restore = _break(data, recs[:1])
    for _ in range(2):  # error_retries 1: asked twice, both fail
        _run(backend, recs, data, pred, error_retries=1)
    restore()
    caplog.set_level(logging.WARNING, logger="videoktr.eval.evaluate")
    _run(backend, recs, data, pred, error_retries=1)
    assert "error" in read_predictions(pred)[str(recs[0]["problem_id"])]
    line = next(r.getMessage() for r in caplog.records if "keep their error rows" in r.getMessage())
    assert f"failed all 2 tries (eval.error_retries: 1; {recs[0]['problem_id']})" in line
    assert "raise eval.error_retries" in line and str(pred) in line


def test_two_evaluation_jobs_started_together_write_one_row_per_question(tiny_model_dir, split, tmp_path):
    """Two jobs of one model and frame count whose benchmark lists differ (f4.tiny_temporal.json and
    f4.tiny_temporal+tiny_appearance.json) share tiny_temporal's predictions file. Started together while the file is
    held: each says it waits, naming the file and its holder; then one writes at a time, and the file holds one row
    per question (without the lock: two rows each)."""
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    from conftest import ENV
    from videoktr.jsonl import one_writer

    recs, data = split
    temporal = tmp_path / "eval_temporal.json"
    temporal.write_text(json.dumps(recs))
    shared = tmp_path / "eval/m/tiny_temporal/f4.jsonl"
    item = {"benchmark": "tiny_temporal", "records": str(temporal), "data_dir": str(data), "predictions": str(shared)}
    other = {**item, "benchmark": "tiny_appearance", "predictions": str(tmp_path / "eval/m/tiny_appearance/f4.jsonl")}
    cfg = {"seed": 0, "video": VIDEO_CFG, "eval": {**EVAL, "backend": "transformers"}}
    logs = [tmp_path / "job1.log", tmp_path / "job2.log"]
    outs = [tmp_path / "f4.tiny_temporal.json", tmp_path / "f4.tiny_temporal+tiny_appearance.json"]

    def start(plan, out, log):
        return subprocess.Popen([str(Path(sys.executable).parent / "videoktr"), "evaluate", "--cfg", json.dumps(cfg),
                                 "--model", str(tiny_model_dir), "--name", "m", "--frames", "4", "--plan",
                                 json.dumps(plan), "--out", str(out)], env=ENV, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)

    held, release = threading.Event(), threading.Event()

    def hold():
        with one_writer(shared, job="a job of this test"):
            held.set()
            release.wait(600)
    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(60)
    jobs = [start([item], outs[0], logs[0]), start([item, other], outs[1], logs[1])]
    waiting = f"{shared} is being written by a job of this test"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and all(j.poll() is None for j in jobs) and \
                not all(waiting in log.read_text() for log in logs):
            time.sleep(0.5)
        release.set()
        for j in jobs:
            j.wait(timeout=600)
    finally:
        release.set()
        holder.join()
        for j in jobs:
            if j.poll() is None:
                j.kill()
    texts = [log.read_text() for log in logs]
    assert all(j.returncode == 0 for j in jobs), texts
    lines = shared.read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(str(r["problem_id"]) for r in recs)
    assert all(waiting in t and "waiting for it to finish" in t for t in texts), texts
    first, second = (json.loads(p.read_text())["tiny_temporal"] for p in outs)
    assert first["scores"] == second["scores"] and first["questions"] == second["questions"] == N
