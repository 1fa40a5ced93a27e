"""Tables 1-5 and the grid behind them: every cell of ours is the summary or training log it came from, every cell of
the paper's is config/reference/paper_tables.csv, and a table names only its own runs."""

import hashlib
import json
import math
import zlib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from videoktr.report import grid
from videoktr.report import table_output, tables, uncertainty
from videoktr.config import validate

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "config/reference/paper_tables.csv"
BENCH = ["tiny_appearance", "tiny_temporal", "tiny_counting"]


def config(**tables_rows):
    """The tiny config with `tables.rows` replaced (validated, defaults filled)."""
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    if tables_rows:
        cfg["tables"]["rows"] = tables_rows
    return validate(cfg)


def accuracy(run: str, bench: str, frames: int) -> float:
    """A distinct, reproducible accuracy per evaluation (multiples of 1/48: a question count of the tiny world)."""
    return zlib.crc32(f"{run}/{bench}/{frames}".encode()) % 48 / 48


def write_summaries(tmp_path, evaluations, scores=False, edit=None) -> list[str]:
    """One summary per evaluation; `scores`: with per-question scores (the first k of 48 ids correct, k/48 the
    accuracy) and their question set; `edit(run, bench, frames, summary)` changes one before it is written."""
    paths = []
    for run, bench, frames in evaluations:
        p = tmp_path / f"eval/{run}/{bench}/f{frames}.summary.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        acc = accuracy(run, bench, frames)
        s = {"model": run, "benchmark": bench, "frames": frames, "accuracy": acc,
             "answered": 48, "unparseable": 0, "subtasks": {bench[5:]: {
                 "accuracy": acc, "questions": 48, "answered": 48, "errors": 0, "unparseable": 0}}}
        if scores:
            k = round(acc * 48)
            s["scores"] = {f"q{i:02d}": float(i < k) for i in range(48)}
            s["question_set"] = hashlib.sha256("\n".join(sorted(s["scores"])).encode()).hexdigest()
            s |= {"questions": 48, "errors": 0, "error_ids": {}}
        if edit:
            edit(run, bench, frames, s)
        p.write_text(json.dumps(s))
        paths.append(str(p))
    return paths


def test_the_reference_is_the_papers_table_copied_into_the_repo():
    ours = pd.read_csv(REFERENCE)
    assert list(ours.columns) == ["table", "method", "frames", "benchmark", "value", "note"]
    assert {"table1", "table2", "table3", "table4", "table5", "fig3a", "fig7", "fig8", "fig9", "fig10"} <= set(
        ours["table"])


def test_table2_needs_exactly_its_rows_at_the_ablation_frame_count():
    cfg = config()
    need = grid.evaluations(cfg, "table2")
    runs = list(cfg["tables"]["rows"]["table2"].values())
    assert {r for r, _, _ in need} == set(runs)
    assert {b for _, b, _ in need} == set(cfg["tables"]["benchmarks"])
    assert {f for _, _, f in need} == {cfg["tables"]["frames"]}
    assert len(need) == len(set(runs)) * len(cfg["tables"]["benchmarks"])


def test_table1_and_table5_take_the_eval_benchmarks_and_their_frame_counts():
    cfg = config()
    assert {f for *_, f in grid.evaluations(cfg, "table1")} == set(cfg["eval"]["frames"])
    assert {f for *_, f in grid.evaluations(cfg, "table5")} == set(cfg["tables"]["table5_frames"])
    assert {b for _, b, _ in grid.evaluations(cfg, "table3")} == {"tiny_image"}


