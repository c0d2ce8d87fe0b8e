"""benchmarks/cluster_report.py: the Kraken-style figures of a cluster phase."""

import pytest

from benchmarks.cluster_report import ideal_seconds, percentile, sources, summary, verdicts

MIB = 1 << 20


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99
    assert percentile([10, 0], 0) == 0 and percentile([10, 0], 100) == 10


def test_ideal_time_is_the_origin_alone_for_one_node_and_size_over_cap_for_many():
    assert ideal_seconds(100, 1, origin_rate=10, node_rate=10) == 10
    # 1,000 nodes at 10 B/s each, origin 10 B/s: the swarm's upload could carry it
    # all in 100 * 1000 / 10010 s, but one copy must leave the origin first
    assert ideal_seconds(100, 1000, 10, 10) == 10
    # a fast origin: the nodes' own uploads bound it
    assert ideal_seconds(100, 4, origin_rate=1000, node_rate=10) == pytest.approx(400 / 1040)


def phase(times, flows, cpu, rx, tx, copies=1.1):
    return {"nodes": len(times), "reads": [{"seconds": t} for t in times], "flows": flows,
            "node_cpu_s": cpu, "node_rx": rx, "node_tx": tx, "origin_copies": copies}


def test_summary_of_a_phase():
    flows = {"node1": {"origin": 3 * MIB, "node2": 1 * MIB},
             "node2": {"origin": 1 * MIB, "node1": 3 * MIB, "tracker": 0}}
    res = phase([10.0, 20.0], flows, cpu=[1.0, None], rx=[4 * MIB, 4 * MIB],
                tx=[1 << 30, 0])
    s = summary(res, size=4 * MIB, origin_rate=MIB, node_rate=MIB)
    assert s["ideal_s"] == 4.0  # one copy through the 1 MiB/s origin
    assert s["p50_s"] == 15.0 and s["p50_over_ideal"] == 15.0 / 4
    assert s["max_s"] == 20.0 and s["p99_over_p50"] == pytest.approx(19.9 / 15)
    assert sources(res) == [(3 * MIB, 1 * MIB), (1 * MIB, 3 * MIB)]
    assert s["from_origin_share"] == 0.5
    assert s["cpu_s_per_gib_median"] == pytest.approx(1.0 * (1 << 30) / ((1 << 30) + 4 * MIB))
    targets = {"p50_over_ideal": 1.3, "p99_over_p50": 1.3, "origin_copies": 1.5,
               "cpu_s_per_gib": 10}
    said = verdicts(s, targets)
    assert said[0].endswith("misses <= 1.3") and "origin copies 1.10 meets" in said[2]


def test_a_node_that_did_not_finish_is_left_out_of_the_percentiles():
    res = phase([5.0, None], {}, cpu=[None, None], rx=[0, 0], tx=[0, 0])
    s = summary(res, size=MIB, origin_rate=MIB, node_rate=MIB)
    assert s["finished"] == 1 and s["p99_s"] == 5.0 and s["cpu_s_per_gib_median"] is None


def test_the_reference_table_gives_torrentfs_over_libtorrent():
    from benchmarks.cluster_report import reference_lines

    def ph(secs, cpu, copies):
        p = phase([secs], {}, cpu=[cpu], rx=[MIB], tx=[MIB], copies=copies)
        p.update(slowest_s=secs, node_cpu_reads_s=[cpu], ok=True)
        return p

    r = {"args": {"origin_rate": MIB, "node_rate": MIB}, "size_bytes": MIB,
         "torrentfs_1": ph(10.0, 1.0, 1.0), "torrentfs_n": ph(30.0, 4.0, 1.2),
         "libtorrent_1": ph(10.0, 0.5, 1.0), "libtorrent_n": ph(20.0, 1.0, 1.5)}
    r["summary_n"] = summary(r["torrentfs_n"], MIB, MIB, MIB)
    lines = reference_lines(r, 1)
    assert lines[1].split() == ["torrentfs", "libtorrent", "/", "libtorre"]
    rows = {ln.split("  ")[1].strip(): ln.split() for ln in lines[2:-1]}
    assert rows["time(1) / time(1)"][-3:] == ["3.00", "2.00", "1.50"]
    assert rows["origin upload (copies)"][-3:] == ["1.20", "1.50", "0.80"]
    # 4 CPU s for 2 MiB moved: 2,048 s per GiB; libtorrent's 512
    assert rows["CPU s per GiB moved, median node"][-3:] == ["2048.00", "512.00", "4.00"]
    assert r["summary_libtorrent"]["cpu_s_per_gib_median"] == 512
    assert lines[-1].endswith("byte-exact: yes")


def test_the_reference_table_takes_btfs_beside_libtorrent():
    from benchmarks.cluster_report import reference_lines

    def ph(secs, cpu):
        p = phase([secs], {}, cpu=[cpu], rx=[MIB], tx=[MIB])
        p.update(slowest_s=secs, node_cpu_reads_s=[cpu], ok=True)
        return p

    r = {"args": {"origin_rate": MIB, "node_rate": MIB}, "size_bytes": MIB,
         "torrentfs_1": ph(10.0, 1.0), "torrentfs_n": ph(30.0, 4.0),
         "libtorrent_1": ph(10.0, 0.5), "libtorrent_n": ph(20.0, 1.0),
         "btfs_1": ph(10.0, 2.0), "btfs_n": ph(40.0, 8.0)}
    r["summary_n"] = summary(r["torrentfs_n"], MIB, MIB, MIB)
    lines = reference_lines(r, 1)
    assert lines[1].split() == ["torrentfs", "libtorrent", "btfs", "/", "libtorre", "/", "btfs"]
    ratio_row = next(ln for ln in lines if "time(1) / time(1)" in ln).split()[-5:]
    assert ratio_row == ["3.00", "2.00", "4.00", "1.50", "0.75"]
    assert lines[-1].endswith("btfs's reads byte-exact: yes")


def test_libtorrent_runs_beside_by_default_but_not_under_app_caps():
    from benchmarks.cluster import parse_args

    assert parse_args([]).libtorrent is True
    assert parse_args(["--no-libtorrent"]).libtorrent is False
    # --app-caps caps the torrentfs daemons themselves: nothing would cap libtorrent
    assert parse_args(["--app-caps", "--no-http"]).libtorrent is False
    with pytest.raises(SystemExit):
        parse_args(["--app-caps", "--no-http", "--libtorrent"])


def test_the_reports_name_the_interpreter_the_daemons_run_on():
    import os
    import platform
    import sys

    from benchmarks.report import python_build

    said = python_build()
    assert said.startswith(platform.python_version() + " (")
    assert said.endswith(os.path.realpath(sys._base_executable) + ")")
