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
