"""Web seeds (BEP 19), the trio shell: pieces fetched over HTTP range requests.

Each usable URL of the torrent's ``url-list`` becomes a ``WebSeed``: a key in the
picker that has every piece, like a peer. When the torrent schedules (a read, the
ticker, a freed request), ``fill`` asks the picker for the most urgent blocks, as
for a peer, and fetches each contiguous run of them (at most ``RUN_BYTES``) with
one range request per file it covers (``webseed.fetches``), ``SLOTS`` requests at a
time per seed, over one ``httpx.AsyncClient`` whose connections are kept alive.
Blocks go to ``Torrent.got_block`` as their bytes arrive, the same path as a peer's
blocks: gathered, hashed, written only if the piece verifies; nothing unverified is
ever returned.

Failures:
* down (connection refused, a timeout, a stalled body, 5xx, any unusable answer):
  the seed leaves the picker (its blocks go to peers at once) and comes back after
  ``webseed.retry_delay`` (5 s doubling to 5 min), the next request being the probe;
* wrong data: the seed is a supplier like any peer for ``blame.Blame``; when it is
  to be banned (two failed pieces it alone sent, or blocks proven wrong), the
  torrent calls ``drop``: given up for the session;
* a server that ignores ``Range``: for a range at a file's start the needed bytes
  are read and the connection closed; otherwise the seed is given up. What a seed
  can make us hold is one run per slot.

What a web seed needs of its torrent is ``Host``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from torrentfs import __version__
from torrentfs.core import wire
from torrentfs.core.geometry import Geometry
from torrentfs.core.metainfo import Metainfo
from torrentfs.core.picker import Picker
from torrentfs.core.ratelimit import Rate, TokenBucket
from torrentfs.core.webseed import (
    IgnoresRange,
    ResponseError,
    check_response,
    fetches,
    file_url,
    range_header,
    retry_delay,
    split_run,
    usable,
)

if TYPE_CHECKING:  # imported when a web seed is first used, not with the engine
    import httpx

log = logging.getLogger("torrentfs.webseed")

SLOTS = 3                # range requests in flight per web seed
RUN_BYTES = 1 << 20      # at most this much per request
HEADERS_TIMEOUT = 20.0   # from sending a request to its response headers
STALL_TIMEOUT = 20.0     # a body that sends nothing for this long is given up


class Host(Protocol):
    """What a web seed needs of its torrent (``engine.torrent.Torrent``)."""

    meta: Metainfo
    geometry: Geometry
    picker: Picker               # a web seed is a key in it, like a peer
    seed_only: bool              # then web seeds are never used
    download_limit: TokenBucket  # shared with the peers

    @property
    def spread(self) -> int: ...  # over how many sources an urgent piece is split

    def got_block(self, source, index: int, begin: int, data) -> None: ...
    def schedule(self) -> None: ...  # requests were freed: let every source pick


@dataclass(eq=False)
class _Run:
    """Contiguous blocks of one piece, fetched by one slot."""

    index: int
    blocks: list[tuple[int, int]]   # (begin, length), contiguous
    delivered: int = 0               # blocks handed to the torrent so far
    cancelled: set[int] = field(default_factory=set)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def begin(self) -> int:
        return self.blocks[0][0]

    @property
    def length(self) -> int:
        return sum(n for _, n in self.blocks)


class WebSeed:
    """One web seed. In the picker while up (``in_picker``); ``dropped`` for good."""

    source = "webseed"  # whose bytes, for the torrent's metrics (a peer's: its own)

    def __init__(self, torrent: Host, url: str) -> None:
        self.torrent = torrent
        self.url = url
        meta = torrent.meta
        self.urls = [None if f.padding else file_url(url, meta.name, f.path, meta.multi_file)
                     for f in meta.files]
        self.run_blocks = max(1, RUN_BYTES // torrent.geometry.block_size)
        self.down = Rate()
        self.failures = 0        # in a row
        self.retry_at = 0.0
        self.in_picker = False
        self.dropped = False
        self.requests = 0        # range requests sent
        self._runs: list[_Run] = []
        self.client: httpx.AsyncClient | None = None
        self.nursery: trio.Nursery | None = None

    def __repr__(self) -> str:
        return f"<web seed {self.url}>"

    @property
    def up(self) -> bool:
        return self.in_picker and not self.dropped

    # -- scheduling (called by the torrent, synchronously) -----------------------

    def fill(self, now: float) -> None:
        """Start range requests for the most urgent blocks, up to SLOTS at once. A seed
        whose retry time has come re-enters the picker first."""
        t = self.torrent
        if self.dropped or self.nursery is None or t.seed_only:
            return
        if not self.in_picker:
            if now < self.retry_at:
                return
            t.picker.add_peer(self)
            t.picker.got_have_all(self)
            self.in_picker = True
        while len(self._runs) < SLOTS:
            picks = t.picker.pick(self, now, self.run_blocks, t.spread)
            if not picks:
                return
            blocks, rest = split_run(picks)
            for index, begin, _ in rest:  # another slot (or peer) takes them
                t.picker.request_dropped(self, index, begin)
            run = _Run(blocks[0][0], [(b, n) for _, b, n in blocks])
            self._runs.append(run)
            self.nursery.start_soon(self._fetch, run)

    def send(self, msg: wire.Message) -> None:
        """The torrent cancels blocks as it cancels a peer's requests: they are not
        delivered, and a run left with nothing wanted is stopped."""
        if not isinstance(msg, wire.Cancel):
            return
        for run in self._runs:
            if run.index != msg.index:
                continue
            pending = [b for b, _ in run.blocks[run.delivered:]]
            if msg.begin in pending:
                run.cancelled.add(msg.begin)
                if run.cancelled.issuperset(pending):
                    run.scope.cancel()

    # -- fetching ------------------------------------------------------------------

    async def _fetch(self, run: _Run) -> None:
        import httpx
        try:
            with run.scope:
                await self._get(run)
            if not run.scope.cancelled_caught:
                self.failures = 0
        except IgnoresRange as e:
            self.drop(str(e))
        except httpx.InvalidURL as e:  # a name that makes no URL: it never will
            self.drop(f"cannot make a URL: {_one_line(e)}")
        except (ResponseError, httpx.HTTPError, trio.TooSlowError, OSError) as e:
            self._failed(e)
        except Exception as e:  # a bug of ours with this seed: lose the seed a while only
            log.exception("error while fetching from %r", self)
            self._failed(e)
        finally:
            self._runs.remove(run)
            picker = self.torrent.picker
            for begin, _ in run.blocks[run.delivered:]:
                picker.request_dropped(self, run.index, begin)
            self.torrent.schedule()

    async def _get(self, run: _Run) -> None:
        """Fetch the run, file range by file range, delivering blocks as they fill."""
        t = self.torrent
        buf = bytearray(run.length)
        filled = 0
        for f in fetches(t.geometry, self.urls, run.index, run.begin, run.length):
            if f.url is None:  # padding: zeros, not fetched
                filled += f.length
                self._deliver(run, buf, filled)
                continue
            headers = {"Range": range_header(f.offset, f.length),
                       "Accept-Encoding": "identity"}
            self.requests += 1
            with trio.fail_after(HEADERS_TIMEOUT):
                resp = await self.client.send(
                    self.client.build_request("GET", f.url, headers=headers), stream=True)
            try:
                try:
                    check_response(resp.status_code, resp.headers, f.offset, f.length)
                except ResponseError as e:
                    e.args = (f"{f.url}: {e}",)
                    e.retry_after = resp.headers.get("retry-after")
                    raise
                got, stalled = await self._body(resp, run, buf, filled, f.length)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await resp.aclose()
            filled += got
            if got < f.length:
                raise ResponseError(f"{f.url}: body {'stalled' if stalled else 'ended early'}"
                                    f" after {got} of {f.length} bytes")

    async def _body(self, resp: httpx.Response, run: _Run, buf: bytearray, filled: int,
                    length: int) -> tuple[int, bool]:
        """Read at most ``length`` bytes of the body into ``buf`` at ``filled``,
        delivering blocks as they fill; returns (bytes read, whether it stalled)."""
        limit = self.torrent.download_limit
        # A 206 is read to its end, so that its connection is kept alive; a 200
        # (the whole file) is left as soon as the bytes we need are in.
        whole = resp.status_code != 206
        got = 0
        with trio.CancelScope() as stall:
            stall.deadline = trio.current_time() + STALL_TIMEOUT
            async for chunk in resp.aiter_raw():
                take = min(len(chunk), length - got)
                if not take:
                    break  # more than the range: not read
                buf[filled + got:filled + got + take] = chunk[:take]
                got += take
                now = trio.current_time()
                self.down.add(take, now)
                stall.deadline = now + STALL_TIMEOUT
                self._deliver(run, buf, filled + got)
                if got == length and whole:
                    break
                if not limit.unlimited:
                    wait = limit.take(take, now)
                    if wait:
                        await trio.sleep(wait)
        return got, stall.cancelled_caught

    def _deliver(self, run: _Run, buf: bytearray, filled: int) -> None:
        """Hand the run's blocks whose bytes are all in to the torrent."""
        view = memoryview(buf)
        base = run.begin
        while run.delivered < len(run.blocks):
            begin, length = run.blocks[run.delivered]
            if begin - base + length > filled:
                return
            run.delivered += 1
            if begin not in run.cancelled:
                self.torrent.got_block(self, run.index, begin,
                                       view[begin - base:begin - base + length])

    # -- failures ------------------------------------------------------------------

    def _failed(self, error: BaseException) -> None:
        """The seed is down or broken: out of the picker until its retry time."""
        if not self.in_picker or self.dropped:
            return  # already backing off: the other slots' failures are the same one
        self.failures += 1
        delay = retry_delay(self.failures, getattr(error, "retry_after", None))
        self.retry_at = trio.current_time() + delay
        log.warning("%r failed (%s): retrying in %.0f s", self, _one_line(error), delay)
        self._leave_picker()
        if self.nursery is not None:
            self.nursery.start_soon(self._retry_later, delay)

    async def _retry_later(self, delay: float) -> None:
        """At the retry time, schedule: the seed re-enters the picker and its next
        request is the probe."""
        await trio.sleep(delay)
        self.torrent.schedule()

    def drop(self, why: str) -> None:
        """Give the seed up for the session."""
        if self.dropped:
            return
        self.dropped = True
        log.warning("%r dropped: %s", self, why)
        self._leave_picker()

    def _leave_picker(self) -> None:
        if self.in_picker:
            self.in_picker = False
            self.torrent.picker.remove_peer(self)
        for run in self._runs:
            run.scope.cancel()


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:300]


