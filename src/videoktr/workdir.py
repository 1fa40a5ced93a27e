"""A second `snakemake` in a work dir where one runs: Snakemake checks for incomplete outputs before it takes the
work dir's lock, so it calls the running jobs' outputs incomplete and suggests --rerun-incomplete, which then fails
on the lock. The Snakefile says first what works (`lock_note`)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _ancestors() -> set[int]:
    """This process and its parents (a job step's snakemake runs under the one that holds the lock)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def snakemake_pids(workdir) -> list[int]:
    """Other snakemake processes of this host whose working directory is `workdir` ([] where /proc is not there)."""
    here, mine, found = os.path.realpath(workdir), _ancestors(), []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(proc.name)
            argv = (proc / "cmdline").read_bytes().split(b"\0")[:3]
            if pid in mine or os.path.realpath(proc / "cwd") != here:
                continue
        except (OSError, ValueError):
            continue  # gone, or another user's
        names = [os.path.basename(a.decode(errors="replace")) for a in argv]
        if "snakemake" in names[:2] or names[1:3] == ["-m", "snakemake"]:
            found.append(pid)
    return sorted(found)


def lock_note(workdir=".") -> str | None:
    """One line when the work dir's Snakemake lock is taken (None when it is free): who holds it and what to run."""
    locks = Path(workdir, ".snakemake", "locks")
    if not (locks.is_dir() and any(locks.glob("*.lock"))):
        return None
    pids = snakemake_pids(workdir)
    if pids:
        return (f"another snakemake (pid {', '.join(map(str, pids))}) runs in this work dir and holds its lock "
                f"({locks}): the outputs of its running jobs look incomplete to this one, and --rerun-incomplete "
                f"would fail on that lock; wait for it to end (or stop it), then run this command again")
    return (f"{locks} holds a lock, but no snakemake runs in this work dir on {socket.gethostname()}: if none runs on "
            f"another host either, a killed run left it: `snakemake --unlock`, then this command with "
            f"--rerun-incomplete")
