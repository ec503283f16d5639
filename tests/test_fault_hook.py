"""Tests for semantic_ids.faults: named fault points fire only when asked, and say so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from semantic_ids import faults

from .conftest import ROOT


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in (faults.FAULT_ENV, faults.LOG_ENV, faults.MODE_ENV):
        monkeypatch.delenv(var, raising=False)
    faults.reset()
    yield
    faults.reset()


def arm(monkeypatch, tmp_path, spec: str, mode: str = "raise"):
    log = tmp_path / "fault.log"
    monkeypatch.setenv(faults.FAULT_ENV, spec)
    monkeypatch.setenv(faults.LOG_ENV, str(log))
    monkeypatch.setenv(faults.MODE_ENV, mode)
    return log


def test_point_does_nothing_unless_named(monkeypatch, tmp_path):
    faults.point("a.b")  # no variable set
    log = arm(monkeypatch, tmp_path, "other.point")
    for _ in range(3):
        faults.point("a.b")
    assert not log.exists()


def test_point_raises_and_logs_in_raise_mode(monkeypatch, tmp_path):
    log = arm(monkeypatch, tmp_path, "a.b")
    with pytest.raises(faults.Fault, match="a.b@1"):
        faults.point("a.b")
    assert log.read_text() == "a.b@1\n"
    assert not issubclass(faults.Fault, Exception)  # `except Exception` does not swallow it


def test_point_fires_on_the_nth_hit_only(monkeypatch, tmp_path):
    log = arm(monkeypatch, tmp_path, "a.b@3")
    faults.point("a.b")
    faults.point("other")  # other points do not count towards a.b
    faults.point("a.b")
    with pytest.raises(faults.Fault, match="a.b@3"):
        faults.point("a.b")
    faults.point("a.b")  # the 4th hit: already fired
    assert log.read_text() == "a.b@3\n"


@pytest.mark.parametrize("spec", ["@2", "a.b@0", "a.b@x", "a.b@"])
def test_bad_spec_is_rejected(monkeypatch, tmp_path, spec):
    arm(monkeypatch, tmp_path, spec)
    with pytest.raises(ValueError, match="SEMANTIC_IDS_FAULT"):
        faults.point("a.b")


def test_bad_mode_is_rejected(monkeypatch, tmp_path):
    arm(monkeypatch, tmp_path, "a.b", mode="explode")
    with pytest.raises(ValueError, match="SEMANTIC_IDS_FAULT_MODE='explode'"):
        faults.point("a.b")


def test_kill_mode_sigkills_the_process_at_the_point(tmp_path):
    """The log is written before the kill; nothing after the point runs, not even ``finally``."""
    log = tmp_path / "fault.log"
    script = (
        "import sys\n"
        "from semantic_ids import faults\n"
        "try:\n"
        "    faults.point('x.before')\n"
        "    print('reached', flush=True)\n"
        "    faults.point('x.here')\n"
        "    print('survived', flush=True)\n"
        "finally:\n"
        "    print('finally', flush=True)\n"
    )
    env = {**os.environ, faults.FAULT_ENV: "x.here", faults.LOG_ENV: str(log)}
    env.pop(faults.MODE_ENV, None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == "reached\n"
    assert log.read_text() == "x.here@1\n"
