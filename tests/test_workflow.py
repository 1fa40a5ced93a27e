"""The DAG itself: lint, target selection, and one end-to-end run of the tiny world through Snakemake's API."""

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, ENV, ROOT



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


def test_one_target_builds_only_what_it_needs(clean_dir):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    out = snakemake("-n", "-F", "results/tiny/eval/ktr/tiny_temporal/f8.summary.json", cwd=clean_dir)
    assert out.returncode == 0, out.stderr
    # the summary comes from its evaluation job, which scores ktr at 8 frames on every benchmark `all` needs of it:
    # the three tiny splits are prepared (and the training split)
    assert job_counts(out.stdout + out.stderr) == {
        "world": 1, "prepare_split": 1 + len(cfg["eval"]["benchmarks"]), "base_model": 1, "sft": 1, "filter_shard": cfg["filter"]["shards"],
        "difficulty_filter": 1, "train": 1, "evaluate": 1, "eval_summary": 1}
    table = job_counts((lambda o: o.stdout + o.stderr)(snakemake("-n", "-F", "results/tiny/tables/table1.md",
                                                                 cwd=clean_dir)))
    rows = set(cfg["tables"]["rows"]["table1"].values())
    assert table["train"] == len(rows - {"sft"}) and "attribution_semantics" not in table
    # one summary per (row, benchmark, frames), from one evaluation job per (row, frames)
    assert table["eval_summary"] == len(rows) * len(cfg["eval"]["benchmarks"]) * len(cfg["eval"]["frames"])
    assert table["evaluate"] == len(rows) * len(cfg["eval"]["frames"])


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    """A work dir with the workflow and no results: the dry runs see none of the checkout's outputs."""
    wd = tmp_path_factory.mktemp("dag")
    for item in ("Snakefile", "workflow", "config", "envs"):
        os.symlink(ROOT / item, wd / item)
    return wd


