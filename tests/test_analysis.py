import pandas as pd
import pytest

from videoktr.report.semantics import attribution_semantics, words_of


def test_enrichment_is_selected_share_over_base_rate_on_whole_words():
    # "yellow" is two pieces: selected by V through one piece, it counts once, as selected
    log = pd.DataFrame({
        "step": 0, "sample_id": "1#0", "position": range(8),
        "token_str": [" yel", "low", " so", " the", " left", " answer", " is", " red"],
        "selected_E": [0, 0, 1, 1, 0, 0, 0, 0],
        "selected_V": [0, 1, 0, 0, 0, 0, 0, 1],
        "selected_T": [0, 0, 0, 0, 1, 1, 0, 0],
    }).astype({c: bool for c in ("selected_E", "selected_V", "selected_T")})
    words = words_of(log)
    assert list(words["word"]) == ["yellow", "so", "the", "left", "answer", "is", "red"]
    out = attribution_semantics(words)["signals"]
    assert out["V"]["appearance"]["selected_share"] == 1.0
    assert out["V"]["appearance"]["base_share"] == pytest.approx(2 / 7)
    assert out["V"]["appearance"]["enrichment"] == pytest.approx(3.5)
    assert out["V"]["appearance"]["recall"] == 1.0
    assert out["T"]["temporal"]["enrichment"] == pytest.approx(0.5 / (1 / 7))
    assert out["E"]["appearance"]["enrichment"] == 0.0 and out["E"]["appearance"]["recall"] == 0.0


def _log(n_completions, pick_v, pick_t, seed=0):
    """Completions "the <colour> shape moves <direction> so" with V and T selecting by the given rules."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_completions):
        words = [" the", f" {rng.choice(['red', 'blue'])}", " shape", " moves", f" {rng.choice(['left', 'up'])}",
                 " so"]
        for p, w in enumerate(words):
            rows.append({"step": c // 4, "sample_id": f"q#{c % 4}", "position": p, "token_str": w,
                         "selected_E": p == 3, "selected_V": pick_v(p, rng), "selected_T": pick_t(p, rng)})
    return pd.DataFrame(rows)


def test_semantics_intervals_and_the_v_vs_t_comparisons():
    """Every share has its bootstrap interval over completions, and the two differences the analysis asks about:
    V picks appearance words more than T does, T order words more than V does."""
    # V takes the colour (position 1) 80% of the time, T the direction (position 4) 80% of the time, each else "so"
    log = _log(40, lambda p, r: p == (1 if r.random() < 0.8 else 5), lambda p, r: p == (4 if r.random() < 0.8 else 5))
    out = attribution_semantics(words_of(log), resamples=500)
    assert out["completions"] == 40 and out["words"] == 240 and out["bootstrap"]["unit"] == "completion"
    for s, stats in out["signals"].items():
        lo, hi = stats["selection_rate_ci"]
        assert lo <= stats["selection_rate"] <= hi
        for name in ("appearance", "temporal"):
            for key in ("selected_share", "base_share", "recall"):
                value, ci = stats[name][key], stats[name][f"{key}_ci"]
                assert ci[0] <= value <= ci[1], (s, name, key)
    assert out["signals"]["V"]["appearance"]["base_share"] == pytest.approx(1 / 6)
    assert out["signals"]["V"]["appearance"]["base_share_ci"] == [pytest.approx(1 / 6)] * 2  # one colour each
    v_app = out["comparisons"]["appearance_V_minus_T"]
    t_ord = out["comparisons"]["temporal_T_minus_V"]
    assert v_app["difference"] == pytest.approx(out["signals"]["V"]["appearance"]["selected_share"]
                                                - out["signals"]["T"]["appearance"]["selected_share"])
    assert v_app["excludes_zero"] and v_app["ci"][0] > 0.5 and t_ord["excludes_zero"] and t_ord["ci"][0] > 0.5
    assert attribution_semantics(words_of(log), resamples=500) == out  # fixed seed: the same numbers again
    # V and T selecting the same words: a difference of exactly 0 with the interval [0, 0], not a result
    same = _log(12, lambda p, r: p == 1, lambda p, r: p == 1)
    tie = attribution_semantics(words_of(same), resamples=200)["comparisons"]["appearance_V_minus_T"]
    assert tie["difference"] == 0 and tie["ci"] == [0.0, 0.0] and not tie["excludes_zero"]
