"""Every bad input we know of, one row each, and the one-line message it must give.

CASES maps a row's name to Case(kind, input, names): RUNNERS[kind](input, ctx) feeds the input to the code that reads
it and returns the message it stopped or reported with; the test checks it is one line and contains each of `names`
(the item: key, file, record or path; and the reason). The next bad input is one row; a new kind of input (summaries,
checkpoints) is one runner in RUNNERS and its rows.

Kinds:
    config     a patch deep-merged over config/config.yaml -> ConfigError
    split      the text of a training split -> BadDataError of `prepare`
    record     a patch over a good multiple-choice record, saved as record "vid-3" after the good record "vid-1"
               -> `prepare`'s message (every bad record is named there with its reason)
    benchmark  the text of a benchmark's records file -> BadDataError of the evaluation's loader
    question   a patch over a good eval record "vid-3" -> the evaluation loader's problem, as evaluate logs it
    media      a patch over a good record -> what load_frames / load_images raise where the clip or image is opened
    summary    the text of an evaluation summary -> the one line a table or figure rule stops with
    checkpoint (file, what to do to it: "delete", "truncate" or new text) on a complete checkpoint-2 -> why resume
               skips it (`checkpoint_problem`, logged with the folder's name)

The media folder of `record`, `question` and `media` holds the world's clips through a symlinked folder `videos/`
(paths are confined lexically: links inside the folder are followed) and a corrupt clip `corrupt.mp4`.
"""

import copy
import json
from typing import NamedTuple

import pytest
import yaml

from conftest import VIDEO_CFG, records


class Case(NamedTuple):
    kind: str
    input: object
    names: tuple


