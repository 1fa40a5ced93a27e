"""The evaluation benchmarks as downloads (config eval.hub; rules bench_records, bench_media): a mirror of the nine
benchmarks' hub repositories in their published layouts, built here from tests/fixtures/benchmarks (malformed rows
and missing clips included, plus one zip that is not a zip), fetched with `videoktr fetch` exactly as the rules call
it, then read by the loaders where the download put them; the one-line stop without hub access; and a Snakemake run
of the download rules into an evaluation."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from videoktr.config import validate
from videoktr.data.rehearsal_mirror import build_benchmark_mirror as _build_benchmark_mirror
from videoktr.eval.benchmarks import eval_paths, load_benchmark
from conftest import BIN, ENV, ROOT

FIX = ROOT / "tests/fixtures/benchmarks"
PAPER = validate(yaml.safe_load((ROOT / "config/paper.yaml").read_text()))
HUB = PAPER["eval"]["hub"]
OUT = "results/t"

# benchmark: (questions read, malformed ids, ids whose clip is absent from the mirror); as tests/test_benchmarks.py
# for the fixtures, plus the clips of the mirror's unreadable zips (VideoMMMU's Art.zip, Video-MME's second chunk)
EXPECTED = {
    "video_holmes": (4, ["vh_film2_CTI_1"], ["vh_missing_PAR_1"]),
    "videommmu": (4, ["Perception/test_Math_7"], ["Adaptation/validation_Physics_2"]),
    "mmvu": (3, ["validation_12"], ["validation_9"]),
    "tempcompass": (4, ["1034419625_reverse/direction/0"], ["1099999999/speed/0"]),
    "videomme": (4, ["602-1"], ["601-1", "301-1"]),
    "mmmu": (3, ["validation_Math_2"], []),
    "ai2d": (2, ["ai2d_2"], []),
    "mmstar": (2, ["2"], []),
    "chartqa": (3, ["chartqa_3"], []),
}
BAD_ZIPS = {"videommmu": "Art.zip", "videomme": "videos_chunked_02.zip"}


def build_benchmark_mirror(root: Path) -> Path:
    """<root>/<repo>/<file> for each benchmark of config/paper.yaml's eval.hub, in the published layout its entry
    names (records files, clips or clip archives), from the fixtures of tests/fixtures/benchmarks (the package's
    builder, which the rehearsal's mirror uses too: videoktr.data.rehearsal_mirror)."""
    return _build_benchmark_mirror(root, HUB, FIX)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    return build_benchmark_mirror(tmp_path_factory.mktemp("bench_mirror"))


def fetch(wd: Path, name: str, what: str, mirror, env=None):
    """`videoktr fetch` as rules bench_records / bench_media call it (workflow/rules/benchmarks.smk)."""
    records, media = eval_paths(name, PAPER["eval"], out=OUT, world=f"{OUT}/data/world")
    cfg = {"source": dict(HUB[name], config_key=f"eval.hub.{name}"), **({"mirror": str(mirror)} if mirror else {})}
    base = wd / OUT / "data/benchmarks" / name
    return subprocess.run(
        [f"{BIN}/videoktr", "fetch", "--cfg", json.dumps(cfg), "--what", f"bench-{what}", "--download-dir",
         str(base / "files"), "--out", str(wd / (records if what == "records" else media)), "--manifest",
         str(base / f"{what}.manifest.json")], env=env or ENV, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def fetched(mirror, tmp_path_factory):
    wd = tmp_path_factory.mktemp("wd")
    runs = {}
    for name in HUB:
        runs[name, "records"] = fetch(wd, name, "records", mirror)
        if HUB[name].get("media"):
            runs[name, "media"] = fetch(wd, name, "media", mirror)
    return wd, runs


def test_the_paper_config_downloads_every_benchmark_it_evaluates():
    from videoktr.report import grid

    assert {b for _, b, _ in grid.all_evaluations(PAPER)} == set(HUB) == set(EXPECTED)
    for name, src in HUB.items():
        assert src["repo"] and src["revision"] and src["records"], name
        assert bool(src.get("media")) == (name in ("video_holmes", "videommmu", "mmvu", "tempcompass", "videomme"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_benchmark_is_fetched_and_read_where_it_landed(fetched, name):
    wd, runs = fetched
    for what in ("records", "media"):
        if (name, what) in runs:
            assert runs[name, what].returncode == 0, runs[name, what].stderr[-2000:]
    base = wd / OUT / "data/benchmarks" / name
    manifest = json.loads((base / "records.manifest.json").read_text())
    assert manifest["repo"] == HUB[name]["repo"] and manifest["revision"] == HUB[name]["revision"]
    assert manifest["files"] and all(f["bytes"] > 0 and len(f["sha256"]) == 64 for f in manifest["files"].values())
    records, media = eval_paths(name, PAPER["eval"], out=OUT, world=f"{OUT}/data/world")
    loaded = load_benchmark(name, wd / records, wd / media)
    n, malformed, missing = EXPECTED[name]
    assert len(loaded.records) == n and [p["id"] for p in loaded.problems] == malformed, loaded.problems
    for p in loaded.problems:
        assert p["reason"].startswith("malformed"), p
    video = [r for r in loaded.records if r["data_type"] == "video"]  # image benchmarks embed their images
    assert {r["problem_id"] for r in video if not (wd / media / r["path"]).is_file()} == set(missing)


def test_only_the_named_files_are_fetched(fetched):
    wd, _ = fetched
    def files(name, what):
        return set(json.loads((wd / OUT / "data/benchmarks" / name / f"{what}.manifest.json").read_text())["files"])

    assert files("mmmu", "records") == {"Art/validation-00000-of-00001.parquet",
                                        "Math/validation-00000-of-00001.parquet"}  # no dev, no test split
    assert files("tempcompass", "records") == {"multi-choice/test-00000-of-00001.parquet"}
    assert files("videomme", "media") == {"videos_chunked_01.zip", "videos_chunked_02.zip"}  # no subtitle.zip
    assert not any(f.startswith("Comprehension_Engineering") for f in files("videommmu", "records"))


@pytest.mark.parametrize("name", sorted(BAD_ZIPS))
def test_a_zip_that_is_not_a_zip_is_named_counted_and_the_rest_unpacked(fetched, name):
    wd, runs = fetched
    res = runs[name, "media"]
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((wd / OUT / "data/benchmarks" / name / "media.manifest.json").read_text())
    assert [b["path"] for b in manifest["bad_archives"]] == [BAD_ZIPS[name]]
    named = [line for line in res.stderr.splitlines() if "bad archive" in line]
    assert len(named) == 1 and f"{BAD_ZIPS[name]}: not a readable zip archive" in named[0]
    assert any(f"1 of {len(manifest['files'])} archive(s) unreadable ({BAD_ZIPS[name]})" in line
               for line in res.stderr.splitlines())
    assert manifest["extracted_now"] and BAD_ZIPS[name] not in manifest["extracted_now"]


def test_a_wrong_media_dir_stops_with_one_line_naming_the_key(mirror, tmp_path):
    cfg = {"source": dict(HUB["tempcompass"], media_dir="clips", config_key="eval.hub.tempcompass"),
           "mirror": str(mirror)}
    res = subprocess.run([f"{BIN}/videoktr", "fetch", "--cfg", json.dumps(cfg), "--what", "bench-media",
                          "--download-dir", str(tmp_path / "files"), "--out", str(tmp_path / "files/clips"),
                          "--manifest", str(tmp_path / "m.json")], env=ENV, capture_output=True, text=True,
                         check=False)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].endswith("fix eval.hub.tempcompass.media_dir")


def test_without_hub_access_the_download_stops_with_one_line(tmp_path):
    res = fetch(tmp_path, "video_holmes", "records", mirror=None, env={**ENV, "HF_TOKEN": ""})
    assert res.returncode != 0
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    assert "TencentARC/Video-Holmes (eval.hub.video_holmes)" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert "eval.mirror" in lines[0]


@pytest.mark.slow
def test_download_rules_feed_the_evaluation_through_snakemake(mirror, tmp_path):
    """The tiny world with one hub benchmark (Video-MME from the mirror, one of its zips broken): bench_records and
    bench_media run, then the evaluation reads the download; the malformed row, the missing clip and the clip of the
    broken zip are errors of the summary, the others answered."""
    for item in ("Snakefile", "workflow", "config", "envs", "profiles", "scripts"):
        os.symlink(ROOT / item, tmp_path / item)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({
        "world": {"n_train": 32, "n_eval": 4}, "sft": {"epochs": 1},
        "eval": {"models": ["sft"], "benchmarks": ["videomme"], "frames": [4], "max_new_tokens": 8,
                 "mirror": str(mirror), "hub": {"videomme": HUB["videomme"]}},
    }))
    target = "results/tiny/eval/sft/videomme/f4.summary.json"
    res = subprocess.run([f"{BIN}/snakemake", "--cores", "2", target, "--configfile", "config/config.yaml",
                          "small.yaml"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900,
                         check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / target).read_text())
    n, malformed, missing = EXPECTED["videomme"]
    assert summary["questions"] == n + len(malformed)
    assert sorted(summary["error_ids"]) == sorted(malformed + missing)
    assert summary["answered"] == n - len(missing)
    log = (tmp_path / "results/tiny/logs/bench_media_videomme.log").read_text()
    assert sum("bad archive videos_chunked_02.zip" in line for line in log.splitlines()) == 1
