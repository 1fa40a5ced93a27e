"""Released checkpoints (config `released`): fetched like the SFT model, evaluated like our runs, and shown in Table 1's
released block (tables/table1_released) beside the paper's number for each and the difference, with no training.

* the config: released names join the models an evaluation may name, and clash with no run or SFT model;
* the block from fixture summaries: the paper's numbers by `reference_label` (config/paper.yaml) or by hand;
* the paper DAG of `results/paper/tables/table1_released.md` (dry run through profiles/slurm): downloads and
  evaluations only;
* the tiny world end to end: the SFT model saved into a mirror in the hub's layout (rule released_mirror), fetched
  from it (rule released), evaluated and tabled beside its reference.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from videoktr.config import ConfigError, known_models, validate
from videoktr.report import grid, tables

sys.path.insert(0, str(Path(__file__).parent))
import test_tables as tt  # noqa: E402  (fixture summaries)
from conftest import BIN, ENV, ROOT  # noqa: E402

TINY = yaml.safe_load((ROOT / "config/config.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
REFERENCE = ROOT / "config/reference/paper_tables.csv"


def tiny(**released) -> dict:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["released"] = released
    return cfg


# ---------------------------------------------------------------------------------------------------- the config


def test_released_names_are_models_an_evaluation_may_name():
    cfg = tiny(org_7b={"hub": {"repo": "Org/M-7B", "revision": "a" * 40}})
    cfg["eval"]["models"] = ["sft", "org_7b"]
    got = validate(cfg)
    assert known_models(got)["org_7b"] == "released"
    entry = got["released"]["org_7b"]  # the schema's defaults: the shape of a model's hub section
    assert (entry["hub"]["files"], entry["mirror"], entry["retries"], entry["mirror_from"]) == (["*"], None, 3, None)


@pytest.mark.parametrize("name, says", [("grpo", "'grpo' is also in runs"),
                                        ("sft_small", "'sft_small' is also in model/sft_models"),
                                        ("sft", "'sft' is also in model/sft_models")])
def test_a_released_name_may_not_clash_with_a_run_or_an_sft_model(name, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        validate(tiny(**{name: {"hub": {"repo": "Org/M", "revision": "main"}}}))


def test_mirror_from_names_an_sft_model_and_excludes_a_mirror():
    hub = {"repo": "Org/M", "revision": "main"}
    with pytest.raises(ConfigError, match="released.r.mirror_from: unknown model 'grpo'"):
        validate(tiny(r={"hub": hub, "mirror_from": "grpo"}))  # a run: the block trains nothing
    with pytest.raises(ConfigError, match="mirror and mirror_from exclude each other"):
        validate(tiny(r={"hub": hub, "mirror_from": "sft", "mirror": "/m"}))
    with pytest.raises(ConfigError, match="released.r.reference: 'tiny_nope'"):
        validate(tiny(r={"hub": hub, "reference": {"tiny_nope": {8: 1.0}}}))
    got = validate(tiny(r={"hub": hub, "reference": {"tiny_temporal": {8: 40}}}))
    assert got["released"]["r"]["reference"] == {"tiny_temporal": {"8": 40.0}}  # frame counts as strings (JSON)


def test_both_configs_build_the_released_block_and_no_run_of_ours_carries_a_released_name():
    for raw in (TINY, PAPER):
        cfg = validate(raw)
        assert "table1_released" in grid.configured(cfg)  # `all` builds it
        labels = set(cfg["tables"]["rows"]["table1"])
        assert not labels & {"Video-R1-7B", "Video-KTR-7B", "Qwen2.5-VL-7B", "Qwen2.5-VL-7B-SFT", "TW-GRPO-7B"}
    paper = validate(PAPER)
    assert {s["hub"]["repo"]: s["reference_label"] for s in paper["released"].values()} == {
        "Video-R1/Video-R1-7B": "Video-R1-7B", "Video-KTR/Video-KTR-7B": "Video-KTR-7B",
        "Qwen/Qwen2.5-VL-7B-Instruct": "Qwen2.5-VL-7B", "Video-R1/Qwen2.5-VL-7B-COT-SFT": "Qwen2.5-VL-7B-SFT"}
    # the paper's numbers for them stay paper rows of Table 1
    ref = pd.read_csv(REFERENCE, dtype={"frames": str}, keep_default_na=False)
    assert {s["reference_label"] for s in paper["released"].values()} <= set(ref.loc[ref["table"] == "table1",
                                                                                        "method"])


# ---------------------------------------------------------------------------------------------------- the block


def test_the_block_puts_each_checkpoint_beside_the_papers_number_and_the_difference(tmp_path):
    cfg = validate(PAPER)
    bench, frames = cfg["eval"]["benchmarks"], cfg["eval"]["frames"]
    evaluations = grid.evaluations(cfg, "table1_released")
    assert set(evaluations) == {(n, b, f) for n in cfg["released"] for b in bench for f in frames}
    df = tables.build("table1_released", cfg, REFERENCE,
                      summaries=tt.write_summaries(tmp_path, evaluations, scores=True))
    assert list(df.index.names) == ["model", "frames"] and len(df) == len(cfg["released"]) * len(frames)

    def ours(name, b, f):
        return 100 * tt.accuracy(name, b, f)

    # Video-KTR-7B: the paper prints 16, 32 and 64 frames
    row = df.loc[("video_ktr_7b", "16")]
    assert row["paper video_holmes"] == 40.7 and row["paper videomme"] == 57.3
    assert row["video_holmes"] == pytest.approx(ours("video_ktr_7b", "video_holmes", 16), abs=0.005)
    assert row["video_holmes - paper"] == pytest.approx(row["video_holmes"] - 40.7, abs=0.01)
    # the difference's interval is ours shifted by the paper's number
    assert row["video_holmes - paper_lo"] == pytest.approx(row["video_holmes_lo"] - 40.7, abs=0.01)
    assert row["video_holmes_lo"] <= row["video_holmes"] <= row["video_holmes_hi"]
    assert row["paper mean"] == pytest.approx((40.7 + 51.3 + 65.7 + 73.3 + 57.3) / 5, abs=0.01)
    # Video-R1-7B: 32 frames only; Qwen2.5-VL-7B: no frame count, so beside each
    assert math.isnan(df.loc[("video_r1_7b", "16"), "paper video_holmes"])
    assert math.isnan(df.loc[("video_r1_7b", "16"), "video_holmes - paper"])
    assert df.loc[("video_r1_7b", "32"), "paper tempcompass"] == 73.2
    assert {df.loc[("qwen25vl_7b", str(f)), "paper mmvu"] for f in frames} == {59.2}
    assert df.loc[("cot_sft_7b", "64"), "paper videomme"] == 58.8
    assert df.loc[("video_r1_7b", "32"), "repo"] == "Video-R1/Video-R1-7B"
    assert df.loc[("video_r1_7b", "32"), "paper row"] == "Video-R1-7B"


def test_a_reference_label_missing_from_the_papers_table_is_named(tmp_path):
    cfg = validate(tiny(r={"hub": {"repo": "Org/M", "revision": "main"}, "reference_label": "Video-R2-7B"}))
    paths = tt.write_summaries(tmp_path, grid.evaluations(cfg, "table1_released"))
    with pytest.raises(SystemExit, match="released.r.reference_label: no row 'Video-R2-7B'"):
        tables.build("table1_released", cfg, REFERENCE, summaries=paths)


# ---------------------------------------------------------------------------------------------------- the DAGs


def dry_run_jobs(text: str) -> list[tuple[str, dict]]:
    jobs = []
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            jobs.append((m.group(1), {}))
        elif line.strip().startswith("wildcards:") and jobs:
            jobs[-1][1].update(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
    return jobs


def test_the_paper_released_block_downloads_and_evaluates_and_trains_nothing(tmp_path):
    """`snakemake --profile profiles/slurm -n results/paper/tables/table1_released.md`: the released checkpoints'
    downloads (rule released), the benchmarks' downloads, their evaluations, the table; the GPU preflight first."""
    for item in ("Snakefile", "workflow", "config", "envs", "profiles", "scripts"):
        os.symlink(ROOT / item, tmp_path / item)
    res = subprocess.run([f"{BIN}/snakemake", "--profile", "profiles/slurm", "-n",
                          "results/paper/tables/table1_released.md"], cwd=tmp_path, env=ENV, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    cfg = validate(PAPER)
    jobs = dry_run_jobs(res.stdout + res.stderr)
    rules = {r for r, _ in jobs}
    assert rules <= {"preflight", "released", "bench_records", "bench_media", "evaluate", "eval_summary", "table"}, rules
    assert not rules & {"train", "sft", "filter_shard", "difficulty_filter", "hub_records", "hub_media", "world",
                        "prepare_split", "base_model"}
    assert sorted(w["released"] for r, w in jobs if r == "released") == sorted(cfg["released"])
    evaluated = {(w["model"], w["benchmark"], int(w["frames"])) for r, w in jobs if r == "eval_summary"}
    assert evaluated == set(grid.evaluations(cfg, "table1_released"))
    # one evaluation job per (checkpoint, frames): the model loaded once for its benchmarks
    assert sorted((w["model"], int(w["frames"])) for r, w in jobs if r == "evaluate") == sorted(
        {(m, f) for m, _, f in evaluated})
    assert [w for r, w in jobs if r == "table"] == [{"table": "table1_released"}]


def test_the_tiny_release_is_mirrored_fetched_evaluated_and_tabled(tmp_path):
    """The tiny world's release, end to end on a small world: the SFT model saved into results/<run>/mirror/<repo>,
    fetched from there by rule released, evaluated, and in the block beside its reference and the difference."""
    for item in ("Snakefile", "workflow", "config", "envs"):
        os.symlink(ROOT / item, tmp_path / item)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["run_name"] = "reltest"
    cfg["world"].update(n_train=48, n_eval=12)
    cfg["sft"].update(epochs=1)
    cfg["eval"].update(models=["sft", "tiny_release"], benchmarks=["tiny_appearance", "tiny_counting"], frames=[8])
    repo = cfg["released"]["tiny_release"]["hub"]["repo"]
    cfg["released"]["tiny_release"]["reference"] = {"tiny_appearance": {8: 40.0}, "tiny_counting": {8: 30.0}}
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    target = "results/reltest/tables/table1_released.md"
    res = subprocess.run([f"{BIN}/snakemake", "--cores", "2", target, "--configfile", "small.yaml",
                          "--replace-workflow-config"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = tmp_path / "results/reltest"
    assert not (out / "train").exists() and not (out / "data/filtered").exists()  # no RL, no difficulty filter
    # the mirror in the hub's layout, fetched from there: the same files, the manifest naming the repo and the mirror
    mirror = out / "mirror" / repo
    assert (mirror / "config.json").is_file() and not (mirror / "hub_manifest.json").exists()
    manifest = json.loads((out / "models/tiny_release/hub_manifest.json").read_text())
    assert manifest["repo"] == repo and manifest["mirror"] == "results/reltest/mirror" and manifest["commit"] is None
    assert set(manifest["files"]) == {p.name for p in mirror.iterdir()}
    assert (out / "models/tiny_release/config.json").resolve().read_bytes() == (out / "models/sft/config.json"
                                                                                ).read_bytes()
    # the block: our accuracy (its summary), the reference beside it, the difference
    df = pd.read_csv(out / "tables/table1_released.csv", dtype={"frames": str}).set_index(["model", "frames"])
    row = df.loc[("tiny_release", "8")]
    for bench, paper in (("tiny_appearance", 40.0), ("tiny_counting", 30.0)):
        s = json.loads((out / f"eval/tiny_release/{bench}/f8.summary.json").read_text())
        assert row[bench] == pytest.approx(100 * s["accuracy"], abs=0.006)
        assert row[f"paper {bench}"] == paper
        assert row[f"{bench} - paper"] == pytest.approx(100 * s["accuracy"] - paper, abs=0.02)
        assert row[f"{bench}_lo"] <= row[bench] <= row[f"{bench}_hi"]
    assert row["commit"] == "(mirror)" and row["repo"] == repo
    md = (out / "tables/table1_released.md").read_text()
    assert "released checkpoints" in md and "- paper" in md and "tiny_release" in md
