"""cli/listing.py: ``torrentfs list`` as text, one block per daemon."""

from __future__ import annotations

import os

from torrentfs.cli.listing import render


def test_each_kind_of_daemon_on_a_few_lines():
    me = os.getpid()  # a running, not stopped, process
    entries = [
        {"pid": me, "kind": "mount", "state": "mounted", "mountpoint": "/mnt/a",
         "name": "movie", "info_hash": "ab" * 20, "cache": "/c/abab", "started": 900.0},
        {"pid": me, "kind": "mount", "state": "seeding after unmount", "until": "ratio 2",
         "mountpoint": "/mnt/b", "name": "x\x1b[2J", "info_hash": "cd" * 20,
         "cache": "/c/cdcd", "started": 1000.0 - 7500},
        {"pid": me, "kind": "watch", "state": "mounted", "mountpoint": "/mnt/w",
         "source": "/srv/in", "cache": "/c", "started": 1000.0},
        {"pid": me, "kind": "mount", "state": "fetching metadata", "mountpoint": "/mnt/m",
         "name": None, "info_hash": "ef" * 20, "cache": "/c/efef", "started": 1000.0},
    ]
    blocks = render(entries, now=1000.0).split(f"pid {me}: ")[1:]
    assert blocks[0].splitlines() == [
        "mount, mounted (for 100 s)", "  mountpoint: /mnt/a",
        f"  torrent:    movie ({'ab' * 20})", "  cache:      /c/abab"]
    assert blocks[1].startswith("mount, seeding after unmount until ratio 2 (for 2 h 5 min)")
    assert "\x1b" not in blocks[1]
    assert "/srv/in (watched folder)" in blocks[2] and "cache:      /c\n" in blocks[2]
    assert "(metadata not known yet)" in blocks[3]
    assert render([]) == "no torrentfs daemons running"
