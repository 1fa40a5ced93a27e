"""Downloads as rules: a local mirror built here (real files, real sha256), the fail-fast line without hub access, and
the hub data path of the DAG (download -> convert -> prepare_split) run through Snakemake on that mirror."""

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import records
from videoktr.data.hub import BadDownload, check_file, video_holmes_records, video_r1_records
from conftest import BIN, ENV, ROOT

SECRET = "hf_thisIsNotARealTokenButMustNeverBePrinted"


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, world):
    """The two datasets' hub layout with the tiny world's clips: Video-R1-260k.json (video and image rows) with
    `<Source>/<Source>_part1.zip`, and Video-Holmes' Benchmark/train_Video-Holmes.json with Benchmark/videos.zip."""
    root = tmp_path_factory.mktemp("mirror")
    recs = records(world)[:6]
    vr1 = root / "Video-R1/Video-R1-data"
    (vr1 / "CLEVRER").mkdir(parents=True)
    rows = [dict(r, path=f"./CLEVRER/{Path(r['path']).name}", problem_id=i) for i, r in enumerate(recs[:4])]
    rows.append({"problem_id": 99, "problem": "What is shown?", "data_type": "image", "problem_type": "OCR",
                 "options": [], "solution": "<answer>x</answer>", "path": "./Spatial/a.jpg", "data_source": "x"})
    (vr1 / "Video-R1-260k.json").write_text(json.dumps(rows))
    with zipfile.ZipFile(vr1 / "CLEVRER/CLEVRER_part1.zip", "w") as z:
        for r in recs[:4]:
            z.write(world / r["path"], Path(r["path"]).name)
    holmes = root / "TencentARC/Video-Holmes/Benchmark"
    holmes.mkdir(parents=True)
    hrows = []
    for j, r in enumerate(recs[4:6]):
        letters = [o.split(".")[0] for o in r["options"]]
        hrows.append({"video ID": f"clip{j}", "Question ID": 1, "Question Type": "TCI", "Question": r["problem"],
                      "Options": {k: o.split(". ", 1)[1] for k, o in zip(letters, r["options"])},
                      "Answer": r["solution"].replace("<answer>", "").replace("</answer>", "")})
    (holmes / "train_Video-Holmes.json").write_text(json.dumps(hrows))
    with zipfile.ZipFile(holmes / "videos.zip", "w") as z:
        for j, r in enumerate(recs[4:6]):
            z.write(world / r["path"], f"videos_cropped/clip{j}.mp4")
    return root


def data_cfg(mirror, **over) -> dict:
    return {
        "source": "hub", "max_bad_fraction": 0.05, "mirror": str(mirror), "retries": 2,
        "hub": {
            "video_r1": {"repo": "Video-R1/Video-R1-data", "type": "dataset", "revision": "a" * 40,
                         "format": "video_r1", "records": "Video-R1-260k.json", "media": ["*/*.zip"],
                         "video_dir": "videos", "sha256": {}},
            "video_holmes": {"repo": "TencentARC/Video-Holmes", "type": "dataset", "revision": "b" * 40,
                             "format": "video_holmes", "records": "Benchmark/train_Video-Holmes.json",
                             "media": ["Benchmark/videos.zip"], "video_dir": "Benchmark/videos_cropped",
                             "sha256": {}},
        },
        **over,
    }


def fetch(tmp_path, source, what="records", mirror=None, env=None, key="data.hub.video_r1", timeout=120):
    cfg = {"source": dict(source, config_key=key), "mirror": str(mirror) if mirror else None, "retries": 2}
    out = tmp_path / ("records.json" if what == "records" else "out")
    return subprocess.run([f"{BIN}/videoktr", "fetch", "--cfg", json.dumps(cfg), "--what", what, "--download-dir",
                           str(tmp_path / "files"), "--out", str(out), "--manifest", str(tmp_path / "manifest.json")],
                          env=env or ENV, capture_output=True, text=True, timeout=timeout)


def error_lines(res) -> list[str]:
    """The lines a failed command printed that are not log records (the CLI's own message)."""
    return [line for line in res.stderr.splitlines() if line.strip() and " INFO " not in line
            and " WARNING " not in line and " ERROR " not in line]


# ------------------------------------------------------------------------------------------------ the mirror


def test_mirror_fetch_links_the_files_and_records_their_real_sha256(tmp_path, mirror):
    src = data_cfg(mirror)["hub"]["video_r1"]
    good = mirror / "Video-R1/Video-R1-data/Video-R1-260k.json"
    res = fetch(tmp_path, dict(src, sha256={"Video-R1-260k.json": sha(good)}), mirror=mirror)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"]["Video-R1-260k.json"] == {"sha256": sha(good), "bytes": good.stat().st_size,
                                                       "checked": True}
    assert json.loads((tmp_path / "records.json").read_text()) == json.loads(good.read_text())
    # media: the archives are linked and unpacked next to where they lie (<Source>/)
    res = fetch(tmp_path, src, what="media", mirror=mirror)
    assert res.returncode == 0, res.stderr
    clips = sorted(p.name for p in (tmp_path / "files/CLEVRER").glob("*.mp4"))
    assert len(clips) == 4
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["extracted_now"] == ["CLEVRER/CLEVRER_part1.zip"]
    again = fetch(tmp_path, src, what="media", mirror=mirror)  # a rerun does not unpack twice
    assert again.returncode == 0 and json.loads((tmp_path / "manifest.json").read_text())["extracted_now"] == []