def dry_run_jobs(target: str, cwd: Path) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a forced dry run of `target` schedules."""
    out = snakemake("-n", "-F", target, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs, rule = [], None
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            jobs.append((rule, {}))
        elif line.strip().startswith("wildcards:") and rule:
            jobs[-1][1].update(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
    return jobs


@pytest.mark.parametrize("target", ["table2", "fig10"])
def test_an_ablation_target_builds_only_its_own_runs(target, clean_dir):
    from videoktr.report import grid
    from videoktr.config import validate

    cfg = validate(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    path = f"results/tiny/{'tables' if target.startswith('table') else 'figures'}/{target}.{'md' if target.startswith('table') else 'png'}"
    jobs = dry_run_jobs(path, clean_dir)
    trained = {w["run"] for r, w in jobs if r == "train"}
    evaluated = {(w["model"], w["benchmark"], int(w["frames"])) for r, w in jobs if r == "eval_summary"}
    assert trained == set(cfg["tables"]["rows"][target].values()) - {"sft"}
    assert evaluated == set(grid.evaluations(cfg, target))
    # one evaluation job per row, each holding (at least) that row's benchmarks
    eval_jobs = {(w["model"], int(w["frames"])): set(w["benchmarks"].split("+")) for r, w in jobs if r == "evaluate"}
    assert set(eval_jobs) == {(m, f) for m, _, f in evaluated}
    assert all(b in eval_jobs[m, f] for m, b, f in evaluated)
    # its rows at the ablation frame count only, and no other table or figure
    assert {f for *_, f in evaluated} == {cfg["tables"]["frames"]}
    rule = "table" if target.startswith("table") else "accuracy_figure"
    assert [(r, w) for r, w in jobs if r not in ("world", "prepare_split", "base_model", "sft", "filter_shard",
                                                 "difficulty_filter", "train", "evaluate", "eval_summary")] == [
        (rule, {"table" if rule == "table" else "fig": target})]


def test_table5_trains_its_runs_from_the_second_model(clean_dir):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    jobs = dry_run_jobs("results/tiny/tables/table5.md", clean_dir)
    rows = set(cfg["tables"]["rows"]["table5"].values())
    assert {w["run"] for r, w in jobs if r == "train"} == rows == {"grpo_small", "ktr_small"}
    # both models are built and fine-tuned: sft_small for the runs, sft for the difficulty filter they train on
    assert sorted(w["sft"] for r, w in jobs if r in ("base_model", "sft")) == ["sft", "sft", "sft_small", "sft_small"]
    out = snakemake("-n", "-F", "results/tiny/train/ktr_small/metrics.json", cwd=clean_dir)
    train = (out.stdout + out.stderr).split("rule train:")[1].split("\n\n")[0]
    assert "results/tiny/models/sft_small," in train and "results/tiny/models/sft," not in train


def test_all_builds_every_table_and_figure(clean_dir):
    jobs = dry_run_jobs("all", clean_dir)
    built = {(r, w.get("table") or w.get("fig")) for r, w in jobs}
    assert {("table", t) for t in ("table1", "table2", "table3", "table5")} | {("cost_table", "table4")} | {
        ("accuracy_figure", f) for f in ("fig3a", "fig3b", "fig7", "fig8", "fig9", "fig10")} | {
        ("token_figure", f) for f in ("fig4", "fig5", "fig6", "fig11", "fig12")} | {
        ("token_figure_html", "fig2"), ("attribution_semantics", None), ("training_summary", None)} <= built


def test_the_token_log_run_is_a_config_key(tmp_path, clean_dir):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg.setdefault("analysis", {})["token_log_run"] = "ktr_VT"
    (tmp_path / "vt.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "-p", "-F", "results/tiny/figures/fig4.png", "--configfile", str(tmp_path / "vt.yaml"),
                    cwd=clean_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--token-log results/tiny/train/ktr_VT/token_log" in out.stdout + out.stderr
    for run, says in [("grpo", "run 'grpo' is a grpo run"), ("ktr_missing", "'ktr_missing' is not in config runs")]:
        cfg["analysis"]["token_log_run"] = run
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
        out = snakemake("-n", "all", "--configfile", str(tmp_path / "bad.yaml"), cwd=clean_dir)
        assert out.returncode != 0 and f"config error at analysis.token_log_run: {says}" in out.stdout + out.stderr


def test_a_table_naming_a_missing_run_stops_with_the_run_named(tmp_path, clean_dir):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["tables"]["rows"]["table2"]["KTR-E"] = "ktr_missing"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "results/tiny/tables/table2.md", "--configfile", str(tmp_path / "bad.yaml"), cwd=clean_dir)
    assert out.returncode != 0
    assert "table2: row 'KTR-E' names run 'ktr_missing', which is not in config runs" in out.stdout + out.stderr


def test_config_typo_stops_with_the_key_named():
    out = snakemake("-n", "all", "--config", "trian={}")
    assert out.returncode != 0 and "unknown key 'trian'" in out.stdout + out.stderr


def test_a_config_file_giving_a_key_twice_stops_with_the_key_named(tmp_path, clean_dir):
    dup = tmp_path / "dup.yaml"
    dup.write_text((ROOT / "config/config.yaml").read_text() + "\nseed: 7\n")
    out = snakemake("-n", "all", "--configfile", str(dup), cwd=clean_dir)
    assert out.returncode != 0 and "dup.yaml: key 'seed' given twice" in out.stdout + out.stderr, out.stderr[-2000:]


def test_a_second_snakemake_while_one_runs_says_what_works(tmp_path):
    """Snakemake checks for incomplete outputs before it takes the lock: a second run while one runs would suggest
    --rerun-incomplete, which fails on the lock. The Snakefile says first that one runs (its pid), and once a killed
    run left its lock, to unlock."""
    import signal
    import time

    from conftest import workdir

    wd = workdir(tmp_path)
    (wd / "sleeper.smk").write_text('rule sleep:\n    output: "slept"\n    shell: "sleep 120 && touch {output}"\n')
    holder = subprocess.Popen([f"{BIN}/snakemake", "-s", "sleeper.smk", "-c1"], cwd=wd, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list((wd / ".snakemake/locks").glob("*.lock")) and time.monotonic() < deadline:
            time.sleep(0.5)
        out = snakemake("-n", "results/tiny/data/clean/train.json", cwd=wd)
        text = out.stdout + out.stderr
        assert f"another snakemake (pid {holder.pid}) runs in this work dir and holds its lock" in text, text[-3000:]
        assert "wait for it to end" in text
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the group this test started: snakemake and its job's shell
        holder.wait()
    out = snakemake("-n", "results/tiny/data/clean/train.json", cwd=wd)
    assert "no snakemake runs in this work dir" in out.stderr and "`snakemake --unlock`" in out.stderr, out.stderr


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
    # every table and figure, on these two runs (the report below shows each)
    kept = {name: {label: run for label, run in rows.items() if run in ("sft", "grpo", "ktr")}
            for name, rows in cfg["tables"]["rows"].items()}
    cfg["tables"]["rows"] = {name: rows for name, rows in kept.items() if rows}  # Fig. 10 has neither
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))  # rows keep their order
    with SnakemakeApi(OutputSettings(quiet=set())) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=2),
            config_settings=ConfigSettings(configfiles=[tmp_path / "test.yaml"], replace_workflow_config=True),
            snakefile=tmp_path / "Snakefile",
            workdir=tmp_path,
        )
        workflow.dag(DAGSettings(targets=["all"])).execute_workflow(executor="local")
    out = tmp_path / "results/tiny"
    table = pd.read_csv(out / "tables/table1.csv", keep_default_na=False, na_values=[""], dtype={"frames": str})
    ours = table[table["run"].notna()]  # rows of ours (the paper's other rows have no run)
    rows1 = cfg["tables"]["rows"]["table1"]
    assert list(dict.fromkeys(ours["run"])) == list(rows1.values())
    values = ours.loc[ours["frames"].isin([str(f) for f in cfg["eval"]["frames"]]), cfg["eval"]["benchmarks"]]
    values = values.to_numpy().ravel()
    assert ((0 <= values) & (values <= 100)).all() and len(set(values)) > 1
    # Each cell is the accuracy of the predictions file it came from.
    f = max(cfg["eval"]["frames"])
    for label, model in rows1.items():
        cell = ours[(ours["method"] == label) & (ours["frames"] == str(f))].iloc[0]
        for bench in cfg["eval"]["benchmarks"]:
            rows = [json.loads(x) for x in (out / f"eval/{model}/{bench}/f{f}.jsonl").read_text().splitlines()]
            assert cell[bench] == pytest.approx(100 * sum(r["correct"] for r in rows) / len(rows), abs=0.006)
    # The SFT model is clearly above chance on appearance (chance: 1/4 colour, 1/3 shape questions).
    sft = json.loads((out / f"eval/sft/tiny_appearance/f{f}.summary.json").read_text())
    assert sft["accuracy"] >= 0.29 + 0.10, sft
    metrics = json.loads((out / "train/ktr/metrics.json").read_text())
    assert metrics["global_step"] == cfg["train"]["max_steps"]
    assert (out / "models/ktr/config.json").exists()
    assert 0.19 <= metrics["log_history"][0]["ktr/union_share"] <= 0.61
    semantics = json.loads((out / "analysis/attribution_semantics.json").read_text())
    assert set(semantics["signals"]) == {"E", "V", "T"} and semantics["words"] > 0
    training = json.loads((out / "analysis/training.json").read_text())["runs"]
    assert set(training) == {"grpo", "ktr"}
    assert training["ktr"]["compared_with"] == "grpo" and training["ktr"]["batches"] == cfg["train"]["max_steps"]
    # the accuracy reward per question source, from the per-step logs of the trainer
    assert set(training["ktr"]["by_source"]) == {"appearance", "temporal", "counting"}
    assert all(q["steps"] > 0 for q in training["ktr"]["by_source"].values())
    assert metrics["rollouts"][0] == json.loads((out / "train/grpo/metrics.json").read_text())["rollouts"][0]
    # every table and figure of the grid, and the HTML report with each of them
    for name in cfg["tables"]["rows"]:
        kind = "tables" if name.startswith("table") else "figures"
        for ext in (("csv", "md", "tex", "html") if kind == "tables" else ("png", "pdf", "csv")):
            assert (out / f"{kind}/{name}.{ext}").stat().st_size > 0, (name, ext)
    # each ablation figure's CSV holds the accuracies of the summaries it was made from
    f = cfg["tables"]["frames"]
    for name in ("fig3a", "fig7", "fig8", "fig9"):
        csv = pd.read_csv(out / f"figures/{name}.csv", keep_default_na=False, na_values=[""])
        for label, run in cfg["tables"]["rows"][name].items():
            row = csv[csv["method"] == label].iloc[0]
            for bench in cfg["tables"]["benchmarks"]:
                acc = json.loads((out / f"eval/{run}/{bench}/f{f}.summary.json").read_text())["accuracy"]
                assert row[bench] == pytest.approx(100 * acc, abs=0.005), (name, label, bench)
    res = subprocess.run([f"{BIN}/snakemake", "--report", "results/tiny/report.html", "--configfile", "test.yaml",
                          "--replace-workflow-config"],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (out / "report.html").read_text()
    for name in [*cfg["tables"]["rows"], "fig2", "fig4", "fig11"]:
        assert f"{name}.{'html' if name.startswith('table') else 'png'}" in html, name
