"""Downloads of the paper's data and SFT model: Hugging Face hub at a pinned revision, or a local mirror folder.

One *source* is a dict from the config (`data.hub.<name>`, `model.hub`):

    repo       "Video-R1/Video-R1-data"             the hub repository
    type       "dataset" or "model"
    revision   a commit sha (pinned; a branch or tag is accepted with a warning, and the commit it resolved to is
               recorded in the manifest)
    sha256     {file: hex digest} checked after the download; files the hub stores with Git LFS are also checked
               against the digest the hub publishes for them

With a mirror folder (`data.mirror`, `model.mirror`) nothing is downloaded: the files are read from
`<mirror>/<repo>/<file>` (e.g. `<mirror>/Video-R1/Video-R1-data/Video-R1-260k.json`), linked into place and
checked the same way.

Fail fast: without hub access (HF_HUB_OFFLINE=1, no network, a gated repository and no token) the first call raises
HubUnavailable with ONE line saying what is missing and how to fix it. The token is read from the environment
(HF_TOKEN) and never printed or logged. Transient errors (dropped connections, 5xx) are retried with backoff;
partial downloads are resumed by the next attempt or the next run (they live outside the rule outputs).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import time
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

SHA = re.compile(r"^[0-9a-f]{40}$")


class HubUnavailable(RuntimeError):
    """The hub (or the mirror) cannot provide a file; the message is one line: what, why, how to fix it."""


class BadDownload(RuntimeError):
    """A file arrived but is wrong (empty, truncated, another sha256); the message names the file."""


# ------------------------------------------------------------------------------------------------- checks


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, expected: str | None = None, *, label: str = "") -> str:
    """The file's sha256 after checking that it exists, is not empty and matches `expected` (if given)."""
    path = Path(path)
    name = label or str(path)
    if not path.is_file():
        raise BadDownload(f"{name}: missing after the download ({path})")
    if path.stat().st_size == 0:
        raise BadDownload(f"{name}: the file is empty ({path})")
    digest = sha256_of(path)
    if expected and digest != expected.lower():
        raise BadDownload(f"{name}: sha256 {digest} differs from the expected {expected.lower()} (a corrupted or "
                          f"changed file; delete {path} and download it again)")
    return digest


