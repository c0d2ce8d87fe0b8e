"""Benchmarks and the demo: programs that build a real swarm on this machine (with the
test harness, ``tests.harness.swarm`` and ``netns``) and measure or show torrentfs in it. Outside the
wheel (pyproject's package find takes only ``torrentfs*``); run from the repo root as
``python -m benchmarks.X``, which is what the thin entry points in scripts/ do.

- bench.py (scripts/bench): torrentfs vs btfs vs a libtorrent download, side by side;
  its pieces: worker.py (the reader child process), programs.py (the mounts under
  test), procstats.py (/proc and ``ss`` samplers), payload.py, report.py.
- cluster.py (scripts/cluster): N mounts in network namespaces sharing one origin.
- demo.py (scripts/demo): a short, timed walk through mount, list, read, verify.

May import: torrentfs (any layer, as a user of it would), tests.harness, the standard
library. Nothing in torrentfs/ or tests/ imports it.
"""

from __future__ import annotations

import os


def caller_path(path: str | None) -> str | None:
    """A path given on the command line, relative to where the user ran the command:
    the scripts/ entry points ``cd`` to the repo root (so ``-m benchmarks.X`` is found)
    and say where they were called from in TORRENTFS_CALLER_DIR."""
    if not path:
        return path
    return os.path.join(os.environ.get("TORRENTFS_CALLER_DIR", ""), path)
