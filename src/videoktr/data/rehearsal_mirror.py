"""A local hub for rehearsing the paper study on CPU: every repository config/paper.yaml downloads, in its published
layout, with made-up but well-formed contents (`videoktr rehearsal-mirror --out DIR`).

    <out>/<repo>/<file>     as data.mirror, model.mirror, sft_models.<name>.mirror, released.<name>.mirror and
                            eval.mirror read it (videoktr.data.hub.fetch)

- the RL data (config data.hub): Video-R1/Video-R1-data (Video-R1-260k.json: video rows of several problem types,
  one image row, clips in <Source>/<Source>_partN.zip) and TencentARC/Video-Holmes
  (Benchmark/train_Video-Holmes.json, Benchmark/videos.zip -> Benchmark/videos_cropped/<video ID>.mp4);
- the nine benchmarks (config eval.hub) in their published layouts, from tests/fixtures/benchmarks (malformed rows,
  missing clips and one zip that is not a zip included: `build_benchmark_mirror`, also used by
  tests/test_bench_hub.py);
- the checkpoints (config model, sft_models, released): tiny weights, but the processor and model config of the real
  Qwen2.5-VL (patch 14, merge 2, temporal patch 2, min/max pixels 3136/12845056, vision and video token ids
  151652-151656, vocabulary 152064) and the hub's file names (config.json, generation_config.json,
  preprocessor_config.json, chat_template.json, tokenizer.json, tokenizer_config.json, vocab.json, merges.txt,
  model-0000N-of-0000M.safetensors + model.safetensors.index.json).

The clips are shaped like the real ones (640x360 and 1280x720, landscape and portrait, 24-30 fps, 3-60 s) and tiny in
bytes (few distinct frames, a high CRF); one training clip is corrupt (a truncated MP4), as real data has.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests/fixtures/benchmarks"
PAPER_CONFIG = ROOT / "config/paper.yaml"

# Qwen2.5-VL's tokenizer: 151643 byte-level BPE entries, then these added tokens (ids 151643..151664), vocabulary
# (embedding rows) padded to 152064.
QWEN_BASE_VOCAB = 151643
QWEN_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
              "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
              "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
              "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
QWEN_IDS = {t: QWEN_BASE_VOCAB + i for i, t in enumerate(QWEN_ADDED)}
QWEN_VOCAB_SIZE = 152064
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 3136, 12845056
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# Clips as the real ones come: (width, height, fps, seconds). Tiny in bytes: one distinct picture every 2 s.
CLIP_SHAPES = [(640, 360, 30, 3), (1280, 720, 24, 12), (360, 640, 30, 5), (1280, 720, 25, 60),
               (640, 360, 24, 20), (720, 1280, 30, 8), (640, 360, 25, 30), (1280, 720, 30, 4)]
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}


# ------------------------------------------------------------------------------------------------------ clips


def write_clip(path: Path, width: int, height: int, fps: int, seconds: float, seed: int) -> dict:
    """An H.264 MP4 of `seconds` at `fps`: a coloured square that jumps every 2 s on a plain background. Returns
    what it shows (colour, positions) for the questions."""
    import av

    rng = np.random.default_rng(seed)
    bg = rng.integers(30, 120, 3).astype(np.uint8)
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    side = min(width, height) // 4
    n = int(round(fps * seconds))
    changes = max(1, int(np.ceil(seconds / 2)))
    spots = [(int(rng.integers(0, height - side)), int(rng.integers(0, width - side))) for _ in range(changes)]
    pictures = []
    for y, x in spots:
        img = np.empty((height, width, 3), np.uint8)
        img[:] = bg
        img[y:y + side, x:x + side] = COLOURS[colour]
        pictures.append(img)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps),
                                      options={"preset": "ultrafast", "crf": "45", "g": str(10 * fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        frames = {}
        for i in range(n):
            k = min(i // (2 * fps), changes - 1)
            if k not in frames:
                frames[k] = av.VideoFrame.from_ndarray(pictures[k], format="rgb24")
            frame = frames[k]
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return {"colour": colour, "moves": changes - 1, "width": width, "height": height, "fps": fps,
            "seconds": seconds}


def corrupt_clip(path: Path, good: Path) -> None:
    """A truncated copy of a good clip: its header promises frames that are not there."""
    data = good.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: max(64, len(data) // 5)])


# ------------------------------------------------------------------------------------------------- questions


def _mc(rng, stem: str, right: str, wrong: list[str]) -> tuple[list[str], str]:
    opts = [right, *wrong[:3]]
    rng.shuffle(opts)
    letters = "ABCD"
    return [f"{letters[i]}. {o}" for i, o in enumerate(opts)], letters[opts.index(right)]


def video_r1_rows(clips: dict[str, dict], rng) -> list[dict]:
    """Video-R1-260k rows (its fields and problem types) about each clip: colour (multiple choice), moves
    (numerical), orientation (multiple choice), duration (regression), the colour's name (free-form)."""
    rows, pid = [], 0
    for path, info in clips.items():
        others = [c for c in COLOURS if c != info["colour"]]
        opts, ans = _mc(rng, "", info["colour"], others)
        portrait = info["height"] > info["width"]
        oopts, oans = _mc(rng, "", "portrait" if portrait else "landscape",
                          ["landscape" if portrait else "portrait", "square", "circular"])
        source = path.split("/")[1]
        for ptype, problem, options, answer in [
            ("multiple choice", "What colour is the square in the video?", opts, ans),
            ("numerical", "How many times does the square jump to a new place?", [], str(info["moves"])),
            ("multiple choice", "Is the video in landscape or portrait format?", oopts, oans),
            ("regression", "How long is the video, in seconds?", [], f"{info['seconds']:.1f}"),
            ("free-form", "Name the colour of the moving square in one word.", [], info["colour"]),
        ]:
            pid += 1
            rows.append({"problem_id": pid, "problem": problem, "data_type": "video", "problem_type": ptype,
                         "options": options, "process": "<think>Look at the square.</think>",
                         "solution": f"<answer>{answer}</answer>", "path": path,
                         "data_source": f"{source}/rehearsal"})
    return rows


