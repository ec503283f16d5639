"""Time and peak memory per pipeline stage.

Peak memory is the process's resident set size, sampled by a background
thread (every 20 ms) while a stage runs, so each stage reports its own peak,
not the peak of the whole process so far.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Iterator

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size in bytes (falls back to the lifetime peak)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - non-Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StageTimer:
    """Collects ``{stage: {"seconds": s, "peak_rss_mb": m}}``."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def stage(self, name: str, interval: float = 0.02) -> Iterator[None]:
        peak = [rss_bytes()]
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(interval):
                peak[0] = max(peak[0], rss_bytes())

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            stop.set()
            thread.join()
            peak[0] = max(peak[0], rss_bytes())
            prev = self.stages.get(name, {"seconds": 0.0, "peak_rss_mb": 0.0})
            self.stages[name] = {
                "seconds": round(prev["seconds"] + seconds, 3),
                "peak_rss_mb": round(max(prev["peak_rss_mb"], peak[0] / 2**20), 1),
            }