def test_one_evaluation_job_per_model_and_frame_count_holds_every_benchmark_all_needs_of_it():
    for path in ("config/config.yaml", "config/paper.yaml"):
        cfg = validate(yaml.safe_load((ROOT / path).read_text()))
        jobs, need = grid.evaluation_jobs(cfg), grid.all_evaluations(cfg)
        assert sorted((m, b, f) for (m, f), bs in jobs.items() for b in bs) == sorted(need)
        assert all(list(bs) == sorted(bs) for bs in jobs.values())  # one name per set: the job's file name
    cfg = config()
    jobs = grid.evaluation_jobs(cfg)
    # Table 3's visual-only run is read on the image benchmark too, at the ablation frame count only
    assert jobs["ktr_V", cfg["tables"]["frames"]] == ("tiny_appearance", "tiny_counting", "tiny_image", "tiny_temporal")
    assert ("ktr_V", 16) not in jobs
    assert grid.evaluation_job(jobs, "ktr_V", "tiny_temporal", cfg["tables"]["frames"]) == jobs["ktr_V", 8]
    # an evaluation `all` does not need (a summary asked for by its path) is a job of its own
    assert grid.evaluation_job(jobs, "ktr_V", "tiny_temporal", 4) == ("tiny_temporal",)
    assert grid.evaluation_job(jobs, "grpo", "tiny_image", 16) == ("tiny_image",)


def test_every_target_of_both_configs_names_runs_that_exist():
    for path in ("config/config.yaml", "config/paper.yaml"):
        cfg = validate(yaml.safe_load((ROOT / path).read_text()))
        grid.check_all(cfg)
    tiny = config()
    assert grid.configured(tiny) == list(grid.TARGETS)  # the tiny world builds every table and figure


def test_a_row_naming_a_missing_run_is_an_error_naming_it():
    cfg = config(table2={"GRPO": "grpo", "KTR-E": "ktr_nope"})
    with pytest.raises(grid.GridError, match=r"table2: row 'KTR-E' names run 'ktr_nope'"):
        grid.evaluations(cfg, "table2")
    with pytest.raises(grid.GridError, match=r"tables.rows.fig7 names no run"):
        grid.evaluations(cfg, "fig7")


def test_table3_refuses_a_video_benchmark():
    cfg = config(table3={"GRPO": "grpo"})
    cfg["tables"]["image_benchmarks"] = ["tiny_temporal"]
    with pytest.raises(grid.GridError, match="'tiny_temporal' is a video benchmark"):
        grid.check(cfg, "table3")


def test_table2_cells_are_the_summaries_and_the_papers_numbers(tmp_path):
    cfg = config()
    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table2"))
    df = tables.build("table2", cfg, REFERENCE, summaries=paths)
    ref = pd.read_csv(REFERENCE)
    ref = ref[ref["table"] == "table2"]
    f = cfg["tables"]["frames"]
    for label, run in cfg["tables"]["rows"]["table2"].items():
        assert df.loc[label, "run"] == run
        for b in BENCH:
            assert df.loc[label, b] == pytest.approx(100 * accuracy(run, b, f), abs=0.005)
        assert df.loc[label, "mean"] == pytest.approx(sum(100 * accuracy(run, b, f) for b in BENCH) / 3, abs=0.005)
    for _, r in ref.iterrows():
        assert df.loc[r["method"], f"paper {r['benchmark']}"] == r["value"]
    ours = list(cfg["tables"]["rows"]["table2"])
    assert list(df.index[: len(ours)]) == ours  # ours in the config's order, then the paper's other rows
    assert set(df.index) == set(ours) | set(ref["method"])


def test_a_paper_row_without_a_run_keeps_the_papers_numbers_only(tmp_path):
    cfg = config(table2={"GRPO": "grpo", "KTR-VET": "ktr"})
    df = tables.build("table2", cfg, REFERENCE, summaries=write_summaries(tmp_path, grid.evaluations(cfg, "table2")))
    assert df.loc["KTR-E", "run"] == "" and math.isnan(df.loc["KTR-E", "mean"])
    assert df.loc["KTR-E", "paper Avg"] == 51.0
    assert list(df.index) == ["GRPO", "KTR-VET", "KTR-E", "KTR-V", "KTR-T", "KTR-VT", "KTR-ET", "KTR-VE"]


def test_a_missing_summary_is_an_error_naming_it(tmp_path):
    cfg = config()
    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table2"))
    with pytest.raises(SystemExit, match="ktr_E"):
        tables.build("table2", cfg, REFERENCE, summaries=[p for p in paths if "/ktr_E/" not in p])


