"""A rule's command run again on its finished directory output (a requeued job, the command repeated): the output is
recognised by what defines it, not by what Snakemake adds to the folder afterwards, and no file changes. `train` is
checked in test_preemption (the run it trains to its end); here the world, the tiny model and the SFT model."""

import hashlib
import json
import logging

from videoktr.cli import main
from videoktr.config import load

CFG = load("config/config.yaml")
VIDEO = dict(CFG["video"], min_pixels=3136, max_pixels=3136)


def files_of(folder) -> dict:
    """Every file under `folder`: its bytes' digest and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def twice(args: list[str], out, caplog) -> None:
    """Run the command, add Snakemake's marker to its output folder, run it again: reused, every file unchanged."""
    assert main(args) in (0, None)
    (out / ".snakemake_timestamp").write_text("")
    before = files_of(out)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="videoktr")
    assert main(args) in (0, None)
    assert "reusing it, not making it again" in caplog.text
    assert files_of(out) == before


def test_world_tiny_model_and_sft_commands_run_again_change_no_file(tmp_path, caplog):
    world = tmp_path / "world"
    wcfg = {"seed": 0, "world": dict(CFG["world"], n_train=8, n_eval=4)}
    twice(["world", "--cfg", json.dumps(wcfg), "--out", str(world)], world, caplog)

    init = tmp_path / "sft.init"
    mcfg = {"seed": 0, "video": VIDEO, "model": dict(CFG["model"], tiny=dict(CFG["model"]["tiny"], vocab_size=400,
                                                                             hidden_size=32, layers=1, heads=1))}
    twice(["build-model", "--cfg", json.dumps(mcfg), "--records", str(world / "train.json"), "--out", str(init)],
          init, caplog)

    sft = tmp_path / "sft"
    scfg = {"seed": 0, "video": VIDEO, "sft": dict(CFG["sft"], epochs=1, batch_size=4)}
    args = ["sft", "--cfg", json.dumps(scfg), "--model", str(init), "--records", str(world / "train.json"),
            "--data-dir", str(world), "--out", str(sft)]
    twice(args, sft, caplog)

    # another setting, or a remade input: made again
    caplog.clear()
    scfg["sft"]["lr"] = CFG["sft"]["lr"] / 2
    args[2] = json.dumps(scfg)
    assert main(args) in (0, None)
    assert "reusing it" not in caplog.text and "SFT done" in caplog.text
