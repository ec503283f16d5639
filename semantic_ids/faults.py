"""Fault injection: die or fail at a named point, so tests can prove where a kill landed.

The library calls :func:`point` at the moments an interruption is worth testing
(after a cache shard or a checkpoint is written, inside the export swap, ...).
Normally that is one environment lookup and nothing else. With
``SEMANTIC_IDS_FAULT=<name>`` (or ``<name>@<n>``, the n-th time the point is
reached in this process) the point fires:

1. it appends ``<name>@<n>`` to the file named by ``SEMANTIC_IDS_FAULT_LOG``
   (if set), flushed and fsynced, so the test can see that the fault fired there
   and not somewhere else;
2. with ``SEMANTIC_IDS_FAULT_MODE=kill`` (the default) it sends its own process
   SIGKILL: no ``finally`` block, ``atexit`` hook or buffered write runs, as in
   a power cut or the OOM killer; with ``raise`` it raises :class:`Fault`
   instead, for tests that stay in one process.

Points are named ``<module>.<moment>``, e.g. ``atomic.between_renames``.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "SEMANTIC_IDS_FAULT"
LOG_ENV = "SEMANTIC_IDS_FAULT_LOG"
MODE_ENV = "SEMANTIC_IDS_FAULT_MODE"

_hits: dict[str, int] = {}


class Fault(BaseException):
    """Raised by a point in ``raise`` mode.

    A ``BaseException``, like ``KeyboardInterrupt``, so that the library's
    ``except Exception`` handlers do not swallow it.
    """


def parse(spec: str) -> tuple[str, int]:
    """``"name"`` -> ``("name", 1)``, ``"name@3"`` -> ``("name", 3)``."""
    name, at, nth = spec.partition("@")
    if not name or (at and (not nth.isdigit() or int(nth) < 1)):
        raise ValueError(f"{FAULT_ENV}={spec!r} should be NAME or NAME@N with N >= 1")
    return name, int(nth) if at else 1


def point(name: str) -> None:
    """Fire the fault named by ``SEMANTIC_IDS_FAULT`` if it is this point (see the module docstring).

    Returns without doing anything when the variable is unset or names another point.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, nth = parse(spec)
    if target != name:
        return
    hit = _hits[name] = _hits.get(name, 0) + 1
    if hit != nth:
        return
    record = f"{name}@{hit}"
    log_path = os.environ.get(LOG_ENV)
    if log_path:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(record + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    mode = os.environ.get(MODE_ENV, "kill")
    if mode == "raise":
        raise Fault(record)
    if mode != "kill":
        raise ValueError(f"{MODE_ENV}={mode!r} should be 'kill' or 'raise'")
    os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Forget how often each point was reached (for in-process tests)."""
    _hits.clear()
