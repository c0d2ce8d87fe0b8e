"""Progress bars: on a terminal only. ``torrentfs create`` and ``seed`` are run with
stderr on a pseudo-terminal, and on a pipe."""

from __future__ import annotations

import io
import subprocess

from tests.harness.command import TORRENTFS, plain, run_on_pty
from tests.harness.payload import data_of
from torrentfs.cli.output import progress_bar


def test_no_bar_off_a_terminal():
    with progress_bar("hashing", stream=io.StringIO()) as update:
        assert update is None


def test_bar_counts_bytes_or_pieces():
    out = io.StringIO()
    with progress_bar("hashing", stream=out, force=True) as update:
        update(512 << 10, 1 << 20)
        update(1 << 20, 1 << 20)
    assert "hashing" in plain(out.getvalue()) and "1.0/1.0 MiB" in plain(out.getvalue())
    out = io.StringIO()
    with progress_bar("verifying", unit="pieces", stream=out, force=True) as update:
        update(7, 7)
    assert "7/7 pieces" in plain(out.getvalue()) and "100%" in plain(out.getvalue())


def test_create_and_seed_show_bars_on_a_terminal(tmp_path):
    payload = tmp_path / "big.bin"
    payload.write_bytes(data_of(3 << 20, 9))
    torrent = tmp_path / "big.torrent"
    code, out = run_on_pty([TORRENTFS, "create", str(payload), "-o", str(torrent),
                            "--piece-size", "256K"])
    assert code == 0, out
    assert "hashing" in plain(out) and "3.0/3.0 MiB" in plain(out) and "━" in plain(out)
    code, out = run_on_pty([TORRENTFS, "seed", str(torrent), str(tmp_path), "--no-dht",
                            "--no-lsd", "--no-port-mapping", "--port", "0", "--cache-dir", str(tmp_path / "c")],
                           until=b"seeding big.bin")
    assert code == 0, out
    assert "verifying" in plain(out) and "12/12 pieces" in plain(out)
    assert "Traceback" not in plain(out)


def test_no_bar_on_a_pipe(tmp_path):
    payload = tmp_path / "big.bin"
    payload.write_bytes(data_of(1 << 20, 9))
    r = subprocess.run([TORRENTFS, "create", str(payload), "-o", str(tmp_path / "t")],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0
    assert r.stderr == b""