def test_a_summary_copied_over_another_runs_names_the_file_and_the_model_it_holds(tmp_path):
    """The probe: eval/ktr/... overwritten by grpo's summary. The table stops naming the file and what it holds, not
    with 'no evaluation summary for run ktr'."""
    import shutil

    cfg = config()
    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table2"))
    ktr = next(p for p in paths if "/ktr/" in p)
    shutil.copy(ktr.replace("/ktr/", "/grpo/"), ktr)
    bench, frames = ktr.split("/")[-2], int(ktr.split("/")[-1][1:].split(".")[0])
    with pytest.raises(SystemExit) as e:
        tables.build("table2", cfg, REFERENCE, summaries=paths)
    assert str(e.value) == (f"{ktr}: holds the summary of model 'grpo' on {bench} at {frames} frames, not of 'ktr' on "
                            f"{bench} at {frames} frames as its path says (copied over another?); delete it and "
                            f"rerun the workflow to write it again")
    # summaries read from elsewhere than their rule's paths: the missing run's message lists what was there
    from videoktr.report.summaries import load_summaries, summary_of

    loose = tmp_path / "loose.json"
    shutil.copy(ktr, loose)
    with pytest.raises(SystemExit, match=rf"no evaluation summary for run 'ktr' on {bench} at {frames} frames among "
                                         rf"the inputs \(those of {bench} at {frames} frames: .*loose.json holds "
                                         rf"model 'grpo'\)"):
        summary_of(load_summaries([loose]), "ktr", bench, frames)


def test_table1_rows_are_method_and_frame_count_ours_and_the_papers(tmp_path):
    cfg = config()
    df = tables.build("table1", cfg, REFERENCE, summaries=write_summaries(tmp_path, grid.evaluations(cfg, "table1")))
    for f in cfg["eval"]["frames"]:
        assert df.loc[("Video-KTR (ours)", str(f)), "tiny_temporal"] == pytest.approx(
            100 * accuracy("ktr", "tiny_temporal", f), abs=0.005)
    # our runs carry labels of their own: the released models' rows (Video-KTR-7B, Video-R1-7B, ...) are the
    # paper's, with its numbers and no run of ours
    assert df.loc[("Video-KTR-7B", "64"), "paper Video-Holmes"] == 42.7
    assert df.loc[("Video-KTR-7B", "16"), "paper VideoMME"] == 57.3
    for label in ("Video-KTR-7B", "Video-R1-7B", "TW-GRPO-7B", "Qwen2.5-VL-7B-SFT"):
        rows = df.loc[label]
        assert (rows["run"] == "").all() and rows["tiny_temporal"].isna().all(), label
    assert all("ours" in label for label in cfg["tables"]["rows"]["table1"])
    assert df.loc[("GPT-4o", ""), "paper VideoMME"] == 71.9 and df.loc[("GPT-4o", ""), "run"] == ""


def metrics(run, cost=True):
    m = {"run": run, "log_history": [{"loss": 0.1, "step": 1},
                                     {"train_runtime": 10.0 + len(run), "train_samples_per_second": 3.0, "step": 2}]}
    if cost:
        m["cost"] = {"train_seconds": 100.0 + len(run), "peak_memory_bytes": 2e9 + len(run) * 1e6,
                     "samples_per_second": 1.5, "forward_latency_seconds": 0.25, "forward_flops": 3e12}
    return m


def test_table4_reads_the_cost_dict_and_relates_each_row_to_grpo(tmp_path):
    cfg = config()
    paths = []
    for run in cfg["tables"]["rows"]["table4"].values():
        p = tmp_path / f"train/{run}/metrics.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(metrics(run, cost=run != "tgrpo")))
        paths.append(str(p))
    df = tables.build("table4", cfg, REFERENCE, metrics=paths)
    assert df.loc["Video-KTR", "train time (s)"] == 103.0
    assert df.loc["Video-KTR", "peak memory (MB)"] == pytest.approx(2003.0)
    assert df.loc["Video-KTR", "forward GFLOPs"] == pytest.approx(3000.0)
    assert df.loc["Video-KTR", "train time / GRPO"] == pytest.approx(103 / 104, abs=1e-4)
    assert df.loc["Video-KTR", "paper train_hours / GRPO"] == pytest.approx(5.2 / 4.7, abs=1e-4)
    # without the cost dict: TRL's own train_runtime and samples/s; the rest empty (not logged)
    assert df.loc["T-GRPO", "train time (s)"] == 15.0 and df.loc["T-GRPO", "samples/s"] == 3.0
    assert math.isnan(df.loc["T-GRPO", "peak memory (MB)"])
    assert df.loc["T-GRPO", "paper peak_mem_GB"] == 78.3


