"""What a mount imports before it is ready (issue 13: mount -> listed is mostly
imports). Modules needed only once peers are dialed stay out of that path."""

from __future__ import annotations

import subprocess
import sys

# What the mount command and its daemon import before the mount answers: the command
# line, the engine, the filesystem, the daemon's set-up.
MOUNT_PATH = ("torrentfs.cli.main", "torrentfs.engine.torrent", "torrentfs.fs.fuse",
              "torrentfs.cli.serve")


def test_the_mount_path_does_not_import_cryptography():
    """RC4 (MSE) is imported at the first encrypted connection: about 25 ms of CPU."""
    code = (f"import sys, {', '.join(MOUNT_PATH)}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_rc4_still_works_once_asked_for():
    from torrentfs.net.mse import rc4
    enc, dec = rc4(b"k" * 20), rc4(b"k" * 20)
    assert dec.update(enc.update(b"hello")) == b"hello"