def token() -> str | None:
    """The hub token from the environment (HF_TOKEN); never logged."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def offline() -> bool:
    return any(os.environ.get(k, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _key(source: dict) -> str:
    return source.get("config_key", "the source")


def config_section(key: str) -> str:
    """The config section a hub key belongs to, where its mirror and retries sit: data.hub.<name> -> data,
    model.hub -> model, sft_models.<name>.hub -> sft_models.<name>."""
    return re.sub(r"\.hub(\.[^.]+)?$", "", key)


def _fix(source: dict) -> str:
    mirror_key = config_section(_key(source)) + ".mirror"
    return f"or set {mirror_key} to a folder holding {source['repo']}/<files>"


# ------------------------------------------------------------------------------------------------- the hub


def _hub_error(source: dict, err: Exception) -> HubUnavailable:
    """One line for an error of the hub client (the token never appears: only the exception's class and status)."""
    from huggingface_hub import errors

    repo, rev = source["repo"], source.get("revision")
    if isinstance(err, errors.GatedRepoError):
        why = "is gated: accept its terms on the hub and set HF_TOKEN" + (" (the token set was refused)" if token()
                                                                             else " (no token is set)")
    elif isinstance(err, errors.RepositoryNotFoundError):
        why = ("was not found or needs a token: " + ("check the repository name and the token's access" if token()
                                                     else "set HF_TOKEN in the environment, or check the name"))
    elif isinstance(err, errors.RevisionNotFoundError):
        why = f"has no revision {rev!r}: fix {_key(source)}.revision"
    elif isinstance(err, (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError)):
        why = f"has no such file at revision {rev!r}: fix {_key(source)}"
    elif isinstance(err, errors.HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", "?")
        why = f"answered HTTP {status}"
    else:
        why = f"cannot be reached ({type(err).__name__}): check the network or proxy, {_fix(source)}"
    return HubUnavailable(f"cannot download {repo} ({_key(source)}): the hub {why}")


def _transient(err: Exception) -> bool:
    from huggingface_hub import errors

    if isinstance(err, (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.EntryNotFoundError,
                        errors.GatedRepoError, errors.RemoteEntryNotFoundError)):
        return False
    if isinstance(err, errors.HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        return status is None or status >= 500 or status == 429
    return isinstance(err, (OSError, TimeoutError)) or type(err).__module__.startswith("httpx")


def probe(source: dict, timeout: float = 15.0):
    """The repository's info at the pinned revision (commit, files with LFS sha256), or HubUnavailable at once."""
    from huggingface_hub import HfApi

    if offline():
        raise HubUnavailable(f"cannot download {source['repo']} ({_key(source)}): HF_HUB_OFFLINE=1 is set; unset it "
                             f"on a machine with network access, {_fix(source)}")
    try:
        return HfApi().repo_info(source["repo"], repo_type=source.get("type", "model"),
                                 revision=source.get("revision"), files_metadata=True, timeout=timeout,
                                 token=token())
    except Exception as e:  # noqa: BLE001 - every client error becomes one line
        raise _hub_error(source, e) from None


def _match(names: list[str], patterns: list[str]) -> list[str]:
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns))


def _download_hub(source: dict, patterns: list[str], dest: Path, retries: int, backoff: float) -> dict:
    from huggingface_hub import snapshot_download

    info = probe(source)
    rev = source.get("revision")
    if not (rev and SHA.match(rev)):
        log.warning("%s (%s): revision %r is not a commit sha; it resolved to %s (recorded in the manifest)",
                    source["repo"], _key(source), rev, info.sha)
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    names = _match(list(siblings), patterns)
    missing = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in siblings)]
    if missing:
        raise HubUnavailable(f"cannot download {source['repo']} ({_key(source)}): no file matches {missing[0]!r} at "
                             f"revision {info.sha}: fix the file name or the revision")
    for attempt in range(1, retries + 1):
        try:
            snapshot_download(source["repo"], repo_type=source.get("type", "model"), revision=info.sha,
                              local_dir=dest, allow_patterns=names, token=token())
            break
        except Exception as e:  # noqa: BLE001
            if attempt == retries or not _transient(e):
                raise _hub_error(source, e) from None
            wait = backoff * 2 ** (attempt - 1)
            log.warning("%s: download attempt %d of %d failed (%s); retrying in %.0f s", source["repo"], attempt,
                        retries, type(e).__name__, wait)
            time.sleep(wait)
    hub_sha = {n: siblings[n].lfs.sha256 for n in names if siblings[n].lfs}
    return {"commit": info.sha, "files": names, "hub_sha256": hub_sha}


def _link_mirror(source: dict, patterns: list[str], mirror: Path, dest: Path) -> dict:
    root = Path(mirror) / source["repo"]
    if not root.is_dir():
        raise HubUnavailable(f"cannot read {source['repo']} ({_key(source)}) from the mirror: {root} does not exist; "
                             f"copy the repository there or unset the mirror")
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    picked = _match(names, patterns)
    for p in patterns:
        if not any(fnmatch.fnmatch(n, p) for n in names):
            raise HubUnavailable(f"cannot read {source['repo']} ({_key(source)}) from the mirror: no file matches "
                                 f"{p!r} under {root}")
    for name in picked:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to((root / name).resolve())
    return {"commit": None, "files": picked, "hub_sha256": {}}


