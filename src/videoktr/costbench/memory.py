"""The benchmark's memory instruments: resident-set probes (shared with Table 4's meter, from `videoktr.memory`),
the bytes of a model's tensors, the peak of live torch CPU allocations and its split over a step's phases.

CPU torch keeps no allocator statistics and tracemalloc does not see torch's allocations, so on a CPU the peak is
replayed from the profiler's allocation and free events (docs/costbench.md, "Memory").
"""

from __future__ import annotations

import contextlib

from videoktr.memory import peak_rss_mib, reset_peak_rss, rss_mib

__all__ = ["peak_by_phase", "peak_rss_mib", "reset_peak_rss", "rss_mib", "tensor_bytes", "torch_cpu_peak"]


def tensor_bytes(*modules) -> int:
    """Bytes of the distinct parameters and buffers of `modules` (None skipped)."""
    import itertools

    seen, total = set(), 0
    for m in modules:
        if m is None:
            continue
        for t in itertools.chain(m.parameters(), m.buffers()):
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


@contextlib.contextmanager
def torch_cpu_peak(out: dict):
    """Peak of live torch CPU allocations inside the block, above those alive at its start, into out["bytes"].

    From the profiler's allocation and free events (profile_memory=True): the CPU counterpart of
    torch.cuda.max_memory_allocated, exact to the byte, blind to allocator caching and to non-torch memory.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")]
    live, timeline = 0, []
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        timeline.append((e.start_ns(), live))
    out.update(bytes=max((b for _, b in timeline), default=0), events=len(events), timeline=timeline)


def peak_by_phase(timeline: list[tuple[int, int]], spans: list[tuple[str, int, int]]) -> dict[str, int]:
    """The highest live-bytes reading of `timeline` inside each phase's time spans (wall-clock ns)."""
    import bisect

    times = [t for t, _ in timeline]
    out: dict[str, int] = {}
    for name, t0, t1 in spans:
        i, j = bisect.bisect_left(times, t0), bisect.bisect_right(times, t1)
        if i < j:
            out[name] = max(out.get(name, 0), max(b for _, b in timeline[i:j]))
    return out
