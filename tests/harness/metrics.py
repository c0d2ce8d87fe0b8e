"""Scraping a daemon's ``--metrics`` endpoint in tests: GET /metrics with httpx,
parsed with prometheus_client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, dict[tuple, float]]


def scrape(host: str, port: int, timeout: float = 10.0) -> Samples:
    """{sample name: {labels as a sorted tuple of pairs: value}} from GET /metrics."""
    where = f"[{host}]" if ":" in host else host
    r = httpx.get(f"http://{where}:{port}/metrics", timeout=timeout)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def by_source(samples: Samples, info_hash: str) -> dict[str, int]:
    """Bytes received by source (origin, webseed, peer) of one torrent."""
    return {dict(k)["source"]: int(v)
            for k, v in samples.get("torrentfs_received_bytes_total", {}).items()
            if dict(k)["infohash"] == info_hash}


def one(samples: Samples, name: str, info_hash: str) -> float:
    """The value of a per-torrent sample without other labels."""
    [value] = [v for k, v in samples[name].items() if dict(k).get("infohash") == info_hash]
    return value
