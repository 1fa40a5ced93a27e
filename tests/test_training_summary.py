"""analysis/training.json: reward quarters with their interval, and where two runs' rollouts part."""

import pytest

from videoktr.report.training import first_difference, reward_quarters, training_summary


def history(rewards):
    return [{"rewards/accuracy/mean": r, "step": i + 1} for i, r in enumerate(rewards)] + [{"train_loss": 0.1}]


def test_the_quarters_and_the_interval_of_their_difference():
    q = reward_quarters([0.0, 0.25, 0.5, 0.5, 0.5, 0.5, 1.0, 0.75])
    assert q["steps"] == 8 and q["first_quarter"] == 0.125 and q["last_quarter"] == 0.875
    assert q["rise"] == pytest.approx(0.75) and q["rise_ci"][0] <= 0.75 <= q["rise_ci"][1]
    assert q["rise_ci"][0] > 0  # every resample rises
    flat = reward_quarters([0.5, 0.25, 0.5, 0.25, 0.5, 0.25, 0.25, 0.5])
    assert flat["rise_ci"][0] < 0 < flat["rise_ci"][1]
    assert reward_quarters([0.5, 0.5])["rise"] is None  # fewer than 4 steps: no quarter


def test_first_difference():
    assert first_difference(["a", "b", "c"], ["a", "b", "c"]) is None
    assert first_difference(["a", "b", "c"], ["a", "x", "c"]) == 2


def test_each_run_is_compared_with_the_grpo_run_of_its_own_model_and_resumed_runs_are_not():
    m = {
        "grpo": {"method": "grpo", "rollouts": ["a", "b", "c", "d"], "log_history": history([0, 0, 1, 1])},
        "ktr": {"method": "ktr", "rollouts": ["a", "b", "x", "y"], "log_history": history([0, 0, 0, 1])},
        "twgrpo": {"method": "twgrpo", "rollouts": ["a", "b", "c", "d"], "log_history": history([0, 1, 0, 1])},
        "grpo_small": {"method": "grpo", "rollouts": ["s", "t", "u", "v"], "log_history": history([0, 0, 0, 0])},
        "ktr_small": {"method": "ktr", "rollouts": ["s", "q", "r", "w"], "log_history": history([1, 1, 1, 1])},
        "ktr_resumed": {"method": "ktr", "rollouts": ["c", "d"], "resumed_from": ["checkpoint-2"],
                        "log_history": history([0, 1, 1, 1])},
    }
    start = {"grpo": "sft", "ktr": "sft", "twgrpo": "sft", "grpo_small": "small", "ktr_small": "small",
             "ktr_resumed": "sft"}
    runs = training_summary(m, start)["runs"]
    assert runs["ktr"]["compared_with"] == "grpo" and runs["ktr"]["rollouts_differ_from_batch"] == 3
    assert runs["twgrpo"]["rollouts_differ_from_batch"] is None and runs["twgrpo"]["batches"] == 4
    assert runs["ktr_small"]["compared_with"] == "grpo_small" and runs["ktr_small"]["rollouts_differ_from_batch"] == 2
    assert "compared_with" not in runs["grpo"] and "compared_with" not in runs["ktr_resumed"]
    assert runs["ktr"]["rise"] == 1.0 and runs["grpo_small"]["rise"] == 0.0
    # every run that is not compared says why, in the file
    assert "last segment only" in runs["ktr_resumed"]["rollouts_not_compared"]
    assert "reference" in runs["grpo"]["rollouts_not_compared"]
    assert all(("compared_with" in r) != ("rollouts_not_compared" in r) for r in runs.values())