def test_a_corrupted_file_is_detected_with_one_line(tmp_path, mirror):
    src = data_cfg(mirror)["hub"]["video_r1"]
    bad = tmp_path / "mirror/Video-R1/Video-R1-data"
    shutil.copytree(mirror / "Video-R1/Video-R1-data", bad)
    expected = sha(bad / "Video-R1-260k.json")
    with open(bad / "Video-R1-260k.json", "r+b") as f:  # one flipped byte, same size
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 1]))
    res = fetch(tmp_path, dict(src, sha256={"Video-R1-260k.json": expected}), mirror=tmp_path / "mirror")
    assert res.returncode != 0
    (line,) = error_lines(res)
    assert "Video-R1/Video-R1-data/Video-R1-260k.json" in line and "sha256" in line and expected in line
    # an empty file and a broken archive are named too
    (bad / "Video-R1-260k.json").write_bytes(b"")
    with pytest.raises(BadDownload, match="empty"):
        check_file(bad / "Video-R1-260k.json")
    (bad / "CLEVRER/CLEVRER_part1.zip").write_bytes(b"not a zip")
    res = fetch(tmp_path / "m2", src, what="media", mirror=tmp_path / "mirror")
    assert res.returncode != 0 and "CLEVRER/CLEVRER_part1.zip: not a readable zip" in error_lines(res)[0]


def test_a_file_missing_from_the_mirror_is_named(tmp_path, mirror):
    src = dict(data_cfg(mirror)["hub"]["video_r1"], records="Video-R1-999k.json")
    res = fetch(tmp_path, src, mirror=mirror)
    assert res.returncode != 0
    (line,) = error_lines(res)
    assert "Video-R1-999k.json" in line and str(mirror / "Video-R1/Video-R1-data") in line


# ------------------------------------------------------------------------------------- no hub access: one line


def test_offline_fails_at_once_with_one_line_saying_how_to_fix_it(tmp_path, mirror):
    src = data_cfg(mirror)["hub"]["video_r1"]
    start = time.monotonic()
    res = fetch(tmp_path, src, env={**ENV, "HF_HUB_OFFLINE": "1", "HF_TOKEN": SECRET})
    assert time.monotonic() - start < 60  # the interpreter's start-up; no retries, no waiting
    assert res.returncode != 0
    (line,) = error_lines(res)
    assert "Video-R1/Video-R1-data" in line and "HF_HUB_OFFLINE=1" in line and "data.mirror" in line
    assert SECRET not in res.stdout + res.stderr


def test_no_network_fails_at_once_with_one_line(tmp_path, mirror):
    with socket.socket() as s:  # a port with nobody listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**ENV, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": SECRET}
    res = fetch(tmp_path, data_cfg(mirror)["hub"]["video_r1"], env=env)
    assert res.returncode != 0
    (line,) = error_lines(res)
    assert "cannot be reached" in line and "data.mirror" in line
    assert SECRET not in res.stdout + res.stderr


class _Refuse(http.server.BaseHTTPRequestHandler):
    """The hub's answer to a request for a gated or private repository without a token."""

    def do_GET(self):  # noqa: N802
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", "RepoNotFound")
        self.end_headers()
        self.wfile.write(b'{"error": "Repository not found"}')

    def log_message(self, *args):
        pass


def test_a_missing_token_is_named_in_one_line(tmp_path, mirror):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in ENV.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                   HF_HOME=str(tmp_path / "hfhome"))
        res = fetch(tmp_path, {"repo": "Video-R1/Qwen2.5-VL-7B-COT-SFT", "type": "model", "revision": "c" * 40},
                    what="model", env=env, key="model.hub")
    finally:
        server.shutdown()
    assert res.returncode != 0
    (line,) = error_lines(res)
    assert "Video-R1/Qwen2.5-VL-7B-COT-SFT" in line and "HF_TOKEN" in line and "model.hub" in line


# ------------------------------------------------------------------------------------------------- conversion