def fetch(source: dict, patterns: list[str], dest: Path, *, mirror: str | None = None, retries: int = 3,
          backoff: float = 5.0) -> dict:
    """Bring the files of `source` matching `patterns` into `dest` (same relative names); check each one.

    Returns the manifest: repo, revision asked for, commit resolved (None from a mirror), and per file its sha256,
    size and whether the digest was checked against a known one (config or the hub's LFS metadata).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if mirror:
        got = _link_mirror(source, patterns, Path(mirror), dest)
    else:
        got = _download_hub(source, patterns, dest, retries, backoff)
    expected = {**got["hub_sha256"], **(source.get("sha256") or {})}
    files = {}
    for name in got["files"]:
        digest = check_file(dest / name, expected.get(name), label=f"{source['repo']}/{name}")
        files[name] = {"sha256": digest, "bytes": (dest / name).stat().st_size, "checked": name in expected}
    return {"repo": source["repo"], "type": source.get("type", "model"), "revision": source.get("revision"),
            "commit": got["commit"], "mirror": str(mirror) if mirror else None, "files": files}


def extract(archives: list[Path], root: Path, bad: list | None = None) -> list[str]:
    """Unpack each zip next to where it lies (`<Source>/<Source>_partN.zip` -> `<Source>/`); a marker per archive
    makes a rerun skip what was unpacked before. Returns the archives unpacked now.

    An archive that is not a readable zip raises BadDownload, or, given a list `bad`, is logged in one line with its
    path, appended to `bad` ({"path", "reason"}) and skipped (a benchmark: its clips' questions count as errors in
    the evaluation); it is tried again on the next run (no marker)."""
    done = []
    for archive in archives:
        archive = Path(archive)
        marker = archive.with_name(archive.name + ".extracted")
        if marker.exists() and marker.read_text() == str(archive.stat().st_size):
            continue
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(archive.parent)
        except (zipfile.BadZipFile, EOFError) as e:
            msg = (f"{archive.relative_to(root)}: not a readable zip archive ({e}); delete it and download it "
                   f"again")
            if bad is None:
                raise BadDownload(msg) from None
            log.error("bad archive %s", msg)
            bad.append({"path": str(archive.relative_to(root)), "reason": f"not a readable zip archive ({e})"})
            continue
        marker.write_text(str(archive.stat().st_size))
        done.append(str(archive.relative_to(root)))
    return done


def write_manifest(path: Path, manifest: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- the paper's records, converted


def video_r1_records(rows: list) -> tuple[list[dict], dict]:
    """Video-R1-260k rows -> video records (the format of every later step); image rows are counted, not kept."""
    from videoktr.eval.loaders import rel

    kept, counts = [], {"rows": len(rows), "image_rows": 0, "malformed": 0}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "path" not in row:
            counts["malformed"] += 1  # prepare_split lists bad records; these have no path to list them by
            continue
        if row.get("data_type") != "video":
            counts["image_rows"] += 1
            continue
        rec = dict(row, problem_id=f"video_r1-{row.get('problem_id', i)}", path=rel(str(row["path"])))
        rec.setdefault("data_source", "Video-R1")
        kept.append(rec)
    return kept, counts


def video_holmes_records(rows: list, video_dir: str) -> tuple[list[dict], dict]:
    """train_Video-Holmes.json rows ({"video ID", "Question ID", "Question Type", "Question", "Options": {letter:
    text}, "Answer"}) -> multiple-choice records; clips at `<video_dir>/<video ID>.mp4`. Question ids repeat across
    videos, so the id is "holmes-<video ID>-<Question ID>". A malformed row stays in (prepare_split names it)."""
    kept, counts = [], {"rows": len(rows), "malformed": 0}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            counts["malformed"] += 1
            continue
        opts = row.get("Options")
        options = [f"{k}. {v}" for k, v in opts.items()] if isinstance(opts, dict) else opts
        kept.append({
            "problem_id": f"holmes-{row.get('video ID', '?')}-{row.get('Question ID', i)}",
            "problem": row.get("Question"),
            "data_type": "video",
            "problem_type": "multiple choice",
            "options": options,
            "solution": f"<answer>{str(row.get('Answer', '')).strip()}</answer>",
            "path": f"{video_dir.strip('/')}/{row.get('video ID')}.mp4",
            "data_source": f"Video-Holmes/{row.get('Question Type', 'unknown')}",
        })
    return kept, counts


CONVERTERS = {"video_r1": lambda rows, src: video_r1_records(rows),
              "video_holmes": lambda rows, src: video_holmes_records(rows, src.get("video_dir", "videos"))}


def training_records(sources: dict, records: dict, media: dict, videos_out: Path) -> tuple[list[dict], dict]:
    """Merge the converted datasets; `videos_out/<name>` links to each dataset's media folder and every record's
    path becomes `<videos_out's name>/<name>/<path>`, relative to the folder above `videos_out` (the data dir of every
    later step, as in the tiny world)."""
    videos_out = Path(videos_out)
    videos_out.mkdir(parents=True, exist_ok=True)
    merged, stats = [], {}
    for name, src in sources.items():
        rows = json.loads(Path(records[name]).read_text())
        if not isinstance(rows, list):
            raise BadDownload(f"{records[name]}: expected a JSON list of records, got {type(rows).__name__}")
        recs, stats[name] = CONVERTERS[src["format"]](rows, src)
        link = videos_out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(Path(media[name]).resolve(), videos_out.resolve()))
        merged.extend(dict(r, path=f"{videos_out.name}/{name}/{r['path']}") for r in recs)
        stats[name]["kept"] = len(recs)
    return merged, stats