class WebSeeds:
    """The torrent's web seeds and the HTTP client they share."""

    def __init__(self, torrent: Host, urls, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.torrent = torrent
        self.transport = transport
        self.seeds: list[WebSeed] = []
        for url in dict.fromkeys(urls):
            if usable(url):
                self.seeds.append(WebSeed(torrent, url))
            else:
                log.info("web seed %r ignored: not an http(s) URL", url)

    def __iter__(self):
        return iter(self.seeds)

    def active(self) -> list[WebSeed]:
        """The seeds that may take requests now or later (not dropped)."""
        return [s for s in self.seeds if not s.dropped]

    def up_count(self) -> int:
        return sum(1 for s in self.seeds if s.up)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the seeds' requests until cancelled."""
        if not self.seeds or self.torrent.seed_only:
            task_status.started()
            return
        import httpx

        from torrentfs.net.httpclient import client as http_client
        timeout = httpx.Timeout(STALL_TIMEOUT, connect=10.0)
        limits = httpx.Limits(max_connections=SLOTS * len(self.seeds),
                              max_keepalive_connections=SLOTS * len(self.seeds))
        async with http_client(self.transport, follow_redirects=True,
                               max_redirects=5, timeout=timeout, limits=limits,
                               headers={"User-Agent": f"torrentfs/{__version__}"}
                               ) as client, trio.open_nursery() as nursery:
            for s in self.seeds:
                s.client, s.nursery = client, nursery
                log.info("web seed %s", s.url)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                for s in self.seeds:
                    s.nursery = None
