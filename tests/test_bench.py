"""The attribution-cost benchmark runs end to end and writes its report and figure (no timing assertions)."""

import json
import math

from conftest import VIDEO_CFG, records
from videoktr.bench import PAPER, TARGETS, run_benchmark

TRAIN = {"lr": 1e-3, "beta": 0.04, "num_generations": 2, "per_device_batch_size": 2, "max_completion_length": 8,
         "temperature": 1.0, "epochs": 1, "max_steps": 1, "loss_type": "grpo", "save_steps": 1, "logging_steps": 1}


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
    for key in ("time_ratio", "time_ratio_median", "attribution_share", "memory_ratio", "memory_ratio_whole_process",
                "time_ratio_separate_processes"):
        assert _positive(row[key]), (key, row[key])
    assert row["attribution_share"] < 1
    assert "attribution" in row["ktr"]["phases_seconds_mean"] and "attribution" not in row["grpo"]["phases_seconds_mean"]
    assert "attribution/backbone" in row["ktr"]["phases_seconds_mean"]  # its decoder passes
    for method in ("grpo", "ktr"):
        assert len(row[method]["step_seconds"]) == 1  # two steps, the first is the warm-up
        assert row[f"memory_{method}"]["peak_rss_mib"] > row[f"memory_{method}"]["peak_above_imports_mib"] > 0
    assert out.with_suffix(".png").stat().st_size > 0
    assert not list(out.parent.glob("bench_*"))  # scratch folder removed
