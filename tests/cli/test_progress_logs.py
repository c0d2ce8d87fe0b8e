"""Progress bars and log lines do not mix on a terminal (issue 12): while ``seed``
draws its verification bar, each log line is printed on a line of its own (the bar
cleared first, then drawn again below it)."""

from __future__ import annotations

import re

from tests.harness.command import TORRENTFS, run_on_pty
from tests.harness.payload import data_of

LOG_LINE = re.compile(rb"\d\d:\d\d:\d\d (?:DEBUG|INFO|WARNING|ERROR) ")


def test_log_lines_are_never_on_the_bars_line(tmp_path):
    payload = tmp_path / "big.bin"
    payload.write_bytes(data_of(8 << 20, 9))
    torrent = tmp_path / "big.torrent"
    code, out = run_on_pty([TORRENTFS, "create", str(payload), "-o", str(torrent),
                            "--piece-size", "64K"])
    assert code == 0, out
    code, out = run_on_pty([TORRENTFS, "seed", str(torrent), str(tmp_path), "--no-dht",
                            "--no-lsd", "--port", "0", "--cache-dir", str(tmp_path / "c"),
                            "-v"], until=b"seeding big.bin")
    assert code == 0, out
    text = re.sub(rb"\x1b\[[0-9;]*m", b"", out)  # colours only; cursor moves stay
    # while the bar is drawn (until "seeding ...", which the Ctrl-C may cut short)
    text = text[:text.index(b"seeding big.bin")]
    assert b"verifying" in text
    starts = [m.start() for m in LOG_LINE.finditer(text)]
    assert starts, text
    for at in starts:
        before = text[max(0, at - 5):at]
        # a log line starts a fresh line: after a newline, or after the bar's line
        # was cleared ("\r" + erase line)
        assert before.endswith(b"\n") or before.endswith(b"\r\x1b[2K"), text[at - 200:at + 80]
