"""benchmarks.programs.wait_exit: the exit status, and the deadline."""

import subprocess

import pytest

from benchmarks.programs import wait_exit


def test_wait_exit_returns_the_status():
    proc = subprocess.Popen(["sh", "-c", "exit 3"])
    assert wait_exit(proc, 30) == 3
    assert proc.returncode == 3


def test_wait_exit_raises_at_the_deadline():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait_exit(proc, 0.05)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(5)