def test_conversion_keeps_video_rows_and_gives_holmes_questions_unique_ids():
    rows = [{"problem_id": 1, "data_type": "video", "path": "./STAR/a.mp4", "problem": "q"},
            {"problem_id": 2, "data_type": "image", "path": "./Spatial/b.jpg"}]
    recs, stats = video_r1_records(rows)
    assert [r["path"] for r in recs] == ["STAR/a.mp4"] and recs[0]["problem_id"] == "video_r1-1"
    assert stats == {"rows": 2, "image_rows": 1, "malformed": 0}
    holmes = [{"video ID": v, "Question ID": 1, "Question Type": "SR", "Question": "Why?",
               "Options": {"A": "x", "B": "y"}, "Answer": "B"} for v in ("v1", "v2")]
    recs, _ = video_holmes_records(holmes, "Benchmark/videos_cropped")
    assert [r["problem_id"] for r in recs] == ["holmes-v1-1", "holmes-v2-1"]
    assert recs[0]["options"] == ["A. x", "B. y"] and recs[0]["solution"] == "<answer>B</answer>"
    assert recs[1]["path"] == "Benchmark/videos_cropped/v2.mp4"


# ----------------------------------------------------------------------------------- the DAG's hub data path


def test_hub_data_path_of_the_dag_runs_on_a_mirror(tmp_path, mirror):
    for item in ("Snakefile", "workflow", "config", "envs"):
        os.symlink(ROOT / item, tmp_path / item)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg.update(run_name="hubtest", data=data_cfg(mirror))
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/hubtest/data/clean/train.json"
    res = subprocess.run([f"{BIN}/snakemake", target, "--cores", "2", "--configfile", "hub.yaml"], cwd=tmp_path,
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    clean = json.loads((tmp_path / target).read_text())
    # 4 video rows of Video-R1 (the image row dropped) + 2 Video-Holmes questions, every clip readable
    assert len(clean) == 6 and json.loads((tmp_path / target.replace(".json", ".skipped.json")).read_text()) == []
    assert {tuple(r["path"].split("/")[:2]) for r in clean} == {("videos", "video_r1"), ("videos", "video_holmes")}
    world = tmp_path / "results/hubtest/data/world"
    assert all((world / r["path"]).is_file() for r in clean)
    for name in ("video_r1", "video_holmes"):
        manifest = json.loads((tmp_path / f"results/hubtest/data/hub/{name}/records.manifest.json").read_text())
        (entry,) = manifest["files"].values()
        assert entry["sha256"] == sha(mirror / manifest["repo"] / next(iter(manifest["files"])))


def test_hub_model_path_of_the_dag_fetches_each_sft_model_from_its_own_repo(tmp_path):
    """Table 5's second model size: `sft_models.<name>.hub` is fetched into models/<name> by the same rule as `model`."""
    mirror = tmp_path / "mirror"
    for repo, width in (("Org/SFT-7B", 7), ("Org/Instruct-3B", 3)):
        (mirror / repo).mkdir(parents=True)
        (mirror / repo / "config.json").write_text(json.dumps({"hidden_size": width}))
        (mirror / repo / "model.safetensors").write_bytes(bytes(range(width)))
    wd = tmp_path / "wd"
    wd.mkdir()
    for item in ("Snakefile", "workflow", "config", "envs"):
        os.symlink(ROOT / item, wd / item)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg.update(run_name="hubmodels",
               model={"source": "hub", "mirror": str(mirror), "hub": {"repo": "Org/SFT-7B", "revision": "c" * 40}},
               sft_models={"sft_small": {"hub": {"repo": "Org/Instruct-3B", "revision": "d" * 40}}})
    (wd / "hub.yaml").write_text(yaml.safe_dump(cfg))
    models = wd / "results/hubmodels/models"
    res = subprocess.run([f"{BIN}/snakemake", "results/hubmodels/models/sft", "results/hubmodels/models/sft_small", "-c1",
                          "--configfile", "hub.yaml", "--replace-workflow-config"], cwd=wd, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name, repo, width in (("sft", "Org/SFT-7B", 7), ("sft_small", "Org/Instruct-3B", 3)):
        assert json.loads((models / name / "config.json").read_text()) == {"hidden_size": width}
        assert json.loads((models / name / "hub_manifest.json").read_text())["repo"] == repo
    # how the hub is reached is not what was downloaded: another mirror (or retry count) reruns nothing
    shutil.copytree(mirror, tmp_path / "mirror2")
    cfg["model"].update(mirror=str(tmp_path / "mirror2"), retries=5)
    (wd / "hub.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([f"{BIN}/snakemake", "results/hubmodels/models/sft", "results/hubmodels/models/sft_small",
                          "-c1", "--configfile", "hub.yaml", "--replace-workflow-config"], cwd=wd, env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout[-2000:] + res.stderr[-2000:]


@pytest.mark.parametrize("key, mirror_key", [("model.hub", "model.mirror"), ("data.hub.video_r1", "data.mirror"),
                                             ("sft_models.qwen3b.hub", "sft_models.qwen3b.mirror"),
                                             ("sft_models.hub3b.hub", "sft_models.hub3b.mirror")])
def test_the_offline_line_names_the_mirror_key_beside_the_source(key, mirror_key, monkeypatch):
    from videoktr.data.hub import HubUnavailable, probe

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailable, match=f"set {re.escape(mirror_key)} to a folder holding Org/M/<files>"):
        probe({"repo": "Org/M", "revision": "main", "config_key": key})
