"""The rehearsal of the paper study (docs/rehearsal.md): config/paper.yaml's DAG with config/rehearsal.yaml over it,
through profiles/slurm on a one-node SLURM, against a local hub; then its checks on its own outputs.

The fast tests hold the overlay to sizes only; the slow one runs `python -m videoktr.rehearsal` in a fresh work dir
and asserts each check, among them the paper-path fixes 1-4 read from the runs (pixel cap, Video-Holmes past the
filter, `other_clip` with one prompt group per device, gradient diagnostics outside the measured cost)."""

import json
import subprocess
import sys

import pytest
import yaml
from conftest import ENV, ROOT, workdir

from videoktr.rehearsal import expected_settings, load_config, snakemake_args

PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
OVERLAY = yaml.safe_load((ROOT / "config/rehearsal.yaml").read_text())
# what the overlay may change: sizes, places, backends (no GPU here) and which rows of the grid are built
SIZES = {"run_name", "data.mirror", "model.mirror", "sft_models.qwen3b.mirror", "filter.max_new_tokens",
         "filter.batch_size", "filter.shards", "filter.backend", "train.max_steps", "train.max_completion_length",
         "train.save_steps", "train.deepspeed", "runs.ktr.train.diagnostics_every", "eval.mirror", "eval.models",
         "eval.benchmarks", "eval.frames", "eval.max_new_tokens", "eval.batch_size", "eval.backend", "analysis.spacy_model",
         "tables.benchmarks", "tables.table5_frames"}
# the backend is the paper's (vLLM); only how it holds a CPU's memory and compiles differs
SIZES |= {f"{stage}.vllm.{k}" for stage in ("filter", "eval") for k in ("gpu_memory_utilization", "enforce_eager",
                                                                         "dtype")}


def leaves(d: dict, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_the_overlay_changes_sizes_places_and_rows_only():
    changed = {k for k, _ in leaves(OVERLAY)}
    released = {k for k in changed if k.startswith("released.")}
    assert all(k.endswith(".mirror") for k in released), released
    rows = {k for k in changed if k.startswith("tables.rows.")}
    for k, v in leaves(OVERLAY):  # a row is dropped (null) or names a run of the paper config
        assert k not in rows or v is None or v in PAPER["runs"], k
    assert changed - released - rows <= SIZES, sorted(changed - released - rows - SIZES)


def test_every_run_of_the_rehearsal_trains_with_its_paper_row():
    from videoktr.config import validate

    config = load_config(ROOT)
    paper = validate(yaml.safe_load((ROOT / "config/paper.yaml").read_text()))
    for run in ("grpo", "tgrpo", "twgrpo", "ktr", "ktr_V_replace", "grpo_3b"):
        assert expected_settings(config, run) == expected_settings(paper, run), run
    assert config["video"] == paper["video"]


def test_the_rehearsal_keeps_every_table_and_figure_of_the_paper():
    from videoktr.report import grid

    assert set(grid.configured(load_config(ROOT))) == set(grid.TARGETS)


def test_every_rule_of_the_profile_is_scaled_to_one_cpu_and_no_gpu():
    args = snakemake_args(ROOT, 2)
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    scaled = args[args.index("--set-resources") + 1:]
    for rule in profile["set-resources"]:
        assert {f"{rule}:nodes=1", f"{rule}:cpus_per_task=1", f"{rule}:gpu=0"} <= set(scaled), rule
    assert args[args.index("--configfile") + 1:args.index("--configfile") + 3] == ["config/paper.yaml",
                                                                                  "config/rehearsal.yaml"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, slurm_cluster):
    # tests/ too: the local hub's benchmark files are built from tests/fixtures
    wd = workdir(tmp_path_factory.mktemp("rehearsal"), ("Snakefile", "workflow", "config", "envs", "profiles",
                                                        "scripts", "tests"))
    env = {**ENV, **slurm_cluster, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "videoktr.rehearsal"], cwd=wd, env=env, capture_output=True,
                         text=True, timeout=3600)
    report_path = wd / "results/rehearsal/rehearsal.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return {"res": res, "report": report, "wd": wd,
            "checks": {c["check"]: c for c in report.get("checks", [])}}


