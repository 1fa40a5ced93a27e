import pandas as pd
import pytest

from videoktr.analysis import attribution_semantics


def test_enrichment_is_selected_share_over_base_rate():
    log = pd.DataFrame({
        "token_str": [" red", " so", " the", " left", " answer", " is", " red", "."],
        "selected_E": [0, 1, 1, 0, 0, 0, 0, 0],
        "selected_V": [1, 0, 0, 0, 0, 0, 1, 0],
        "selected_T": [0, 0, 0, 1, 1, 0, 0, 0],
    }).astype({c: bool for c in ("selected_E", "selected_V", "selected_T")})
    out = attribution_semantics(log)["signals"]
    assert out["V"]["appearance"]["selected_share"] == 1.0
    assert out["V"]["appearance"]["base_share"] == pytest.approx(2 / 8)
    assert out["V"]["appearance"]["enrichment"] == pytest.approx(4.0)
    assert out["T"]["temporal"]["enrichment"] == pytest.approx(0.5 / (1 / 8))
    assert out["E"]["appearance"]["enrichment"] == 0.0
