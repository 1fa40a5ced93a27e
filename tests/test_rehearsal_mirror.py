"""The local hub of every repository config/paper.yaml downloads (videoktr.data.rehearsal_mirror, `videoktr
rehearsal-mirror`): the training data in its published layout with clips of the real shapes (one corrupt), and
checkpoints with tiny weights but the real Qwen2.5-VL processor, config, token ids and file names. Also the video-input
sizes the train, filter and evaluation paths log (videoktr.data.model_inputs.video_input_stats)."""

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())


def test_video_input_stats_counts_frames_pixels_and_tokens():
    from videoktr.data.model_inputs import merge_video_stats, video_input_stats

    # 16 frames of 224x420 (8 temporal patches of 16x30 patches): 120 tokens a patch pair, 960 a clip
    one = video_input_stats([[8, 16, 30], [3, 16, 30]])
    assert one == {"clips": 2, "frames_max": 16, "pixels_per_frame_max": 16 * 30 * 196, "tokens_min": 360,
                   "tokens_mean": 660.0, "tokens_max": 960}
    both = merge_video_stats([one, video_input_stats([[8, 8, 8]]), None])
    assert both["clips"] == 3 and both["tokens_min"] == 128 and both["tokens_max"] == 960
    assert video_input_stats([]) is None


def test_training_mirror_has_the_published_layout_and_real_clip_shapes(tmp_path):
    import av

    from videoktr.data.hub import video_holmes_records, video_r1_records
    from videoktr.data.rehearsal_mirror import build_training_mirror

    hub = PAPER["data"]["hub"]
    counts = build_training_mirror(tmp_path, hub)
    vr1 = tmp_path / hub["video_r1"]["repo"]
    rows = json.loads((vr1 / hub["video_r1"]["records"]).read_text())
    recs, stats = video_r1_records(rows)
    assert stats["image_rows"] == 1 and len(recs) == counts["video_r1_rows"] - 1
    assert {r["problem_type"] for r in recs} >= {"multiple choice", "numerical", "regression", "free-form"}
    zips = sorted(str(p.relative_to(vr1)) for p in vr1.glob("*/*.zip"))
    assert zips == ["CLEVRER/CLEVRER_part1.zip", "CLEVRER/CLEVRER_part2.zip", "STAR/STAR_part1.zip"]
    holmes = tmp_path / hub["video_holmes"]["repo"]
    hrows = json.loads((holmes / hub["video_holmes"]["records"]).read_text())
    assert len(video_holmes_records(hrows, hub["video_holmes"]["video_dir"])[0]) == counts["holmes_questions"]
    import zipfile

    with zipfile.ZipFile(holmes / hub["video_holmes"]["media"][0]) as z:
        assert all(n.startswith("videos_cropped/") for n in z.namelist())
    shapes, corrupt = set(), 0
    for zp in [*vr1.glob("*/*.zip"), holmes / hub["video_holmes"]["media"][0]]:
        with zipfile.ZipFile(zp) as z:
            z.extractall(tmp_path / "x" / zp.stem)
    for clip in (tmp_path / "x").rglob("*.mp4"):
        try:
            with av.open(str(clip)) as c:
                s = c.streams.video[0]
                shapes.add((s.width, s.height, round(float(s.average_rate)), round(float(c.duration / 1e6))))
        except av.FFmpegError:
            corrupt += 1
    assert corrupt == 1
    assert {(w, h) for w, h, _, _ in shapes} >= {(640, 360), (1280, 720), (360, 640), (720, 1280)}
    assert {f for _, _, f, _ in shapes} <= {24, 25, 30} and max(d for *_, d in shapes) == 60
    assert sum(p.stat().st_size for p in tmp_path.rglob("*.zip")) < 2_000_000  # tiny in bytes


def test_the_mirror_checkpoint_is_a_qwen25vl_with_the_hubs_file_names(tmp_path):
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from videoktr.data.mirror_checkpoints import QWEN_IDS, format_warmup, qwen_model, qwen_tokenizer, save_checkpoint
    from videoktr.data.rehearsal_mirror import SIZE_3B

    texts = [("<|im_start|>user\nWhat colour? A. red B. blue<|im_end|>\n<|im_start|>assistant\n",
              "<think>x</think><answer>B</answer><|im_end|>")] * 4
    tok, vocab, merges = qwen_tokenizer([p + t for p, t in texts], merges_vocab=400)
    model = qwen_model(**SIZE_3B)
    losses = format_warmup(model, tok, texts, steps=2, batch=2)
    assert len(losses) == 2
    files = save_checkpoint(tmp_path, model, tok, vocab, merges)
    assert {"config.json", "generation_config.json", "preprocessor_config.json", "chat_template.json",
            "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "model.safetensors.index.json",
            "model-00001-of-00002.safetensors"} <= set(files), files
    pre = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert (pre["min_pixels"], pre["max_pixels"], pre["patch_size"], pre["merge_size"],
            pre["temporal_patch_size"]) == (3136, 12845056, 14, 2, 2)
    proc = AutoProcessor.from_pretrained(tmp_path)
    m = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32)
    c = m.config
    assert (c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id) == (
        151655, 151656, 151652, 151653)
    assert c.text_config.vocab_size == 152064 and c.vision_config.patch_size == 14
    assert c.vision_config.spatial_merge_size == 2 and c.vision_config.temporal_patch_size == 2
    for t, i in QWEN_IDS.items():
        assert proc.tokenizer.convert_tokens_to_ids(t) == i, t
    vp = proc.video_processor
    assert (vp.patch_size, vp.merge_size, vp.temporal_patch_size) == (14, 2, 2)
