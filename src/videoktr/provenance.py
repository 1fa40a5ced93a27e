"""What a resumable result was made from, so that a rerun reuses it only when nothing it depends on changed.

Predictions, filter scores and training checkpoints live outside the rule outputs (a killed job resumes there). When
a rule reruns because its model was retrained or its settings changed, the rows and checkpoints of the old inputs must
not be reused: each carries a digest of its model and settings, and a mismatch starts that part afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def digest(obj) -> str:
    """A short stable hash of a JSON-able object (dict keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_fingerprint(model_dir) -> str:
    """Identity of a saved model: each file's relative name, size and modification time (links followed).

    Rewriting the model (a new SFT or RL run into the same folder) changes it; a killed job that resumes on the same
    model sees the same value. Stat-based, not a content hash: hashing a 7B checkpoint per evaluation job would cost
    more than the job's own start-up. Copying the folder without keeping times counts as a new model (conservative).

    Hidden files and folders are not part of the model: Snakemake writes `.snakemake_timestamp` into a directory
    output after its job ends, so counting it would make every finished run look rewritten (`defines_model`).
    """
    root = Path(model_dir)
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and defines_model(p.relative_to(root))):
        st = os.stat(path)  # follows links: a re-linked download keeps the identity of its file
        files.append((str(path.relative_to(root)), st.st_size, st.st_mtime_ns))
    if not files:
        raise FileNotFoundError(f"{root}: no model files")
    return digest(files)


def defines_model(relative: Path) -> bool:
    """Whether a file of a model folder (path relative to it) is the model's: its weights, config and processor files,
    not what a workflow engine or a download tool adds (hidden names: .snakemake_timestamp, .cache/, .nfs*)."""
    return not any(part.startswith(".") for part in Path(relative).parts)


# A command's finished directory output, stamped with what it was made from: run again on it (a requeued job, the
# rule's command repeated) it is reused, not remade, so that no file of results/ changes and nothing downstream looks
# out of date. Hidden, so no part of the output's identity; Snakemake deletes the folder before a job it reruns
# (--forcerun, a changed input), and the folder is then made afresh.
DONE = ".videoktr_done.json"


def identity(path) -> str:
    """A folder's model_fingerprint, or a file's name, size and modification time."""
    p = Path(path)
    if p.is_dir():
        return model_fingerprint(p)
    st = os.stat(p)
    return digest([p.name, st.st_size, st.st_mtime_ns])


def made_from(settings, *inputs) -> str:
    """The digest of a command's settings and of its inputs' identities."""
    return digest({"settings": settings, "inputs": [identity(p) for p in inputs]})


def already_made(out_dir, key: str) -> bool:
    """Whether `out_dir` holds what was made from `key` (made_from), as it was written."""
    try:
        record = json.loads((Path(out_dir) / DONE).read_text())
        return record["made_from"] == key and record["identity"] == model_fingerprint(out_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def mark_made(out_dir, key: str) -> None:
    (Path(out_dir) / DONE).write_text(json.dumps({"made_from": key, "identity": model_fingerprint(out_dir)}))
