"""Issue 13's targets, as ratios to libtorrent measured in the same run, and the
table scripts/bench prints of where torrentfs stands against each: download speed
and CPU per GiB, how the blocks spread over the seeders, upload speed and CPU per GiB
(a libtorrent leecher fed by ``torrentfs seed`` vs by a libtorrent seeder:
``cpuload.run_upload``) and the CPU of an idle mount (``cpuload.run_idle``)."""

from __future__ import annotations

import statistics
from typing import Any

UPLOAD_ROWS = [  # (label, key, format)
    ("upload to a libtorrent leecher, MB/s", "MBps", "{:.1f}"),
    ("upload: seeder CPU s per GiB", "cpu_s_per_GiB", "{:.2f}"),
]


def _num(v: Any) -> float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _median(values: list[Any]) -> Any:
    nums = [v for v in map(_num, values) if v is not None]
    if nums:
        return statistics.median(nums)
    return next((v for v in values if isinstance(v, str)), None)


def combine_upload(runs: list[dict]) -> dict:
    """The medians over runs of ``run_upload``'s results."""
    out: dict[str, dict] = {}
    for system in ("torrentfs", "libtorrent"):
        per = [r[system] for r in runs if system in r]
        out[system] = {key: _median([p.get(key) for p in per if key in p])
                       for _, key, _ in UPLOAD_ROWS}
    return out


def max_share(runs: list[dict]) -> float | None:
    """The largest share of the sequential read's bytes that one seeder sent (the
    median over runs)."""
    shares = []
    for r in runs:
        pb = r.get("torrentfs", {}).get("peer_bytes") or {}
        total = sum(pb.values())
        if total:
            shares.append(max(pb.values()) / total)
    return statistics.median(shares) if shares else None


def rows(summary: dict, runs: list[dict], upload: dict | None,
         idle: dict | None) -> list[tuple[str, Any, str, bool | None]]:
    """(what, value, target, met) for each target of issue 13 measured."""
    tfs, lt = summary.get("torrentfs", {}), summary.get("libtorrent", {})
    out = []

    def ratio(what: str, a: Any, b: Any, target: str, ok) -> None:
        a, b = _num(a), _num(b)
        if a is None or b is None or not b:
            out.append((what, None, target, None))
        else:
            out.append((what, a / b, target, ok(a / b)))

    ratio("download MB/s, torrentfs / libtorrent", tfs.get("seq_MBps"), lt.get("seq_MBps"),
          ">= 0.6", lambda r: r >= 0.6)
    ratio("download CPU s per GiB, torrentfs / libtorrent", tfs.get("cpu_s_per_GiB"),
          lt.get("cpu_s_per_GiB"), "<= 1.5", lambda r: r <= 1.5)
    share = max_share(runs)
    out.append(("largest share of one seeder (seq read)", share, "<= 0.6",
                None if share is None else share <= 0.6))
    if upload:
        u_t, u_l = upload.get("torrentfs", {}), upload.get("libtorrent", {})
        ratio("upload MB/s, from torrentfs seed / from libtorrent", u_t.get("MBps"),
              u_l.get("MBps"), ">= 0.6", lambda r: r >= 0.6)
        ratio("upload CPU s per GiB, torrentfs seed / libtorrent", u_t.get("cpu_s_per_GiB"),
              u_l.get("cpu_s_per_GiB"), "<= 1.5", lambda r: r <= 1.5)
    if idle:
        pct = _num(idle.get("core_pct"))
        out.append((f"idle mount, {idle.get('peers_connected', '?')} peers connected: "
                    "% of a core", pct,
                    "<= 1", None if pct is None else pct <= 1.0))
    return out


def upload_table(upload: dict) -> str:
    lines = ["| measurement | torrentfs seed | libtorrent seeder |", "|---|---:|---:|"]
    for label, key, spec in UPLOAD_ROWS:
        cells = []
        for system in ("torrentfs", "libtorrent"):
            v = upload.get(system, {}).get(key)
            cells.append("-" if v is None else v if isinstance(v, str) else spec.format(v))
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def targets_table(target_rows: list[tuple[str, Any, str, bool | None]]) -> str:
    lines = ["| issue 13 target | measured | target | met |", "|---|---:|---:|---|"]
    for what, value, target, met in target_rows:
        shown = "-" if value is None else f"{value:.2f}"
        lines.append(f"| {what} | {shown} | {target} | "
                     f"{'-' if met is None else 'yes' if met else 'NO'} |")
    return "\n".join(lines)
