"""Tables 1-5 and the grid behind them: every cell of ours is the summary or training log it came from, every cell of
the paper's is config/reference/paper_tables.csv, and a table names only its own runs."""

import json
import math
import zlib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from videoktr.report import grid
from videoktr.report import tables
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


def write_summaries(tmp_path, evaluations) -> list[str]:
    paths = []
    for run, bench, frames in evaluations:
        p = tmp_path / f"eval/{run}/{bench}/f{frames}.summary.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        acc = accuracy(run, bench, frames)
        p.write_text(json.dumps({"model": run, "benchmark": bench, "frames": frames, "accuracy": acc,
                                 "answered": 48, "unparseable": 0, "subtasks": {bench[5:]: {
                                     "accuracy": acc, "questions": 48, "answered": 48, "errors": 0,
                                     "unparseable": 0}}}))
        paths.append(str(p))
    return paths


def test_the_reference_is_the_papers_table_copied_into_the_repo():
    ours = pd.read_csv(REFERENCE)
    assert list(ours.columns) == ["table", "method", "frames", "benchmark", "value", "note"]
    assert {"table1", "table2", "table3", "table4", "table5", "fig3a", "fig7", "fig8", "fig9", "fig10"} <= set(
        ours["table"])
    shared = ROOT.parent / "shared/reference/paper_tables.csv"
    if shared.exists():  # the copy is verbatim
        assert shared.read_text() == REFERENCE.read_text()


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


def test_table1_rows_are_method_and_frame_count_ours_and_the_papers(tmp_path):
    cfg = config()
    df = tables.build("table1", cfg, REFERENCE, summaries=write_summaries(tmp_path, grid.evaluations(cfg, "table1")))
    for f in cfg["eval"]["frames"]:
        assert df.loc[("Video-KTR-7B", str(f)), "tiny_temporal"] == pytest.approx(
            100 * accuracy("ktr", "tiny_temporal", f), abs=0.005)
    # the paper's 32- and 64-frame rows sit below ours; ours are empty there (not evaluated in the tiny world)
    assert df.loc[("Video-KTR-7B", "64"), "paper Video-Holmes"] == 42.7
    assert math.isnan(df.loc[("Video-KTR-7B", "64"), "tiny_temporal"])
    assert df.loc[("Video-KTR-7B", "16"), "paper VideoMME"] == 57.3
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
    assert csv.loc["KTR-V", "tiny_temporal"] == pytest.approx(100 * accuracy("ktr_V", "tiny_temporal", 16), abs=0.005)
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
    assert "GRPO-3B, Video-KTR-3B from sft_small (tiny Qwen2.5-VL, hidden 48, 2 layers)" in md
    df = pd.read_csv(tmp_path / "t/table5.csv", keep_default_na=False, na_values=[""], dtype={"frames": str})
    got = df[(df["method"] == "Video-KTR-3B") & (df["frames"] == "8")]["tiny_counting"].item()
    assert got == pytest.approx(100 * accuracy("ktr_small", "tiny_counting", 8), abs=0.005)
    # Table 1's rows all start from `sft`: no such note there
    assert tables.starting_models(cfg, "table1") == ""


def test_a_row_that_is_the_second_model_itself_is_named_so():
    cfg = config(table5={"Qwen2.5-VL-3B-SFT": "sft_small", "GRPO-3B": "grpo_small", "GRPO": "grpo"})
    assert tables.starting_models(cfg, "table5") == (
        "GRPO-3B from sft_small (tiny Qwen2.5-VL, hidden 48, 2 layers); GRPO from sft (tiny Qwen2.5-VL, hidden 64, "
        "2 layers); Qwen2.5-VL-3B-SFT is sft_small (tiny Qwen2.5-VL, hidden 48, 2 layers)")
