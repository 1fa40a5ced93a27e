"""The DAG itself: lint, target selection, and one end-to-end run of the tiny world through Snakemake's API."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)  # the rules call the `videoktr` CLI of this environment
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "HF_HUB_OFFLINE": "1"}


def snakemake(*args, cwd=ROOT):
    return subprocess.run([f"{BIN}/snakemake", *args], cwd=cwd, env=ENV, capture_output=True, text=True)


def test_lint_reports_nothing():
    out = snakemake("--lint")
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr, out.stdout


def job_counts(text: str) -> dict:
    """The first 'Job stats' table of a dry run, as rule -> count."""
    lines = text.split("Job stats:")[1].splitlines()[3:]
    rows = [line.split() for line in lines[: next(i for i, x in enumerate(lines) if x.startswith("total"))]]
    return {name: int(count) for name, count in rows}


def test_one_target_builds_only_what_it_needs():
    out = snakemake("-n", "-F", "results/tiny/eval/ktr/tiny_temporal/f8.summary.json")
    assert out.returncode == 0, out.stderr
    assert job_counts(out.stdout + out.stderr) == {
        "world": 1, "prepare_split": 2, "base_model": 1, "sft": 1, "difficulty_filter": 1, "train": 1, "evaluate": 1}
    table = job_counts((lambda o: o.stdout + o.stderr)(snakemake("-n", "-F", "results/tiny/tables/table1.md")))
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert table["train"] == len(cfg["runs"]) and "attribution_semantics" not in table
    assert table["evaluate"] == len(cfg["eval"]["models"]) * len(cfg["eval"]["benchmarks"]) * len(cfg["eval"]["frames"])


def test_config_typo_stops_with_the_key_named():
    out = snakemake("-n", "all", "--config", "trian={}")
    assert out.returncode != 0 and "unknown key 'trian'" in out.stdout + out.stderr


@pytest.mark.slow
def test_whole_tiny_dag_through_the_api(tmp_path, monkeypatch):
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    monkeypatch.setenv("PATH", ENV["PATH"])
    for item in ("Snakefile", "workflow", "config", "envs"):
        os.symlink(ROOT / item, tmp_path / item)
    # The default tiny world, with two RL runs and two frame counts to keep the suite short.
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["runs"] = {k: cfg["runs"][k] for k in ("grpo", "ktr")}
    cfg["eval"].update(models=["sft", "grpo", "ktr"], frames=[8, 16])
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(cfg))
    with SnakemakeApi(OutputSettings(quiet=set())) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=2),
            config_settings=ConfigSettings(configfiles=[tmp_path / "test.yaml"], replace_workflow_config=True),
            snakefile=tmp_path / "Snakefile",
            workdir=tmp_path,
        )
        workflow.dag(DAGSettings(targets=["all"])).execute_workflow(executor="local")
    out = tmp_path / "results/tiny"
    table = pd.read_csv(out / "tables/table1.csv", index_col=0)
    assert list(table.index) == cfg["eval"]["models"]
    values = table.to_numpy().ravel()
    assert ((0 <= values) & (values <= 100)).all() and len(set(values)) > 1
    # Each cell is the accuracy of the predictions file it came from.
    f = max(cfg["eval"]["frames"])
    for model in cfg["eval"]["models"]:
        for bench in cfg["eval"]["benchmarks"]:
            rows = [json.loads(x) for x in (out / f"eval/{model}/{bench}/f{f}.jsonl").read_text().splitlines()]
            assert table.loc[model, f"{bench} ({f}f)"] == pytest.approx(
                100 * sum(r["correct"] for r in rows) / len(rows), abs=0.051)
    # The SFT model is clearly above chance on appearance (chance: 1/4 colour, 1/3 shape questions).
    sft = json.loads((out / f"eval/sft/tiny_appearance/f{f}.summary.json").read_text())
    assert sft["accuracy"] >= 0.29 + 0.10, sft
    metrics = json.loads((out / "train/ktr/metrics.json").read_text())
    assert metrics["global_step"] == cfg["train"]["max_steps"]
    assert (out / "models/ktr/config.json").exists()
    assert 0.19 <= metrics["log_history"][0]["ktr/union_share"] <= 0.61
    semantics = json.loads((out / "analysis/attribution_semantics.json").read_text())
    assert set(semantics["signals"]) == {"E", "V", "T"} and semantics["words"] > 0