@pytest.mark.slow
def test_the_rehearsal_runs_the_paper_dag_through_slurm(rehearsal):
    res, report = rehearsal["res"], rehearsal["report"]
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    w = report["workflow"]
    assert w["returncode"] == 0 and w["jobs"] == w["jobs_planned"] > 80, w
    assert not (rehearsal["wd"] / "results/paper").exists()


@pytest.mark.slow
@pytest.mark.parametrize("check", ["video_input_train", "video_input_filter", "video_input_eval"])
def test_fix1_every_clip_at_the_papers_pixel_cap(rehearsal, check):
    c = rehearsal["checks"][check]
    assert c["ok"], c


@pytest.mark.slow
def test_fix2_video_holmes_training_questions_skip_the_filter(rehearsal):
    c = rehearsal["checks"]["holmes_unfiltered"]
    assert c["ok"] and c["detail"]["holmes_kept"] == c["detail"]["holmes_questions"] > 0, c


@pytest.mark.slow
def test_fix3_other_clip_trains_with_one_prompt_group_per_device(rehearsal):
    m = json.loads((rehearsal["wd"] / "results/rehearsal/train/ktr_V_replace/metrics.json").read_text())
    t = m["trained_with"]
    assert t["visual_perturbation"] == "other_clip" and t["per_device_train_batch_size"] == t["num_generations"]
    assert m["global_step"] == 2


@pytest.mark.slow
def test_fix4_gradient_diagnostics_ran_and_the_cost_meter_counted_the_steps(rehearsal):
    """The diagnostics ran in the paper's KTR run (Fig. 11 reads them) and the meter measured both optimizer steps;
    that their time stays out of the meter is tests/test_paper_path.py's direct test."""
    run = rehearsal["wd"] / "results/rehearsal/train/ktr"
    assert (run / "gradients.csv").read_text().count("\n") > 1
    cost = json.loads((run / "metrics.json").read_text())["cost"]
    assert cost["optimizer_steps"] == 2 and cost["unaccounted_steps"] == 0 and cost["train_seconds"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("check", ["trained_with", "targets", "bad_input", "engines", "zero3_training"])
def test_rehearsal_check(rehearsal, check):
    c = rehearsal["checks"][check]
    assert c["ok"], c


def test_a_row_mapped_to_null_is_left_out_and_an_empty_table_is_not_built():
    from videoktr.report import grid

    config = load_config(ROOT)
    assert grid.rows(config, "fig10") == {"visual-replace": "ktr_V_replace"}
    config["tables"]["rows"]["fig9"] = {label: None for label in config["tables"]["rows"]["fig9"]}
    assert "fig9" not in grid.configured(config)
    with pytest.raises(grid.GridError, match="names no run"):
        grid.rows(config, "fig9")


def test_evaluation_summaries_record_the_video_input_of_their_rows(tmp_path):
    from videoktr.eval.evaluate import summarize

    clip = {"clips": 1, "frames_max": 16, "pixels_per_frame_max": 94080, "tokens_min": 960, "tokens_mean": 960.0,
            "tokens_max": 960}
    short = dict(clip, frames_max=6, tokens_min=360, tokens_mean=360.0, tokens_max=360)
    rows = [{"id": "a", "subtask": "x", "output": "", "correct": 1.0, "parseable": True, "seconds": 1.0,
             "video_input": clip},
            {"id": "b", "subtask": "x", "output": "", "correct": 0.0, "parseable": True, "seconds": 1.0,
             "video_input": short},
            {"id": "c", "subtask": "x", "error": "video c.mp4: no such file"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = summarize(tmp_path / "p.jsonl", model="m", benchmark="video_holmes", frames=16, backend="transformers")
    assert s["video_input"] == {"clips": 2, "frames_max": 16, "pixels_per_frame_max": 94080, "tokens_min": 360,
                                "tokens_mean": 660.0, "tokens_max": 960}