def test_cli_writes_csv_markdown_and_latex_labelled_honestly(tmp_path):
    cfg = config()
    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table2"))
    sections = json.dumps({k: cfg[k] for k in ("tables", "eval", "runs", "model")})
    assert tables.main(["table2", "--cfg", sections, "--summaries", *paths, "--reference", str(REFERENCE),
                        "--out", str(tmp_path / "t/table2")]) == 0
    csv = pd.read_csv(tmp_path / "t/table2.csv", index_col=0)
    f = cfg["tables"]["frames"]
    assert csv.loc["KTR-V", "tiny_temporal"] == pytest.approx(100 * accuracy("ktr_V", "tiny_temporal", f), abs=0.005)
    md = (tmp_path / "t/table2.md").read_text()
    assert md.startswith("# Table 2") and "tiny world" in md and "not the paper's model or benchmarks" in md
    assert "paper: the values printed in the paper" in md and "| KTR-VET" in md
    tex = (tmp_path / "t/table2.tex").read_text()
    assert "\\begin{table}" in tex and "\\caption{Table 2" in tex and "tiny world" in tex


def test_tiny_image_is_one_frame_of_each_appearance_clip(world):
    from videoktr.eval.benchmarks import BENCHMARKS, load_benchmark
    from videoktr.data.video import read_frames

    b = BENCHMARKS["tiny_image"]
    assert b.modality == "image" and b.tiny_split == "eval_appearance"
    loaded = load_benchmark("tiny_image", world / "eval_appearance.json", world)
    video = load_benchmark("tiny_appearance", world / "eval_appearance.json", world)
    assert [r["problem_id"] for r in loaded.records] == [r["problem_id"] for r in video.records]
    from PIL import Image
    import io
    import numpy as np

    r = loaded.records[0]
    image = np.array(Image.open(io.BytesIO(r["images"][0])))
    frames = read_frames(world / r["path"], fps=1000.0, max_frames=10_000)
    assert r["data_type"] == "image" and np.array_equal(image, frames[len(frames) // 2])


def test_table5_says_which_model_its_runs_start_from(tmp_path):
    cfg = config()
    rows = cfg["tables"]["rows"]["table5"]
    assert {cfg["runs"][r]["sft_model"] for r in rows.values()} == {"sft_small"}
    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table5"))
    sections = json.dumps({k: cfg[k] for k in ("tables", "eval", "runs", "model", "sft_models")})
    assert tables.main(["table5", "--cfg", sections, "--summaries", *paths, "--reference", str(REFERENCE),
                        "--out", str(tmp_path / "t/table5")]) == 0
    md = (tmp_path / "t/table5.md").read_text()
    assert "GRPO-3B, Video-KTR-3B from sft_small (tiny Qwen2.5-VL, hidden 32, 2 layers)" in md
    df = pd.read_csv(tmp_path / "t/table5.csv", keep_default_na=False, na_values=[""], dtype={"frames": str})
    got = df[(df["method"] == "Video-KTR-3B") & (df["frames"] == "8")]["tiny_counting"].item()
    assert got == pytest.approx(100 * accuracy("ktr_small", "tiny_counting", 8), abs=0.005)
    # Table 1's rows all start from `sft`: no such note there
    assert tables.starting_models(cfg, "table1") == ""


def test_a_row_that_is_the_second_model_itself_is_named_so():
    cfg = config(table5={"Qwen2.5-VL-3B-SFT": "sft_small", "GRPO-3B": "grpo_small", "GRPO": "grpo"})
    assert tables.starting_models(cfg, "table5") == (
        "GRPO-3B from sft_small (tiny Qwen2.5-VL, hidden 32, 2 layers); GRPO from sft (tiny Qwen2.5-VL, hidden 64, "
        "2 layers); Qwen2.5-VL-3B-SFT is sft_small (tiny Qwen2.5-VL, hidden 32, 2 layers)")


# -- uncertainty: bootstrap intervals, paired differences, honest cells ----------------------------------------------
def test_bootstrap_interval_of_a_known_case():
    assert uncertainty.interval([1.0] * 48) == (100.0, 100.0)
    assert uncertainty.interval({"a": 0.0, "b": 0.0}) == (0.0, 0.0)
    lo, hi = uncertainty.interval([1.0, 0.0] * 200)  # 50% of 400: about +-4.9 points (1.96 * sqrt(.25 / 400))
    assert lo == pytest.approx(45.1, abs=0.7) and hi == pytest.approx(54.9, abs=0.7)
    assert uncertainty.interval([1.0, 0.0] * 200) == (lo, hi)  # fixed seed: the same numbers on every rebuild
    assert uncertainty.interval(None) is None and uncertainty.interval({}) is None
    # the mean over benchmarks resamples within each: two independent halves are narrower than one
    m = uncertainty.mean_interval([{f"a{i}": float(i % 2) for i in range(400)},
                                   {f"b{i}": float(i % 2) for i in range(400)}])
    assert 45.1 < m[0] < 50 < m[1] < 54.9 and uncertainty.mean_interval([{"a": 1.0}, None]) is None


def test_the_paired_difference_of_identical_models_is_exactly_zero():
    a = {f"q{i}": float(i % 3 == 0) for i in range(60)}
    assert uncertainty.paired(a, dict(a)) == (0.0, 0.0, 0.0, 60)
    assert uncertainty.paired_mean([a, a], [dict(a), dict(a)]) == (0.0, 0.0, 0.0, 120)
    assert uncertainty.fmt_difference(0.0, 0.0, 0.0) == "+0.0 [+0.0, +0.0] (n.s.)"
    # paired: over the same ids only, whatever the order of the dicts
    b = {k: 1.0 for k in reversed(list(a))} | {"extra": 0.0}
    d, lo, hi, n = uncertainty.paired(b, a)
    assert n == 60 and d == pytest.approx(100 * 40 / 60) and 0 < lo < d < hi
    assert uncertainty.paired(a, None) is None and uncertainty.paired(a, {"other": 1.0}) is None


def test_a_difference_whose_interval_contains_zero_is_marked_not_significant():
    assert uncertainty.fmt_difference(1.2, -3.1, 5.4) == "+1.2 [-3.1, +5.4] (n.s.)"
    assert uncertainty.fmt_difference(8.3, 2.1, 14.6) == "+8.3 [+2.1, +14.6]"
    assert uncertainty.fmt_difference(-8.3, -14.6, -2.1) == "-8.3 [-14.6, -2.1]"
    assert uncertainty.fmt_difference(1.2, math.nan, math.nan) == "+1.2 [--]"  # no scores: no interval
    assert uncertainty.fmt_interval(45.83, 31.25, 60.42) == "45.8 [31.2, 60.4]"
    assert uncertainty.fmt_interval(45.83, math.nan, math.nan) == "45.8"
    one = {f"q{i}": float(i < 2) for i in range(48)}  # one question apart from `two`: not a result
    two = {f"q{i}": float(i < 3) for i in range(48)}
    assert uncertainty.fmt_difference(*uncertainty.paired(two, one)[:3]).endswith("(n.s.)")
    high = {f"q{i}": float(i < 40) for i in range(48)}
    low = {f"q{i}": float(i < 8) for i in range(48)}
    assert "n.s." not in uncertainty.fmt_difference(*uncertainty.paired(high, low)[:3])


def test_table2_cells_carry_intervals_and_the_paired_differences_it_draws(tmp_path):
    cfg = config()
    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table2"), scores=True)
    df = tables.build("table2", cfg, REFERENCE, summaries=paths)
    rows, f = cfg["tables"]["rows"]["table2"], cfg["tables"]["frames"]
    for label, run in rows.items():
        for c in [*BENCH, "mean"]:
            assert df.loc[label, f"{c}_lo"] <= df.loc[label, c] <= df.loc[label, f"{c}_hi"]
        b = "tiny_temporal"
        k = round(accuracy(run, b, f) * 48)
        assert (df.loc[label, f"{b}_lo"], df.loc[label, f"{b}_hi"]) == tuple(
            round(v, 2) for v in uncertainty.interval([float(i < k) for i in range(48)], stream=BENCH.index(b)))
    # each KTR subset against GRPO and against the full KTR-VET; GRPO and KTR-VET not against themselves
    assert tables.baselines(cfg, "table2") == ["GRPO", "KTR-VET"]
    assert math.isnan(df.loc["GRPO", "mean vs GRPO"]) and math.isnan(df.loc["KTR-VET", "mean vs KTR-VET"])
    assert math.isnan(df.loc["GRPO", "mean vs KTR-VET"])  # KTR-VET vs GRPO is drawn once, that way round
    ktr = [f"q{i:02d}" for i in range(48)]
    sc = {r: {b: {q: float(i < round(accuracy(r, b, f) * 48)) for i, q in enumerate(ktr)} for b in BENCH}
          for r in ("grpo", "ktr")}
    d, lo, hi, _ = uncertainty.paired_mean([sc["ktr"][b] for b in BENCH], [sc["grpo"][b] for b in BENCH])
    assert (df.loc["KTR-VET", "mean vs GRPO"], df.loc["KTR-VET", "mean vs GRPO_lo"],
            df.loc["KTR-VET", "mean vs GRPO_hi"]) == (round(d, 2), round(lo, 2), round(hi, 2))
    assert df.loc["KTR-VET", "mean vs GRPO"] == pytest.approx(df.loc["KTR-VET", "mean"] - df.loc["GRPO", "mean"],
                                                             abs=0.02)
    # the paper's rows keep their numbers, without intervals
    assert df.loc["KTR-E", "paper Avg"] == 51.0 and "paper Avg_lo" not in df.columns
    table_output.write(df, tmp_path / "t/table2", "Table 2", ["n"])
    md = (tmp_path / "t/table2.md").read_text()
    cell = uncertainty.fmt_interval(df.loc["KTR-V", "mean"], df.loc["KTR-V", "mean_lo"], df.loc["KTR-V", "mean_hi"])
    assert f"| {cell}" in md and "## Paired differences" in md
    assert "| KTR-VET  | GRPO " in md and "| KTR-E    | KTR-VET " in md
    csv = pd.read_csv(tmp_path / "t/table2.csv", index_col=0)
    assert {"mean_lo", "mean_hi", "tiny_temporal_errors", "mean vs GRPO_lo"} <= set(csv.columns)
    assert list(csv.columns[:4]) == ["run", *BENCH]  # the columns of old come first, in their order


def test_table1_compares_rl_with_sft_and_methods_with_grpo_at_each_frame_count(tmp_path):
    cfg = config()
    df = tables.build("table1", cfg, REFERENCE,
                      summaries=write_summaries(tmp_path, grid.evaluations(cfg, "table1"), scores=True))
    assert tables.baselines(cfg, "table1") == ["SFT (ours)", "GRPO (ours)"]
    for f in map(str, cfg["eval"]["frames"]):
        assert not math.isnan(df.loc[("GRPO (ours)", f), "mean vs SFT (ours)"])
        assert not math.isnan(df.loc[("Video-KTR (ours)", f), "mean vs GRPO (ours)"])
        assert math.isnan(df.loc[("SFT (ours)", f), "mean vs GRPO (ours)"])
    assert math.isnan(df.loc[("Video-KTR-7B", "64"), "mean vs GRPO (ours)"])  # the paper's row: nothing drawn


def test_without_per_question_scores_the_interval_is_empty_not_invented(tmp_path):
    cfg = config()
    df = tables.build("table2", cfg, REFERENCE, summaries=write_summaries(tmp_path, grid.evaluations(cfg, "table2")))
    assert df[["mean_lo", "mean_hi", "tiny_temporal_lo", "mean vs GRPO_lo"]].isna().all().all()
    assert df.loc["KTR-VET", "mean vs GRPO"] == pytest.approx(df.loc["KTR-VET", "mean"] - df.loc["GRPO", "mean"],
                                                             abs=0.02)
    table_output.write(df, tmp_path / "t/table2", "Table 2", ["n"])
    md = (tmp_path / "t/table2.md").read_text()
    row = next(x for x in md.splitlines() if x.startswith("| KTR-V "))
    assert "[" not in row and f"{df.loc['KTR-V', 'mean']:.1f}".rstrip("0").rstrip(".") in row  # the bare value
    diffs = [x for x in md.partition("## Paired differences")[2].splitlines() if x.startswith("| KTR")]
    assert diffs and all("[--]" in x and "n.s." not in x for x in diffs)  # no interval, so no verdict


def test_a_cell_with_error_rows_says_so(tmp_path):
    cfg = config()

    def errors(run, bench, frames, s):
        if run == "ktr_V" and bench == "tiny_temporal":
            s["errors"] = 3
            s["error_ids"] = {"q00": "video unreadable", "q01": "video unreadable", "q02": "generation failed"}

    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table2"), scores=True, edit=errors)
    sections = json.dumps({k: cfg[k] for k in ("tables", "eval", "runs", "model")})
    assert tables.main(["table2", "--cfg", sections, "--summaries", *paths, "--reference", str(REFERENCE),
                        "--out", str(tmp_path / "t/table2")]) == 0
    md = (tmp_path / "t/table2.md").read_text()
    row = next(x for x in md.splitlines() if x.startswith("| KTR-V "))
    assert "(3 err)" in row and sum("err)" in x for x in md.splitlines() if x.startswith("| ")) == 1
    f = cfg["tables"]["frames"]
    assert "evaluation errors" in md and f"tiny_temporal at {f} frames: KTR-V (ktr_V) 3 of 48" in md
    assert pd.read_csv(tmp_path / "t/table2.csv", index_col=0).loc["KTR-V", "tiny_temporal_errors"] == 3
    assert "(3 err)" in (tmp_path / "t/table2.tex").read_text()


def test_a_column_scored_on_different_question_sets_says_so(tmp_path):
    cfg = config()

    def fewer(run, bench, frames, s):
        if run == "ktr" and bench == "tiny_counting":
            s["scores"] = {k: v for k, v in s["scores"].items() if k not in ("q46", "q47")}
            s["question_set"] = hashlib.sha256("\n".join(sorted(s["scores"])).encode()).hexdigest()

    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table2"), scores=True, edit=fewer)
    df = tables.build("table2", cfg, REFERENCE, summaries=paths)
    (line,) = [n for n in df.attrs["notes"] if "DIFFERENT QUESTION SETS" in n]
    assert f"tiny_counting at {cfg['tables']['frames']} frames" in line and "KTR-VET (ktr) [46 questions]" in line
    assert "GRPO (grpo)" in line and "tiny_temporal" not in line
    # a summary without `question_set` but with scores: the same digest from its ids, so no false alarm
    same = write_summaries(tmp_path / "same", grid.evaluations(cfg, "table2"), scores=True,
                           edit=lambda r, b, f, s: s.pop("question_set"))
    assert tables.build("table2", cfg, REFERENCE, summaries=same).attrs["notes"] == []


@pytest.mark.parametrize("text, reason", [("{\"model\": \"ktr\", ", "not valid JSON"),
                                          ("[1, 2]", "a JSON list, not an object"),
                                          ('{"model": "ktr"}', "no benchmark, frames, accuracy"),
                                          (b"\xff\xfe\x00", "unreadable evaluation summary")])
def test_a_corrupt_summary_stops_the_table_with_one_line_naming_it(tmp_path, text, reason):
    cfg = config()
    paths = write_summaries(tmp_path, grid.evaluations(cfg, "table2"))
    bad = Path(paths[3])
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    sections = json.dumps({k: cfg[k] for k in ("tables", "eval", "runs", "model")})
    with pytest.raises(SystemExit) as e:
        tables.main(["table2", "--cfg", sections, "--summaries", *paths, "--reference", str(REFERENCE),
                     "--out", str(tmp_path / "t/table2")])
    msg = str(e.value.code)
    assert msg.startswith(f"{bad}: ") and reason in msg and "\n" not in msg
    assert e.value.__context__ is None or e.value.__suppress_context__  # no JSONDecodeError traceback with it
