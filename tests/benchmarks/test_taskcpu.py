"""benchmarks/taskcpu's summary: per node, by task role and timed method."""

import json

from benchmarks.taskcpu import summary


def test_summary_adds_up_per_node(tmp_path):
    for pid, scale in ((1, 1), (2, 3)):
        doc = {"proc": 2.0 * scale, "main": 1.5 * scale,
               "cpu": {"PeerSession._receiver": int(0.5e9 * scale),
                       "Uploader.run | _real_async_yield": int(0.25e9 * scale)},
               "steps": {"PeerSession._receiver": 100 * scale,
                         "Uploader.run | _real_async_yield": 50 * scale},
               "fcpu": {"Torrent.on_blocks": int(0.1e9 * scale)},
               "fcalls": {"Torrent.on_blocks": 10 * scale}}
        (tmp_path / f"out.{pid}.json").write_text(json.dumps(doc))
    (tmp_path / "out.3.json").write_text(json.dumps({"proc": 0.1}))  # left out: idle
    lines = summary.summary(summary.load(str(tmp_path)))
    assert lines[0] == ("2 daemons; per node: 4.00 CPU s, main thread 3.00, task steps "
                        "1.50, run loop 1.50, other threads 1.00")
    receiver = next(line for line in lines if line.endswith("PeerSession._receiver"))
    assert receiver.split()[:4] == ["1.000", "25.0%", "200", "5000.0"]
    method = next(line for line in lines if line.endswith("Torrent.on_blocks"))
    assert method.split()[:4] == ["0.200", "5.0%", "20", "10000.0"]


def test_no_files_says_so(tmp_path):
    assert summary.summary(summary.load(str(tmp_path))) == ["no daemon files"]
