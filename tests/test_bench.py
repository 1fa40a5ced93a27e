"""The attribution-cost benchmark runs end to end and writes its report and figure (no timing assertions)."""

import json
import math

from conftest import VIDEO_CFG, records
from videoktr.costbench.harness import run_benchmark
from videoktr.costbench.report import PAPER, TARGETS
from videoktr.costbench.timing import Lockstep, rng_state

# A small batch (one prompt, two rollouts); the rest is the schema's `train` defaults, which run_benchmark fills in.
TRAIN = {"num_generations": 2, "per_device_batch_size": 2}


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_benchmark_writes_ratios_memory_and_figure(world, tiny_model_dir, tmp_path):
    out = tmp_path / "bench" / "attribution.json"
    report = run_benchmark(tiny_model_dir, records(world)[:4], world, out, video_cfg=VIDEO_CFG, steps=2,
                           frames_list=[16], completion_lengths=[6], seed=0, train=TRAIN)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["targets"] == TARGETS and report["paper"]["time_ratio"] == PAPER["time_ratio"]
    assert report["model"]["hidden_size"] == 32
    (row,) = report["configurations"]
    assert (row["frames"], row["completion_length"]) == (16, 6)
    assert row["completion_tokens"] == [6]  # completions are forced to the asked length
    assert row["batches_identical"]  # lr 0: both trainers sampled the same tokens
    for key in ("time_ratio", "time_ratio_median", "time_ratio_within_step", "attribution_share", "memory_ratio"):
        assert _positive(row[key]), (key, row[key])
    assert row["attribution_share"] < 1
    assert "attribution" in row["ktr"]["phases_seconds_mean"] and "attribution" not in row["grpo"]["phases_seconds_mean"]
    assert "attribution/backbone" in row["ktr"]["phases_seconds_mean"]  # its decoder passes
    for method in ("grpo", "ktr"):
        assert len(row[method]["step_seconds"]) == 1  # two steps, the first is the warm-up
        mem = row[f"memory_{method}"]
        assert mem["peak_rss_mib"] > mem["peak_above_imports_mib"] > 0
        assert mem["peak_training_mib"] >= mem["rss_train_start_mib"] > mem["rss_after_imports_mib"]
        if row["memory_ratio_basis"] == "torch_peak_allocated_mib":  # CPU: from the profiler's allocation events
            assert mem["torch_peak_allocated_mib"] > mem["torch_static_mib"] > 0
            assert "backward" in mem["torch_peak_by_phase_mib"]
    if row["memory_ratio_basis"] == "torch_peak_allocated_mib":
        assert _positive(row["memory_ratio_training"])
        assert "attribution" in row["memory_ktr"]["torch_peak_by_phase_mib"]
    assert report["time_ratio_max"] == row["time_ratio"] and isinstance(report["time_ratio_meets_target"], bool)
    assert report["settings"]["timed_steps"] == 1 and report["method"]["memory"]
    assert out.with_suffix(".png").stat().st_size > 0
    assert not list(out.parent.glob("bench_*"))  # scratch folder removed


def test_lockstep_alternates_steps_and_keeps_each_threads_random_stream():
    import threading

    import torch

    torch.manual_seed(0)
    start = rng_state()
    alone = torch.rand(3).tolist()  # what one trainer draws over three steps on its own
    lockstep, order, draws = Lockstep(["a", "b"], {"a": start, "b": start}), [], {"a": [], "b": []}
    done = threading.Barrier(2)

    def body(name):
        lockstep.acquire(name)
        for step in range(3):
            if step:
                lockstep.release(name)
                lockstep.acquire(name)
            order.append(name)
            draws[name].append(torch.rand(1).item())
        lockstep.release(name, finished=True)
        done.wait()

    threads = [threading.Thread(target=body, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order == list("ababab")
    assert draws["a"] == draws["b"] == alone


def test_benchmark_times_both_temporal_units(world, tiny_model_dir, tmp_path):
    """The temporal counterfactual as shuffled frames re-encoded (`frame`, the paper's) and as reused patches
    (`patch`): the first over the sweep, the other at the first configuration."""
    out = tmp_path / "attribution.json"
    report = run_benchmark(tiny_model_dir, records(world)[:4], world, out, video_cfg=VIDEO_CFG, steps=2,
                           frames_list=[16], completion_lengths=[6], seed=0, train=TRAIN, memory=False,
                           temporal_units=["frame", "patch"])
    rows = {r["temporal_unit"]: r for r in report["configurations"]}
    assert set(rows) == {"frame", "patch"} and report["settings"]["temporal_units"] == ["frame", "patch"]
    for r in rows.values():
        assert (r["frames"], r["completion_length"]) == (16, 6) and _positive(r["time_ratio"])
        assert "attribution" in r["ktr"]["phases_seconds_mean"]
    assert out.with_suffix(".png").stat().st_size > 0
