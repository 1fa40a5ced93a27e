"""`videoktr` as people meet it: --version, a description on every step and argument, errors that name the file,
and `videoktr ask` on a tiny clip."""

import argparse
import json
import re
import subprocess
import sys

import pytest

from conftest import ENV, records


def _walk(name: str, p: argparse.ArgumentParser):
    """(name, parser) of a parser and of every subcommand under it (`figure fig4`)."""
    yield name, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, sp in action.choices.items():
                yield from _walk(f"{name} {sub}", sp)


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    from videoktr.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"videoktr {version('videoktr')}"


def test_every_step_and_argument_has_a_description_and_help_prints_it(capsys):
    from videoktr.cli import DELEGATED, STEPS, main, parser, step_parsers

    top = parser().format_help()
    parsers = step_parsers()
    assert set(parsers) == {"ask", *STEPS, *DELEGATED}
    for step in parsers:  # each step listed in `videoktr --help` with a line of its own
        assert re.search(rf"^\s+{re.escape(step)}\s+\S", top, re.M) or re.search(rf"^\s+{re.escape(step)}\n\s+\S",
                                                                               top, re.M), step
    walked = 0
    for step, p in parsers.items():
        for name, sp in _walk(step, p):
            assert sp.description, f"videoktr {name}: no description"
            for action in sp._actions:
                if isinstance(action, argparse._HelpAction):
                    continue
                assert action.help and action.help.strip(), f"videoktr {name}: {action.dest} has no help"
            with pytest.raises(SystemExit) as e:
                main(name.split() + ["--help"])
            assert e.value.code == 0, name
            out = _words(capsys.readouterr().out)
            assert out.startswith(f"usage: videoktr {name} "), out[:80]
            for action in sp._actions:  # the help text of each argument is what --help prints
                if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                    assert _words(action.help % {"default": action.default, "prog": sp.prog}) in out, \
                        (name, action.dest)
            walked += 1
    assert walked > len(parsers)  # the figure's subcommands were walked too


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: None, "{path}: no such file"),
    (lambda tmp: (tmp / "plan.json").write_text("not json"), "{path}: not valid JSON"),
])
def test_a_plan_file_that_is_missing_or_not_json_is_named(tmp_path, capsys, make, expected):
    from videoktr.cli import main

    make(tmp_path)
    plan, model = tmp_path / "plan.json", tmp_path / "model"
    model.mkdir()
    rc = main(["evaluate", "--model", str(model), "--name", "m", "--frames", "4", "--plan", str(plan),
               "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("videoktr evaluate: --plan " + expected.format(path=plan)) and "\n" not in err


def test_a_missing_input_and_an_unreadable_cfg_file_are_named(tmp_path, capsys):
    from videoktr.cli import main

    rc = main(["prepare", "--records", str(tmp_path / "train.json"), "--data-dir", str(tmp_path),
               "--out", str(tmp_path / "o.json"), "--skipped", str(tmp_path / "s.json")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == f"videoktr prepare: --records {tmp_path / 'train.json'}: no such " \
                                              "file or folder"
    (tmp_path / "train.json").write_text("[]")
    (tmp_path / "cfg.json").write_text("{oops")
    rc = main(["prepare", "--cfg", str(tmp_path / "cfg.json"), "--records", str(tmp_path / "train.json"),
               "--data-dir", str(tmp_path), "--out", str(tmp_path / "o.json"), "--skipped", str(tmp_path / "s.json")])
    assert rc == 2 and capsys.readouterr().err.startswith(f"videoktr prepare: --cfg {tmp_path / 'cfg.json'}: not "
                                                          "valid JSON")


def test_ask_answers_one_question_about_a_tiny_clip(tiny_model_dir, world):
    """The real command on the tiny model: one reply, parsed as the evaluation parses it, with the video tokens the
    model saw (4 frames of 56x56: 2 temporal patches x 4 x 4 patches / 2x2 merge = 8 tokens)."""
    clip = world / records(world)[0]["path"]
    cmd = [sys.executable, "-m", "videoktr.cli", "ask", "--model", str(tiny_model_dir), "--video", str(clip),
           "--question", "What colour is the shape?", "--options", "A. red", "B. blue", "--fps", "8",
           "--frames", "4", "--max-new-tokens", "12", "--json"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reply = json.loads(done.stdout)
    assert reply["frames"] == 4 and reply["video_tokens"] == 8 and reply["problem_type"] == "multiple choice"
    assert "Options:\nA. red\nB. blue\n" in reply["prompt"] and isinstance(reply["output"], str)
    from videoktr.eval.answers import extract_answer

    assert reply["answer"] == extract_answer(reply["output"])
    # the plain form: three lines a person reads
    plain = subprocess.run(cmd[:-1], env=ENV, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and [line.split(":")[0] for line in plain.stdout.splitlines()] == \
        ["answer", "reasoning", "video"]
    assert "8 video tokens" in plain.stdout


def test_ask_names_a_clip_it_cannot_read(tiny_model_dir, tmp_path):
    from videoktr.ask import ask

    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(SystemExit) as e:
        ask(tiny_model_dir, bad, "What colour?")
    assert str(e.value).startswith(f"videoktr ask: --video {bad}")
    with pytest.raises(SystemExit) as e:
        ask(tmp_path, bad, "What colour?")
    assert str(e.value) == f"videoktr ask: --model {tmp_path}: not a model folder (no config.json)"
