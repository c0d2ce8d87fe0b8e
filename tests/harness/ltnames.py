"""What libtorrent makes of a torrent's names: ``lt_file_paths(torrents)`` loads each
.torrent with python3-libtorrent (under /usr/bin/python3, in one child process) and
gives its files' paths as libtorrent shows them (padding files left out), or
``None`` for a torrent libtorrent refuses. Symlinks come with their target."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.harness.swarm import SYSTEM_PYTHON

_SCRIPT = r"""
import json, sys
import libtorrent as lt
out = []
for path in json.load(sys.stdin):
    try:
        ti = lt.torrent_info(path)
    except Exception:
        out.append(None)
        continue
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        flags = int(fs.file_flags(i))
        if flags & 1:  # a padding file: never shown
            continue
        files.append([fs.file_path(i), fs.symlink(i) if flags & 8 else None])
    out.append(files)
json.dump(out, sys.stdout)
"""


def lt_file_paths(torrents: list[Path]) -> list[list[tuple[str, str | None]] | None]:
    r = subprocess.run([SYSTEM_PYTHON, "-c", _SCRIPT], input=json.dumps([str(p) for p in torrents]),
                       capture_output=True, text=True, timeout=120, check=True)
    return [None if files is None else [tuple(f) for f in files] for files in json.loads(r.stdout)]