ESCAPE = "../../etc/passwd"
CASES = {
    # config
    "run_name ..": Case("config", {"run_name": ".."}, ("run_name", "'..'", "not a safe folder name")),
    "run_name with /": Case("config", {"run_name": "a/b"}, ("run_name", "'a/b'", "not a safe folder name")),
    "run_name hidden": Case("config", {"run_name": ".x"}, ("run_name", "'.x'", "not a safe folder name")),
    "batch 6, G 4": Case("config", {"train": {"per_device_batch_size": 6}},
                         ("train.per_device_batch_size", "train.num_generations", "not a multiple of", "TRL")),
    "run's batch 6": Case("config", {"runs": {"ktr": {"train": {"per_device_batch_size": 6}}}},
                          ("runs.ktr.train.per_device_batch_size", "train.num_generations", "not a multiple of")),
    "run's G 3": Case("config", {"runs": {"grpo": {"train": {"num_generations": 3}}}},
                      ("train.per_device_batch_size", "runs.grpo.train.num_generations", "not a multiple of")),
    "eval.models nosuch": Case("config", {"eval": {"models": ["sft", "nosuch"]}},
                               ("eval.models", "'nosuch'", "unknown model", "sft_small", "ktr")),
    "unknown key": Case("config", {"trian": {}}, ("trian", "unknown key")),
    "filter low > high": Case("config", {"filter": {"low": 0.9, "high": 0.1}}, ("filter", "low must not exceed high")),
    # a training split as a whole
    "empty split": Case("split", "[]", ("train.json", "the split is empty")),
    "unreadable split": Case("split", "[{oops", ("train.json", "cannot read")),
    "split not a list": Case("split", '{"a": 1}', ("train.json", "expected a JSON list")),
    # one training record (prepare)
    "record path ../": Case("record", {"path": ESCAPE}, ("record vid-3", f"'{ESCAPE}'", "leaves the media folder")),
    "record path inner ../": Case("record", {"path": "videos/../../x.mp4"}, ("record vid-3", "leaves the media folder")),
    "record path absolute": Case("record", {"path": "/etc/passwd"}, ("record vid-3", "'/etc/passwd'", "is absolute")),
    "record path not text": Case("record", {"path": 5}, ("record vid-3", "path 5", "names no file")),
    "record path empty": Case("record", {"path": ""}, ("record vid-3", "names no file")),
    "answer not an option": Case("record", {"solution": "<answer>Z</answer>"},
                                 ("record vid-3", "'Z'", "not one of the option letters")),
    "duplicate problem_id": Case("record", {"problem_id": "vid-1"}, ("record vid-1", "duplicate problem_id")),
    "no solution": Case("record", {"solution": None}, ("record vid-3", "missing field(s) solution")),
    "image record": Case("record", {"data_type": "image"}, ("record vid-3", "data_type 'image'")),
    "unknown problem type": Case("record", {"problem_type": "essay"}, ("record vid-3", "'essay'")),
    "missing clip": Case("record", {"path": "videos/nope.mp4"}, ("record vid-3", "nope.mp4")),
    "corrupt clip": Case("record", {"path": "corrupt.mp4"}, ("record vid-3", "corrupt.mp4")),
    # a benchmark's records, read by the evaluation's loader
    "empty benchmark": Case("benchmark", "[]", ("tiny_temporal", "eval.json", "the benchmark is empty")),
    "question path ../": Case("question", {"path": ESCAPE}, ("question vid-3", f"'{ESCAPE}'", "leaves the media folder")),
    "question path absolute": Case("question", {"path": "/etc/passwd"}, ("question vid-3", "is absolute")),
    "question ./ path ../": Case("question", {"path": "./../x.mp4"}, ("question vid-3", "leaves the media folder")),
    # where a clip or an image is opened
    "clip path ../": Case("media", {"path": ESCAPE}, (f"'{ESCAPE}'", "leaves the media folder")),
    "clip path absolute": Case("media", {"path": "/etc/passwd"}, ("'/etc/passwd'", "is absolute")),
    "image path ../": Case("media", {"data_type": "image", "images": [ESCAPE]}, ("image 1", "leaves the media folder")),
    "image bytes corrupt": Case("media", {"data_type": "image", "images": [b"not a png"]}, ("image 1", "cannot read")),
    "corrupt clip opened": Case("media", {"path": "corrupt.mp4"}, ("corrupt.mp4",)),
    # an evaluation summary, as a table reads it
    "summary not JSON": Case("summary", "{oops", ("f8.summary.json", "corrupt evaluation summary", "not valid JSON")),
    "summary a list": Case("summary", "[]", ("f8.summary.json", "not an object")),
    "summary without accuracy": Case("summary", '{"model": "m", "benchmark": "b", "frames": 8}',
                                     ("f8.summary.json", "no accuracy")),
    "summary copied over another's": Case("summary", '{"model": "grpo", "benchmark": "b", "frames": 8, "accuracy": 0.5}',
                                          ("f8.summary.json", "holds the summary of model 'grpo' on b at 8 frames",
                                           "not of 'm' on b at 8 frames")),
    # a checkpoint cut off while it was written
    "checkpoint without state": Case("checkpoint", ("trainer_state.json", "delete"),
                                     ("checkpoint-2", "trainer_state.json missing")),
    "checkpoint state of another step": Case("checkpoint", ("trainer_state.json", '{"global_step": 1}'),
                                             ("checkpoint-2", "says step 1")),
    "checkpoint weights cut off": Case("checkpoint", ("model.safetensors", "truncate"), ("checkpoint-2", "model.safetensors")),
    "checkpoint without optimizer": Case("checkpoint", ("optimizer.pt", "delete"), ("checkpoint-2", "optimizer.pt")),
    "checkpoint without rng state": Case("checkpoint", ("rng_state.pth", "delete"), ("checkpoint-2", "rng_state.pth")),
}


# ------------------------------------------------------------------------------------------------------- runners


