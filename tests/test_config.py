import copy

import pytest
import yaml

from videoktr.config import ConfigError, load, validate

BASE = yaml.safe_load(open("config/config.yaml"))


def test_default_config_validates_and_fills_defaults():
    cfg = load("config/config.yaml")
    assert cfg["runs"]["grpo"]["train"]["beta"] == cfg["train"]["beta"]
    assert cfg["runs"]["ktr"]["ratio"] == 0.2


@pytest.mark.parametrize("edit, key", [
    (lambda c: c.update(trian={}), "trian"),
    (lambda c: c["train"].update(lr="fast"), "train.lr"),
    (lambda c: c["filter"].update(kk=8), "kk"),
    (lambda c: c["runs"]["ktr"].update(ratoi=0.3), "ratoi"),
    (lambda c: c["runs"]["ktr"].update(signals=["X"]), "runs.ktr.signals"),
    (lambda c: c["runs"]["ktr"].update(train={"betta": 1}), "betta"),
    (lambda c: c["eval"].update(benchmarks=["nope"]), "eval.benchmarks"),
])
def test_a_typo_or_wrong_type_names_the_key(edit, key):
    cfg = copy.deepcopy(BASE)
    edit(cfg)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)