def holmes_rows(clips: dict[str, dict], rng) -> list[dict]:
    """train_Video-Holmes.json rows: "video ID", "Question ID", "Question Type", "Question", "Options", "Answer"."""
    rows = []
    for vid, info in clips.items():
        for qtype, question, right, wrong in [
            ("SR", "Why does the square keep moving?", "It is looking for a place to rest",
             ["It is chased", "The wind pushes it", "It never moves"]),
            ("TCI", "What colour is the square?", info["colour"], [c for c in COLOURS if c != info["colour"]]),
            ("MHR", "What shape jumps around the frame?", "a square", ["a circle", "a star", "a triangle"]),
        ]:
            opts = [right, *wrong[:3]]
            rng.shuffle(opts)
            rows.append({"video ID": vid, "Question ID": f"{vid}_{qtype}_1", "Question Type": qtype,
                         "Question": question, "Options": {"ABCD"[i]: o for i, o in enumerate(opts)},
                         "Answer": "ABCD"[opts.index(right)], "Explanation": "made up for the rehearsal"})
    return rows


def _zip(path: Path, members: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for arcname, src in members.items():
            z.write(src, arcname)


def build_training_mirror(root: Path, data_hub: dict, *, seed: int = 0) -> dict:
    """data.hub's two datasets under `root` in their published layouts; returns counts."""
    rng = np.random.default_rng(seed)
    work = root / ".clips"
    # Video-R1-260k: two sources, the first in two zip parts; one corrupt clip; one image row (dropped on conversion)
    vr1 = root / data_hub["video_r1"]["repo"]
    vr1.mkdir(parents=True, exist_ok=True)
    parts = {"CLEVRER": [[0, 1], [2]], "STAR": [[3, 4]]}
    clips, members = {}, {}
    for source, groups in parts.items():
        for p, group in enumerate(groups, start=1):
            zip_members = {}
            for i in group:
                w, h, fps, sec = CLIP_SHAPES[i]
                name = f"video_{i:04d}.mp4"
                clip = work / source / name
                clips[f"./{source}/{name}"] = write_clip(clip, w, h, fps, sec, seed * 1000 + i)
                zip_members[name] = clip
            members[f"{source}/{source}_part{p}.zip"] = zip_members
    bad = work / "STAR/video_0099.mp4"
    corrupt_clip(bad, work / "STAR/video_0003.mp4")
    members["STAR/STAR_part1.zip"]["video_0099.mp4"] = bad
    for rel, zm in members.items():
        _zip(vr1 / rel, zm)
    rows = video_r1_rows(clips, rng)
    rows.append({"problem_id": len(rows) + 1, "problem": "What colour is the square?", "data_type": "video",
                 "problem_type": "multiple choice", "options": ["A. red", "B. blue"], "process": "",
                 "solution": "<answer>A</answer>", "path": "./STAR/video_0099.mp4", "data_source": "STAR/rehearsal"})
    rows.append({"problem_id": len(rows) + 1, "problem": "What is written on the sign?", "data_type": "image",
                 "problem_type": "OCR", "options": [], "process": "", "solution": "<answer>stop</answer>",
                 "path": "./Spatial/img_0001.jpg", "data_source": "Spatial/rehearsal"})
    (vr1 / data_hub["video_r1"]["records"]).write_text(json.dumps(rows, indent=1))
    # Video-Holmes train: Benchmark/train_Video-Holmes.json, Benchmark/videos.zip -> videos_cropped/<video ID>.mp4
    src = data_hub["video_holmes"]
    holmes = root / src["repo"]
    hclips, hmembers = {}, {}
    inner = Path(src["video_dir"]).relative_to(Path(src["media"][0]).parent)  # videos_cropped
    for j, i in enumerate((5, 6, 7)):
        w, h, fps, sec = CLIP_SHAPES[i]
        vid = f"film{j + 1:03d}"
        clip = work / "holmes" / f"{vid}.mp4"
        hclips[vid] = write_clip(clip, w, h, fps, sec, seed * 1000 + 100 + i)
        hmembers[f"{inner}/{vid}.mp4"] = clip
    _zip(holmes / src["media"][0], hmembers)
    hrows = holmes_rows(hclips, rng)
    (holmes / src["records"]).parent.mkdir(parents=True, exist_ok=True)
    (holmes / src["records"]).write_text(json.dumps(hrows, indent=1))
    shutil.rmtree(work)
    return {"video_r1_rows": len(rows), "video_r1_clips": len(clips) + 1, "holmes_questions": len(hrows),
            "holmes_clips": len(hclips)}


# ------------------------------------------------------------------------------------------------ benchmarks


def _bench_zip(path: Path, members: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for arcname, src in members.items():
            z.write(src, arcname)


def build_benchmark_mirror(root: Path, hub: dict, fixtures: Path = FIXTURES, *, realistic_clips: bool = False,
                           seed: int = 0) -> Path:
    """<root>/<repo>/<file> for each benchmark of `hub` (config eval.hub), in the published layout its entry names
    (records files, clips or clip archives), from the fixtures of tests/fixtures/benchmarks. `realistic_clips`: each
    fixture clip is replaced by one of the real shapes (write_clip) under the same name."""
    root = Path(root)
    counter = iter(range(10_000))

    def clip(src: Path) -> Path:
        if not realistic_clips:
            return src
        i = next(counter)
        w, h, fps, sec = CLIP_SHAPES[i % len(CLIP_SHAPES)]
        sec = min(sec, 30)  # a 60 s clip decoded at 16, 32 and 64 frames by every evaluation: one is enough
        out = root / ".clips" / f"{i}_{src.name}"
        write_clip(out, w, h, fps, sec, seed * 1000 + 500 + i)
        return out

    def repo(name):
        d = root / hub[name]["repo"]
        d.mkdir(parents=True, exist_ok=True)
        return d

    def copy_clips(src_dir: Path, dst_dir: Path):
        for p in sorted(src_dir.rglob("*.mp4")):
            out = dst_dir / p.relative_to(src_dir)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(clip(p), out)

    fix = Path(fixtures)
    if "video_holmes" in hub:  # test_Video-Holmes.json, videos.zip -> videos_cropped/<video ID>.mp4
        d = repo("video_holmes")
        shutil.copy(fix / "video_holmes/test_Video-Holmes.json", d)
        _bench_zip(d / "videos.zip", {f"videos_cropped/{p.name}": clip(p)
                                      for p in sorted((fix / "video_holmes/videos").glob("*.mp4"))})
    if "videommmu" in hub:  # <Track>/test-*.parquet, <Discipline>.zip -> <Discipline>/<id>.mp4
        d = repo("videommmu")
        for track in ("Perception", "Comprehension", "Adaptation"):
            shutil.copytree(fix / "videommmu" / track, d / track)
        shutil.copytree(fix / "videommmu/Comprehension", d / "Comprehension_Engineering")  # not a track: never read
        _bench_zip(d / "Science.zip", {"Science/dev_Biology_3.mp4": clip(fix / "videommmu/videos/Science/dev_Biology_3.mp4"),
                                       "Science/test_Math_7.mp4": clip(fix / "videommmu/videos/test_Math_7.mp4")})
        (d / "Art.zip").write_bytes(b"this is not a zip archive")
    if "mmvu" in hub:  # validation.json, videos/<Subject>/<n>.mp4 as plain files
        d = repo("mmvu")
        shutil.copy(fix / "mmvu/validation.json", d)
        copy_clips(fix / "mmvu/videos", d / "videos")
    if "tempcompass" in hub:  # multi-choice/*.parquet (and another split, not fetched), tempcompass_videos.zip
        d = repo("tempcompass")
        shutil.copytree(fix / "tempcompass/multi-choice", d / "multi-choice")
        shutil.copytree(fix / "tempcompass/multi-choice", d / "yes_no")
        _bench_zip(d / "tempcompass_videos.zip", {f"videos/{p.name}": clip(p)
                                                  for p in sorted((fix / "tempcompass/videos").glob("*.mp4"))})
    if "videomme" in hub:  # videomme/test-*.parquet, videos_chunked_NN.zip -> data/<videoID>.mp4, subtitle.zip
        d = repo("videomme")
        shutil.copytree(fix / "videomme/videomme", d / "videomme")
        _bench_zip(d / "videos_chunked_01.zip", {"data/fFjv93ACGo8.mp4": clip(fix / "videomme/data/fFjv93ACGo8.mp4")})
        (d / "videos_chunked_02.zip").write_bytes(b"PK\x03\x04 truncated")  # would hold data/mediumClip01.mp4
        (d / "subtitle.zip").write_bytes(b"not fetched")
    if "mmmu" in hub:  # <Subject>/{dev,validation,test}-*.parquet
        d = repo("mmmu")
        for subject in ("Art", "Math"):
            shutil.copytree(fix / "mmmu" / subject, d / subject)
            shutil.copy(d / subject / "validation-00000-of-00001.parquet", d / subject / "dev-00000-of-00001.parquet")
    if "ai2d" in hub:
        shutil.copytree(fix / "ai2d/data", repo("ai2d") / "data")
    if "mmstar" in hub:
        shutil.copy(fix / "mmstar/mmstar.parquet", repo("mmstar"))
    if "chartqa" in hub:
        shutil.copytree(fix / "chartqa/data", repo("chartqa") / "data")
    shutil.rmtree(root / ".clips", ignore_errors=True)
    return root


# ------------------------------------------------------------------------------------------------ checkpoints


def qwen_tokenizer(texts: list[str], *, merges_vocab: int = 2048):
    """A byte-level BPE trained on `texts`, padded with never-produced entries to Qwen2.5's 151643 base entries, then
    Qwen2.5-VL's added tokens at their ids (151643 <|endoftext|> ... 151652 <|vision_start|>, 151653 <|vision_end|>,
    151655 <|image_pad|>, 151656 <|video_pad|>)."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    from videoktr.models.tiny import CHAT_TEMPLATE

    small = Tokenizer(models.BPE())
    small.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    small.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=merges_vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    spec = json.loads(small.to_str())
    vocab: dict = spec["model"]["vocab"]
    merges = spec["model"]["merges"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    i = 0
    while len(vocab) < QWEN_BASE_VOCAB:  # three-character fillers: valid byte-level strings no merge produces
        a, b, c = alphabet[i % 256], alphabet[(i // 256) % 256], alphabet[(i // 65536) % 256]
        i += 1
        tok = "\u0100" + a + b + c  # begins with 'Ā', so no learned merge yields it
        if tok not in vocab:
            vocab[tok] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_ADDED])
    got = {t: tok.token_to_id(t) for t in QWEN_ADDED}
    if got != QWEN_IDS:
        raise RuntimeError(f"added-token ids differ from Qwen2.5-VL's: {got}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=QWEN_ADDED[1:14])
    fast.image_token, fast.video_token = "<|image_pad|>", "<|video_pad|>"
    fast.vision_start_token, fast.vision_end_token = "<|vision_start|>", "<|vision_end|>"
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 131072
    return fast, vocab, merges


def qwen_model(*, hidden_size: int, layers: int, heads: int, vision_hidden: int, vision_depth: int,
               out_hidden: int | None = None, seed: int = 0):
    """A random-init Qwen2.5-VL with the real config's structure and ids, tiny widths."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    head_dim = hidden_size // heads
    pairs = head_dim // 2
    hw = pairs * 3 // 8
    text_config = dict(
        vocab_size=QWEN_VOCAB_SIZE, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [pairs - 2 * hw, hw, hw]},
        bos_token_id=QWEN_IDS["<|endoftext|>"], eos_token_id=QWEN_IDS["<|im_end|>"],
        pad_token_id=QWEN_IDS["<|endoftext|>"], tie_word_embeddings=True,
    )
    vision_config = dict(
        depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
        num_heads=max(1, vision_hidden // 16), out_hidden_size=out_hidden or hidden_size, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=112, tokens_per_second=2,
        fullatt_block_indexes=[vision_depth - 1],
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, image_token_id=QWEN_IDS["<|image_pad|>"],
        video_token_id=QWEN_IDS["<|video_pad|>"], vision_start_token_id=QWEN_IDS["<|vision_start|>"],
        vision_end_token_id=QWEN_IDS["<|vision_end|>"], vision_token_id=QWEN_IDS["<|vision_pad|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    g = model.generation_config
    g.eos_token_id = [QWEN_IDS["<|im_end|>"], QWEN_IDS["<|endoftext|>"]]
    g.pad_token_id = QWEN_IDS["<|endoftext|>"]
    g.bos_token_id = QWEN_IDS["<|endoftext|>"]
    g.do_sample, g.temperature, g.top_p, g.top_k, g.repetition_penalty = True, 0.1, 0.001, 1, 1.05
    return model


def format_warmup(model, tokenizer, texts: list[tuple[str, str]], *, steps: int, lr: float = 1e-2,
                  batch: int = 8, seed: int = 0) -> list[float]:
    """A few text-only steps teaching the <think>..</think><answer>..</answer> reply format (no video), so that the
    sampled answers parse and spread over the options as an SFT model's would: the difficulty filter then sees
    questions in its band. The LM head (152064 rows) runs on the reply tokens only. Returns the losses."""
    import torch

    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    losses = []
    tokenizer.padding_side = "right"
    for _ in range(steps):
        pairs = [texts[i] for i in rng.choice(len(texts), size=min(batch, len(texts)), replace=False)]
        enc = tokenizer([p + t for p, t in pairs], return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        target = torch.zeros_like(mask, dtype=torch.bool)  # positions whose NEXT token is a reply token
        for row, (p, _) in enumerate(pairs):
            start, end = len(tokenizer(p)["input_ids"]), int(mask[row].sum())
            target[row, start - 1:end - 1] = True
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[target])
        labels = ids[:, 1:][target[:, :-1]]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def save_checkpoint(out: Path, model, tokenizer, vocab: dict, merges: list, *, shards: int = 2) -> list[str]:
    """The checkpoint under the hub's file names: sharded safetensors (bfloat16, as released) with their index,
    config.json, generation_config.json, preprocessor_config.json, chat_template.json, tokenizer files."""
    import torch
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from videoktr.models.tiny import CHAT_TEMPLATE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    nbytes = sum(p.numel() for p in model.parameters()) * 2
    model.to(torch.bfloat16).save_pretrained(out, max_shard_size=max(nbytes // shards + (1 << 20), 1 << 20))
    model.to(torch.float32)
    size = {"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS}
    common = dict(size=size, patch_size=14, temporal_patch_size=2, merge_size=2, image_mean=IMAGE_MEAN,
                  image_std=IMAGE_STD)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**common), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(**common, do_sample_frames=False),
                                    chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out)
    # the hub's layout of a Qwen2.5-VL checkpoint: preprocessor_config.json (the image processor's keys, which the
    # video processor also reads, plus the legacy min_pixels/max_pixels) and chat_template.json, no processor_config
    saved = json.loads((out / "processor_config.json").read_text()) if (out / "processor_config.json").exists() else {}
    spec = dict(saved.get("image_processor") or processor.image_processor.to_dict())
    spec.update(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS, patch_size=14, temporal_patch_size=2,
                merge_size=2, processor_class="Qwen2_5_VLProcessor", image_processor_type="Qwen2VLImageProcessor")
    for name in ("processor_config.json", "chat_template.jinja", "video_preprocessor_config.json"):
        (out / name).unlink(missing_ok=True)
    (out / "preprocessor_config.json").write_text(json.dumps(spec, indent=2))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return sorted(p.name for p in out.iterdir())


def build_model_mirror(root: Path, repos: dict[str, dict], texts: list[tuple[str, str]], *, seed: int = 0,
                       warmup_steps: int = 25) -> dict:
    """One folder per repo ({repo: size kwargs}); repos of the same size share one warmed-up model."""
    tokenizer, vocab, merges = qwen_tokenizer([p + t for p, t in texts])
    built, files = {}, {}
    for repo, size in repos.items():
        key = json.dumps(size, sort_keys=True)
        if key not in built:
            model = qwen_model(**size, seed=seed)
            losses = format_warmup(model, tokenizer, texts, steps=warmup_steps, seed=seed) if warmup_steps else []
            log.info("model %s: %d parameters, warm-up loss %s -> %s", key, sum(p.numel() for p in model.parameters()),
                     f"{losses[0]:.2f}" if losses else "-", f"{losses[-1]:.2f}" if losses else "-")
            built[key] = model
        files[repo] = save_checkpoint(Path(root) / repo, built[key], tokenizer, vocab, merges)
    return files


# ------------------------------------------------------------------------------------------------------ all


SIZE_7B = dict(hidden_size=64, layers=2, heads=4, vision_hidden=32, vision_depth=2)
SIZE_3B = dict(hidden_size=48, layers=2, heads=3, vision_hidden=32, vision_depth=2)


def warmup_texts(records: list[dict]) -> list[tuple[str, str]]:
    """(prompt, reply) pairs: the evaluation/training prompt without its clip, and a reply in the think/answer
    format whose answer is a random option (or a plausible number/word), as a weak SFT model's would be."""
    from videoktr.data.prompts import build_question

    rng = np.random.default_rng(0)
    out = []
    for r in records:
        opts = r.get("options") or []
        if opts:
            ans = str(opts[int(rng.integers(len(opts)))]).split(".")[0]
        elif r["problem_type"] in ("numerical", "regression"):
            ans = str(int(rng.integers(0, 30)))
        else:
            ans = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        prompt = ("<|im_start|>user\n<|vision_start|><|vision_end|>" + build_question(r)
                  + "<|im_end|>\n<|im_start|>assistant\n")
        out.append((prompt, f"<think>I look at the clip.</think><answer>{ans}</answer><|im_end|>"))
    return out


def build_rehearsal_mirror(out: Path, config: dict | None = None, *, seed: int = 0, warmup_steps: int = 25) -> dict:
    """Every repository `config` (default config/paper.yaml) downloads, under `out`; returns a summary."""
    import yaml

    from videoktr.data.hub import video_holmes_records, video_r1_records

    config = config or yaml.safe_load(PAPER_CONFIG.read_text())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"data": build_training_mirror(out, config["data"]["hub"], seed=seed)}
    build_benchmark_mirror(out, config["eval"]["hub"], realistic_clips=True, seed=seed)
    summary["benchmarks"] = sorted(config["eval"]["hub"])
    # the records the models are warmed up on: the training questions in our record format
    dh = config["data"]["hub"]
    rows = json.loads((out / dh["video_r1"]["repo"] / dh["video_r1"]["records"]).read_text())
    hrows = json.loads((out / dh["video_holmes"]["repo"] / dh["video_holmes"]["records"]).read_text())
    records = video_r1_records(rows)[0] + video_holmes_records(hrows, dh["video_holmes"]["video_dir"])[0]
    repos = {config["model"]["hub"]["repo"]: SIZE_7B}
    for name, sec in (config.get("sft_models") or {}).items():
        repos[sec["hub"]["repo"]] = SIZE_3B if "3b" in name.lower() or "3B" in sec["hub"]["repo"] else SIZE_7B
    for name, sec in (config.get("released") or {}).items():
        if (sec.get("hub") or {}).get("repo") and not sec.get("mirror_from"):
            repos.setdefault(sec["hub"]["repo"], SIZE_7B)
    summary["models"] = build_model_mirror(out, repos, warmup_texts(records), seed=seed, warmup_steps=warmup_steps)
    (out / "rehearsal_mirror.json").write_text(json.dumps(summary, indent=1))
    return summary