def test_a_resumed_run_counted_over_every_segment_is_compared_and_a_gap_is_named(caplog):
    """metrics.json of a resumed run now holds every segment's digests (counted_from_step 0): it is compared like any
    other; digests that begin after a step, a run without digests, or no reference run are each named."""
    m = {
        "grpo": {"method": "grpo", "rollouts": ["a", "b", "c", "d"], "resumed_from": ["checkpoint-2"],
                 "counted_from_step": 0},
        "ktr": {"method": "ktr", "rollouts": ["a", "b", "x", "y"], "resumed_from": ["checkpoint-1"],
                "counted_from_step": 0},
        "tgrpo": {"method": "tgrpo", "rollouts": ["c", "d"], "resumed_from": ["checkpoint-2"],
                  "counted_from_step": 2},
        "twgrpo": {"method": "twgrpo"},
        "ktr_small": {"method": "ktr", "rollouts": ["s", "t"]},
    }
    start = {"grpo": "sft", "ktr": "sft", "tgrpo": "sft", "twgrpo": "sft", "ktr_small": "small"}
    runs = training_summary(m, start)["runs"]
    assert runs["ktr"]["compared_with"] == "grpo" and runs["ktr"]["rollouts_differ_from_batch"] == 3
    assert runs["tgrpo"]["rollouts_not_compared"] == \
        "tgrpo's digests begin after step 2 (resumed from a checkpoint saved without them)"
    assert runs["twgrpo"]["rollouts_not_compared"] == "twgrpo recorded no rollout digests"
    assert runs["ktr_small"]["rollouts_not_compared"] == "no grpo run starts from 'small' as ktr_small does"
    assert caplog.text.count("not compared") == 3


def test_the_command_reads_each_runs_training_log_and_train_keeps_one_metrics_path(tmp_path):
    import json

    from videoktr.cli import main, parser

    paths = []
    for run, method, digests in (("grpo", "grpo", ["a", "b"]), ("ktr", "ktr", ["a", "c"])):
        p = tmp_path / run / "metrics.json"
        p.parent.mkdir()
        p.write_text(json.dumps({"run": run, "method": method, "rollouts": digests,
                                 "log_history": history([0.25, 0.5, 0.5, 0.75])}))
        paths.append(str(p))
    out = tmp_path / "training.json"
    cfg = json.dumps({"start": {"grpo": "sft", "ktr": "sft"}})
    assert main(["training-summary", "--cfg", cfg, "--run-metrics", *paths, "--out", str(out)]) in (0, None)
    runs = json.loads(out.read_text())["runs"]
    assert runs["ktr"]["rollouts_differ_from_batch"] == 2 and runs["grpo"]["rise"] == 0.5
    args = parser().parse_args(["train", *[x for k in ("name", "model", "records", "data-dir", "work-dir", "out",
                                                       "metrics") for x in (f"--{k}", "x")]])
    assert args.metrics == "x"  # one path, not a list


def test_the_reward_per_question_source_is_summarised_over_the_steps_that_asked_it():
    """A run whose counting reward rises while an unseeable source only adds noise: the overall quarters fall, the
    counting source's rise, and a source asked in too few steps has no quarters."""
    key = "rewards/accuracy_by_source/"
    counting = [0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    shape = [0.5, 0.5, 0.25, None, 0.0, 0.25, 0.0, 0.0]
    log = []
    for i, (c, s) in enumerate(zip(counting, shape)):
        step = {"rewards/accuracy/mean": 0.4 - 0.02 * i, f"{key}counting": c}
        if s is not None:  # no shape question in step 4
            step[f"{key}shape"] = s
        if i == 0:  # a source asked in one step only
            step[f"{key}rare"] = 1.0
        log.append(step)
    summary = training_summary({"grpo": {"method": "grpo", "log_history": log}}, {"grpo": "sft"})
    row = summary["runs"]["grpo"]
    assert row["rise"] < 0
    assert row["by_source"]["counting"]["rise"] == pytest.approx(0.625) and row["by_source"]["counting"]["steps"] == 8
    assert row["by_source"]["shape"]["steps"] == 7 and row["by_source"]["shape"]["rise"] < 0
    assert row["by_source"]["rare"]["rise"] is None
    assert summary["mean_rise_by_source"]["counting"] == pytest.approx(0.625)
