"""The process's resident-set probes (current size, high-water mark, its reset), shared by Table 4's cost meter
(`videoktr.rl.cost_meter`) and the attribution-cost benchmark (`videoktr.costbench`).

Standard library only, and at the package's top level so that neither of its users imports the other: the benchmark's
memory worker reads its first RSS before importing torch, which importing `videoktr.rl.cost_meter` would do.
"""

from __future__ import annotations

import resource


def _status_kib(key: str) -> int | None:
    """A kB field of /proc/self/status (VmRSS, VmHWM), None without /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib() -> float:
    """Current resident set size (VmRSS), MiB."""
    value = _status_kib("VmRSS")
    return float("nan") if value is None else value / 1024


def peak_rss_bytes() -> tuple[int, str]:
    """This process's resident-set high-water mark (VmHWM) in bytes, and which reading it is.

    Not getrusage's ru_maxrss: in a child started by a large parent, ru_maxrss reports the parent's RSS at the fork
    (Linux carries the old address space's high-water mark over the exec), so every child would read at least the
    parent's size. VmHWM belongs to the child's own address space. Falls back to ru_maxrss without /proc.
    """
    value = _status_kib("VmHWM")
    if value is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"
    return value * 1024, "rss_high_water"


def peak_rss_mib() -> float:
    """`peak_rss_bytes` in MiB."""
    return peak_rss_bytes()[0] / 2**20


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: `5` to /proc/self/clear_refs); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
