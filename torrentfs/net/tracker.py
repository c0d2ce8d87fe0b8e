"""Announcing to HTTP(S) and UDP trackers: the trio shell over ``announce`` (HTTP)
and ``udpclient`` (UDP, BEP 15).

``Announcer.run`` announces ``started``, then re-announces at the interval the
tracker gives, handing every peer it hears of to a callback; when cancelled it sends
``stopped`` (bounded by a short timeout). Trackers are tried tier by tier (BEP 12
order, the first that answers wins); a failing round is retried with backoff.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Callable

import trio

from torrentfs.core.announce import (
    AnnounceRequest,
    AnnounceResponse,
    TrackerError,
    announce_url,
    next_announce_in,
    parse_response,
)
from torrentfs.net.udpclient import UdpTrackerClient

if TYPE_CHECKING:  # imported when the first HTTP announce is made, not with the engine
    import httpx

log = logging.getLogger("torrentfs.tracker")

TIMEOUT = 15.0
STOP_TIMEOUT = 3.0
MAX_BODY = 1 << 20
RETRY_MIN, RETRY_MAX = 15.0, 600.0


async def announce_http(client: httpx.AsyncClient, url: str, req: AnnounceRequest,
                        timeout: float = TIMEOUT) -> AnnounceResponse:
    """One announce. Raises ``TrackerError`` with a one-line reason on any failure."""
    import httpx
    if not url.startswith(("http://", "https://")):
        raise TrackerError(f"unsupported tracker URL {url}")
    try:
        with trio.fail_after(timeout):
            async with client.stream("GET", announce_url(url, req)) as resp:
                body = b""
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise TrackerError("tracker response too large")
    except trio.TooSlowError:
        raise TrackerError(f"tracker {url} did not answer in {timeout:.0f} s") from None
    except httpx.HTTPError as e:
        raise TrackerError(f"tracker {url} unreachable: {e or type(e).__name__}") from None
    if resp.status_code != 200:
        raise TrackerError(f"tracker {url} answered HTTP {resp.status_code}")
    return parse_response(body)


@dataclass
class TrackerState:
    """How one tracker last answered, for ``torrentfs status``: ``status`` is
    ``"ok"`` (it answered, ``peers`` of them), ``"error"`` (``message`` says what:
    unreachable, refused, ...) or ``"not tried"``; ``at`` is the wall-clock time of
    that answer (None if not tried), ``warning`` a warning it sent with an answer."""
    url: str
    status: str = "not tried"
    message: str = ""
    peers: int = 0
    at: float | None = None
    warning: str | None = None

    def answered(self, peers: int, warning: str | None, at: float) -> None:
        self.status, self.message, self.peers, self.at = "ok", "", peers, at
        self.warning = warning

    def failed(self, message: str, at: float) -> None:
        self.status, self.message, self.at = "error", message, at

    def as_dict(self) -> dict:
        return asdict(self)


class Announcer:
    """Keeps a torrent announced to its trackers.

    ``stats()`` returns ``(uploaded, downloaded, left)`` at the time of each announce.
    ``on_peers(list of (host, port))`` is called with each answer's peers.
    """

    def __init__(self, tiers: list[list[str]], info_hash: bytes, peer_id: bytes,
                 port: Callable[[], int], stats: Callable[[], tuple[int, int, int]],
                 on_peers: Callable[[list[tuple[str, int]]], None],
                 udp: UdpTrackerClient | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 also: tuple[bytes, ...] = (),
                 on_other_peers: Callable[[bytes, list[tuple[str, int]]], None] | None = None
                 ) -> None:
        self.tiers = [list(t) for t in tiers if t]
        self.info_hash = info_hash
        # More info-hashes announced to each tracker that answers for ``info_hash``
        # (a hybrid torrent's v2 swarm: its v2 info-hash cut to 20 bytes). The peers
        # found only there go to ``on_other_peers(info_hash, peers)`` if given, else
        # to ``on_peers`` with the others.
        self.also = tuple(also)
        self.on_other_peers = on_other_peers
        self.peer_id = peer_id
        self.port = port
        self.stats = stats
        self.on_peers = on_peers
        self.transport = transport  # tests put a fake HTTP layer here
        self.key = secrets.token_hex(4)
        self.last_error: str | None = None
        self.last_response: AnnounceResponse | None = None
        self._announced: set[str] = set()
        self._tracker_id: bytes | None = None
        self._pending_event = ""
        self._wake = trio.Event()
        self.udp = udp or UdpTrackerClient()
        # The last answer or error of each tracker, for ``torrentfs status``.
        self.states: dict[str, TrackerState] = {
            url: TrackerState(url) for tier in self.tiers for url in tier}
        self.clock: Callable[[], float] = time.time  # when an answer came (wall clock)

    def tracker_states(self) -> list[dict]:
        """Every tracker's last answer or error, tier order, as plain data."""
        return [self.states[url].as_dict() for tier in self.tiers for url in tier
                if url in self.states]

    def completed(self) -> None:
        """The download finished: announce ``completed`` now (once)."""
        if self._announced and self._pending_event != "completed":
            self._pending_event = "completed"
            self._wake.set()

    def _request(self, event: str, info_hash: bytes | None = None) -> AnnounceRequest:
        up, down, left = self.stats()
        info_hash = info_hash or self.info_hash
        return AnnounceRequest(info_hash, self.peer_id, self.port(), up, down, left, event,
                               key=self.key, tracker_id=self._tracker_id
                               if info_hash == self.info_hash else None)

    async def _announce_also(self, client: httpx.AsyncClient, url: str, event: str,
                             resp: AnnounceResponse) -> AnnounceResponse:
        """Announce the other info-hashes (``also``) to the tracker that answered;
        ``resp`` with their peers added (unless ``on_other_peers`` takes them). A
        failure there is logged only."""
        peers = list(resp.peers)
        for other in self.also:
            try:
                more = await self._announce_to(client, url, self._request(event, other))
            except TrackerError as e:
                log.info("%s (for %s)", e, other.hex())
                continue
            new = [p for p in more.peers if p not in peers]
            if self.on_other_peers is not None:
                if new:
                    self.on_other_peers(other, new)
            else:
                peers += new
        return replace(resp, peers=tuple(peers)) if len(peers) != len(resp.peers) else resp

    async def announce(self, client: httpx.AsyncClient, event: str = "") -> AnnounceResponse:
        """Announce to the first tracker that answers, tier by tier; a tracker that
        answers moves to the front of its tier (BEP 12). Raises ``TrackerError`` if
        none answers."""
        errors = []
        for tier in self.tiers:
            for url in list(tier):
                try:
                    resp = await self._announce_to(client, url, self._request(event))
                except TrackerError as e:
                    errors.append(str(e))
                    log.info("%s", e)
                    self._state(url).failed(str(e), self.clock())
                    continue
                if self.also:
                    resp = await self._announce_also(client, url, event, resp)
                self._state(url).answered(len(resp.peers), resp.warning, self.clock())
                tier.remove(url)
                tier.insert(0, url)
                self._announced.add(url)
                if resp.tracker_id:
                    self._tracker_id = resp.tracker_id
                if resp.warning:
                    log.warning("tracker %s warns: %s", url, resp.warning)
                self.last_error = None
                self.last_response = resp
                log.info("announced to %s: %d peers, next in %d s",
                         url, len(resp.peers), next_announce_in(resp))
                return resp
        self.last_error = errors[-1] if errors else "no trackers"
        raise TrackerError(self.last_error)

    def _state(self, url: str) -> TrackerState:
        return self.states.setdefault(url, TrackerState(url))

    async def _announce_to(self, client: httpx.AsyncClient, url: str, req: AnnounceRequest,
                           timeout: float = TIMEOUT) -> AnnounceResponse:
        """One announce to one tracker, over UDP for ``udp://`` URLs (whose client
        bounds its own retries), else over HTTP(S)."""
        if url.startswith("udp://"):
            return await self.udp.announce(url, req)
        return await announce_http(client, url, req, timeout)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Announce until cancelled; then announce ``stopped`` within a short bound."""
        if not self.tiers:
            task_status.started()
            return
        from torrentfs.net.httpclient import client as http_client
        async with http_client(self.transport, follow_redirects=True, max_redirects=3,
                               headers={"User-Agent": "torrentfs/0.1"}) as client, \
                self.udp:
            task_status.started()
            event, retry = "started", RETRY_MIN
            try:
                while True:
                    try:
                        resp = await self.announce(client, event)
                    except TrackerError:
                        await trio.sleep(retry)
                        retry = min(retry * 2, RETRY_MAX)
                        continue
                    event, retry = "", RETRY_MIN
                    if resp.peers:
                        self.on_peers(list(resp.peers))
                    self._wake = trio.Event()
                    with trio.move_on_after(next_announce_in(resp)):
                        await self._wake.wait()
                    event, self._pending_event = self._pending_event, ""

            finally:
                if self._announced:
                    with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT):
                        await self._announce_stopped(client)

    async def _announce_stopped(self, client: httpx.AsyncClient) -> None:
        for url in list(self._announced):
            for info_hash in (self.info_hash, *self.also):
                try:
                    await self._announce_to(client, url, self._request("stopped", info_hash),
                                            STOP_TIMEOUT)
                except TrackerError as e:
                    log.info("stopped announce: %s", e)