def _merge(base, patch):
    for k, v in patch.items():
        base[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def run_config(patch, ctx):
    from videoktr.config import ConfigError, validate

    with pytest.raises(ConfigError) as e:
        validate(_merge(yaml.safe_load(open("config/config.yaml")), copy.deepcopy(patch)))
    return str(e.value)


def _prepare(split, ctx):
    from videoktr.data.records import BadDataError, prepare

    with pytest.raises(BadDataError) as e:
        prepare(split, ctx["media"], ctx["tmp"] / "clean.json", ctx["tmp"] / "skipped.json", video_cfg=VIDEO_CFG,
                max_bad_fraction=0.0)
    return str(e.value)


def run_split(text, ctx):
    (ctx["tmp"] / "train.json").write_text(text)
    return _prepare(ctx["tmp"] / "train.json", ctx)


def _pair(ctx, patch):
    """[good record vid-1, the patched one vid-3]; a patch value None removes the field."""
    good = dict(ctx["record"], problem_id="vid-1")
    bad = dict(ctx["record"], problem_id="vid-3")
    bad.update(patch)
    return [good, {k: v for k, v in bad.items() if v is not None}]


def run_record(patch, ctx):
    return run_split(json.dumps(_pair(ctx, patch)), ctx)


def run_benchmark(text, ctx):
    from videoktr.data.records import BadDataError
    from videoktr.eval.benchmarks import load_benchmark

    (ctx["tmp"] / "eval.json").write_text(text)
    with pytest.raises(BadDataError) as e:
        load_benchmark("tiny_temporal", ctx["tmp"] / "eval.json", ctx["media"])
    return str(e.value)


def run_question(patch, ctx):
    from videoktr.eval.benchmarks import load_benchmark

    (ctx["tmp"] / "eval.json").write_text(json.dumps(_pair(ctx, patch)))
    loaded = load_benchmark("tiny_temporal", ctx["tmp"] / "eval.json", ctx["media"])
    assert [r["problem_id"] for r in loaded.records] == ["vid-1"]
    (p,) = loaded.problems
    return f"question {p['id']}: {p['reason']}"  # as videoktr.eval.evaluate logs it and writes its error row


def run_media(patch, ctx):
    from videoktr.data.model_inputs import load_frames
    from videoktr.data.video import VideoError
    from videoktr.eval.image_benchmarks import MediaError, load_images

    record = dict(ctx["record"], **patch)
    with pytest.raises((VideoError, MediaError)) as e:
        if record["data_type"] == "image":
            load_images(record, ctx["media"])
        else:
            load_frames(record, ctx["media"], VIDEO_CFG)
    return str(e.value)


def run_summary(text, ctx):
    from videoktr.report.summaries import load_summaries

    path = ctx["tmp"] / "eval/m/b/f8.summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(SystemExit) as e:
        load_summaries([path])
    return str(e.value)


def run_checkpoint(change, ctx):
    import torch
    from safetensors.torch import save_file

    from videoktr.rl.run import checkpoint_problem

    ckpt = ctx["tmp"] / "checkpoints/checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text('{"global_step": 2}')
    save_file({"w": torch.zeros(64)}, str(ckpt / "model.safetensors"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"x": torch.zeros(64)}, ckpt / name)
    assert checkpoint_problem(ckpt) is None  # complete before the change
    name, what = change
    if what == "delete":
        (ckpt / name).unlink()
    elif what == "truncate":
        (ckpt / name).write_bytes((ckpt / name).read_bytes()[:40])
    else:
        (ckpt / name).write_text(what)
    return f"{ckpt.name}: {checkpoint_problem(ckpt)}"


RUNNERS = {"config": run_config, "split": run_split, "record": run_record, "benchmark": run_benchmark,
           "question": run_question, "media": run_media,
           "summary": run_summary, "checkpoint": run_checkpoint}


@pytest.fixture(scope="module")
def media(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    (root / "videos").symlink_to(world / "videos", target_is_directory=True)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    return root


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_gives_one_line_naming_the_item_and_the_reason(name, world, media, tmp_path):
    case = CASES[name]
    record = next(r for r in records(world) if r["problem_type"] == "multiple choice")
    message = RUNNERS[case.kind](case.input, {"tmp": tmp_path, "media": media, "record": record})
    assert "\n" not in message.strip(), message
    for part in case.names:
        assert part in message, f"{name}: {part!r} not in {message!r}"


def test_every_kind_has_a_runner():
    assert {c.kind for c in CASES.values()} <= set(RUNNERS)


def test_the_good_records_pass_through_a_symlinked_media_folder(world, media, tmp_path):
    from videoktr.data.records import prepare

    recs = records(world)
    stats = prepare(world / "train.json", media, tmp_path / "c.json", tmp_path / "s.json", video_cfg=VIDEO_CFG,
                    max_bad_fraction=0.0)
    assert stats == {"records": len(recs), "kept": len(recs), "skipped": 0}
