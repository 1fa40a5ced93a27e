import json
import shutil

import pytest

from conftest import VIDEO_CFG, records
from videoktr.data.records import BadDataError, prepare


def _bad_world(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world, data)
    recs = records(data)
    recs[0]["path"] = "videos/does_not_exist.mp4"                      # missing video
    (data / recs[1]["path"]).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # corrupt MP4
    del recs[2]["solution"]                                            # malformed record
    recs[3]["problem_type"] = "essay"                                  # unknown problem type
    recs.append("not a record")
    (data / "train.json").write_text(json.dumps(recs))
    return data, recs


def test_bad_items_are_reported_by_id_and_reason_and_the_rest_goes_on(world, tmp_path):
    data, recs = _bad_world(world, tmp_path)
    out, skipped = tmp_path / "clean.json", tmp_path / "skipped.json"
    stats = prepare(data / "train.json", data, out, skipped, video_cfg=VIDEO_CFG, max_bad_fraction=0.5)
    bad = {s["id"]: s["reason"] for s in json.loads(skipped.read_text())}
    ids = [str(r["problem_id"]) for r in recs[:4]]
    assert "does_not_exist.mp4" in bad[ids[0]]
    assert recs[1]["path"] in bad[ids[1]]
    assert "solution" in bad[ids[2]]
    assert "essay" in bad[ids[3]]
    assert "not a JSON object" in bad[f"#{len(recs) - 1}"]
    kept = json.loads(out.read_text())
    assert len(kept) == len(recs) - 5 == stats["kept"]
    assert {r["problem_id"] for r in kept} == {r["problem_id"] for r in recs[4:-1]}


def test_too_many_bad_records_fail_with_the_reasons(world, tmp_path):
    data, _ = _bad_world(world, tmp_path)
    with pytest.raises(BadDataError, match="does_not_exist.mp4"):
        prepare(data / "train.json", data, tmp_path / "c.json", tmp_path / "s.json", video_cfg=VIDEO_CFG,
                max_bad_fraction=0.05)
    assert json.loads((tmp_path / "s.json").read_text())  # the list is written even when the step fails


def test_unreadable_json_is_one_clear_error(tmp_path):
    (tmp_path / "train.json").write_text("[{oops")
    with pytest.raises(BadDataError, match="train.json: cannot read"):
        prepare(tmp_path / "train.json", tmp_path, tmp_path / "c.json", tmp_path / "s.json", video_cfg=VIDEO_CFG,
                max_bad_fraction=0.05)


def test_a_readable_clip_outside_the_media_folder_is_never_opened(world, tmp_path):
    """A decodable clip one level up: prepare refuses the record, and load_frames the path, before any decoding."""
    from videoktr.data.model_inputs import load_frames
    from videoktr.data.video import VideoError

    recs = records(world)
    media = tmp_path / "media"
    shutil.copytree(world / "videos", media / "videos")
    shutil.copy(world / recs[0]["path"], tmp_path / "outside.mp4")
    recs[0]["path"] = "../outside.mp4"
    recs[1]["path"] = str(tmp_path / "outside.mp4")
    (tmp_path / "train.json").write_text(json.dumps(recs))
    prepare(tmp_path / "train.json", media, tmp_path / "c.json", tmp_path / "s.json", video_cfg=VIDEO_CFG,
            max_bad_fraction=0.5)
    bad = {s["id"]: s["reason"] for s in json.loads((tmp_path / "s.json").read_text())}
    assert bad == {str(recs[0]["problem_id"]): "path '../outside.mp4' leaves the media folder",
                   str(recs[1]["problem_id"]): f"path '{recs[1]['path']}' is absolute; a record's path is relative "
                                               "to its media folder"}
    for record in recs[:2]:
        with pytest.raises(VideoError, match="leaves the media folder|is absolute"):
            load_frames(record, media, VIDEO_CFG)


@pytest.mark.parametrize("path, norm", [("videos/a.mp4", "videos/a.mp4"), ("./videos/a.mp4", "videos/a.mp4"),
                                        ("videos/x/../a.mp4", "videos/a.mp4"), ("a..b.mp4", "a..b.mp4")])
def test_paths_inside_the_media_folder_are_kept(path, norm):
    from videoktr.data.records import check_media_path

    assert check_media_path(path) == norm
