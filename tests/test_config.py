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
    (lambda c: c["runs"]["ktr"].update(sft_model="sft_smal"), "runs.ktr.sft_model: unknown model 'sft_smal'"),
    (lambda c: c["sft_models"]["sft_small"]["tiny"].update(hiden=8), "hiden"),
    (lambda c: c["sft_models"].update(grpo={}), "sft_models.grpo: 'grpo' is also a run"),
    (lambda c: c["sft_models"]["sft_small"].update(source="hub", hub={"repo": "a/b", "revision": "c"}),
     "sft_models.sft_small.source: 'hub', but model.source is 'tiny'"),
    (lambda c: c["sft_models"].update(sft={}), "sft_models"),
    (lambda c: c["sft_models"].update(same={}), "sft_models.same: no `tiny` section"),
    (lambda c: c["train"].update(use_vllm=True), "runs.grpo.train.use_vllm: the pinned TRL's vLLM rollouts take images"),
    (lambda c: c["sft_models"]["sft_small"].update(hub={"repo": "a/b", "revision": "c"}),
     "sft_models.sft_small.hub: a model of source tiny takes no `hub` section"),
])
def test_a_typo_or_wrong_type_names_the_key(edit, key):
    cfg = copy.deepcopy(BASE)
    edit(cfg)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_an_sft_model_takes_the_keys_it_leaves_out_from_model():
    cfg = copy.deepcopy(BASE)
    cfg["model"]["retries"] = 5
    cfg["sft_models"].update(small={"tiny": {"hidden_size": 32, "heads": 2}})
    got = validate(cfg)
    small = got["sft_models"]["small"]
    assert (small["source"], small["retries"]) == ("tiny", 5)
    # `tiny` is replaced as a unit: what the entry leaves out is the schema's default, not model.tiny's
    assert (small["tiny"]["hidden_size"], small["tiny"]["heads"], small["tiny"]["layers"]) == (32, 2, 2)
    assert got["runs"]["grpo"]["sft_model"] == "sft" and got["runs"]["grpo_small"]["sft_model"] == "sft_small"


def test_a_new_kind_of_model_is_one_entry_of_model_names(monkeypatch):
    from videoktr import config as config_module

    cfg = copy.deepcopy(BASE)
    cfg["eval"]["models"] = ["sft", "released_7b"]
    with pytest.raises(ConfigError, match="eval.models: unknown model 'released_7b'"):
        validate(cfg)
    monkeypatch.setitem(config_module.MODEL_NAMES, "released", lambda c: ["released_7b"])
    assert validate(cfg)["eval"]["models"] == ["sft", "released_7b"]


def test_a_key_given_twice_is_refused_by_name(tmp_path):
    """PyYAML and Snakemake's configfile keep the last of two equal keys silently; the config loader names it."""
    from videoktr.config import check_config_files

    text = open("config/config.yaml").read()
    twice = tmp_path / "twice.yaml"
    twice.write_text(text + "\ntrain:\n  lr: 1.0\n")  # a second top-level `train`
    with pytest.raises(ConfigError, match=r"twice\.yaml: key 'train' given twice \(lines \d+ and \d+\)"):
        load(twice)
    nested = tmp_path / "nested.yaml"
    nested.write_text("a:\n  b: 1\n  c: 2\n  b: 3\n")
    with pytest.raises(ConfigError, match=r"key 'b' given twice \(lines 2 and 4\)"):
        check_config_files([nested])
    check_config_files(["config/config.yaml"])  # the shipped configs give each key once
    check_config_files(["config/paper.yaml"])


def test_strings_the_schema_wants_as_numbers_are_parsed_as_the_command_line_gives_them():
    """`--config 'train={"lr": 0.0003}'` reaches the config as {"lr": "0.0003"} (Snakemake reads a dict value with
    YAML's BaseLoader); YAML 1.1 reads `3e-4` as a string. Coerced by the schema's types; strings stay strings."""
    cfg = copy.deepcopy(BASE)
    cfg["train"].update(lr="0.0003", max_steps="32", use_vllm="false")
    cfg["runs"]["ktr"].update(ratio="3e-1", train={"lr": "1e-3"})
    cfg["run_name"] = "0"  # a string in the schema: not made a number
    got = validate(cfg)
    assert got["train"]["lr"] == 0.0003 and got["train"]["max_steps"] == 32 and got["train"]["use_vllm"] is False
    assert isinstance(got["train"]["max_steps"], int)
    assert got["runs"]["ktr"]["ratio"] == 0.3 and got["runs"]["ktr"]["train"]["lr"] == 0.001
    assert got["run_name"] == "0" and got["runs"]["grpo"]["train"]["lr"] == 0.0003
    cfg["train"]["max_steps"] = "3.5"  # not an integer: still refused, naming the key
    with pytest.raises(ConfigError, match="train.max_steps"):
        validate(cfg)


def _dry_run(*args, cwd):
    import subprocess

    from conftest import BIN, ENV

    return subprocess.run([f"{BIN}/snakemake", "-n", "-p", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)


def test_config_on_the_command_line_and_a_configfile_alone_are_layered_over_the_defaults(tmp_path):
    from conftest import workdir

    wd = workdir(tmp_path)
    run = _dry_run("results/tiny/models/grpo", "--config", 'train={"lr": 0.0005}', cwd=wd)
    assert run.returncode == 0, run.stderr[-2000:]
    assert '"lr": 0.0005' in run.stdout  # the RL run's command line carries it
    (wd / "my.yaml").write_text("run_name: mine\ntrain: {lr: 1.0e-3}\n")
    run = _dry_run("results/mine/models/grpo", "--configfile", "my.yaml", cwd=wd)
    assert run.returncode == 0, run.stderr[-2000:]
    assert '"lr": 0.001' in run.stdout and "results/mine/train/grpo" in run.stdout
    assert "read as an overlay of config/config.yaml" in run.stdout + run.stderr
    # a whole config is not layered: the paper study stays the paper study
    run = _dry_run("-n", "all", "--configfile", "config/paper.yaml", cwd=wd)
    assert "overlay" not in run.stdout + run.stderr
