"""What the commands that serve (mount, mount --watch, seed) share: running trio
with one-line errors, the pid file ``torrentfs unmount`` and ``status`` find the
daemon by, the DHT node, and the ``--metrics`` endpoint."""

from __future__ import annotations

import errno
import logging
import os
import socket
from functools import partial
from pathlib import Path

from torrentfs.cli.errors import check_port
from torrentfs.cli.output import CliError
from torrentfs.disk.private import private_dir, write_private

log = logging.getLogger("torrentfs")


def run(main, port: int | None = None) -> None:
    """``trio.run(main)`` for the commands that serve: a user's error raised inside
    (a CliError, a SourceError, a MountError, a foreseeable OSError such as the
    TCP ``port`` in use) comes out as one CliError (not in an exception group),
    and Ctrl-C before the signal receivers are up ends quietly."""
    import trio

    from torrentfs.cli.errors import leaf, one_line
    try:
        trio.run(main)
    except BaseException as e:  # noqa: BLE001 - sorted here, re-raised if not ours
        if isinstance(leaf(e), KeyboardInterrupt):
            return
        error = one_line(e, port)
        if error is None:
            raise
        raise error from None


def check_ports(args) -> None:
    """The ports asked for are free, checked before any long work (a seed's
    verification, a mount's daemon): one line if not."""
    check_port(getattr(args, "port", 0) or 0)
    dht_port = getattr(args, "dht_port", None)
    if dht_port and not getattr(args, "no_dht", False):
        check_port(dht_port, "use UDP port ... for the DHT", "--dht-port",
                   socket.SOCK_DGRAM)
    check_metrics(getattr(args, "metrics", None))


def show_listen(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def metrics_error(addr: tuple[str, int], e: OSError) -> CliError:
    """The one line for ``--metrics ADDR:PORT`` that cannot be served."""
    where = f"cannot serve metrics on {show_listen(addr)}"
    if isinstance(e, socket.gaierror):
        why = f"{addr[0]!r} is no address or name known here"
    elif e.errno == errno.EADDRINUSE:
        why = "the port is in use (another torrentfs or program has it)"
    elif e.errno == errno.EADDRNOTAVAIL:
        why = f"{addr[0]} is not an address of this machine"
    elif e.errno == errno.EACCES and addr[1] < 1024:
        why = "ports below 1024 need root"
    else:
        why = e.strerror or str(e)
    return CliError(f"{where}: {why}: choose another with --metrics ADDR:PORT")


def check_metrics(addr: tuple[str, int] | None) -> None:
    """``--metrics``' address can be listened on, checked before any long work (a
    seed's verification, a mount's daemon): one line if not."""
    if addr is None:
        return
    host, port = addr
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        for family, kind, proto, _, sockaddr in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as trio's
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
    except OSError as e:
        raise metrics_error(addr, e) from None


async def start_metrics(nursery, args, torrents) -> None:
    """With ``--metrics ADDR:PORT``, serve Prometheus metrics there for as long as
    ``nursery`` runs: ``torrents()`` gives the torrents served, read at each scrape
    (``engine.metrics``, ``net.metricsserver``). A port taken since the check is
    one line too."""
    addr = getattr(args, "metrics", None)
    if addr is None:
        return
    from torrentfs.engine.metrics import registry
    from torrentfs.net import metricsserver
    try:
        listeners = await metricsserver.listen(addr[0], addr[1])
    except OSError as e:
        raise metrics_error(addr, e) from None
    port = metricsserver.bound_port(listeners)
    nursery.start_soon(metricsserver.serve, listeners, registry(torrents))
    log.info("metrics on http://%s/metrics", show_listen((addr[0] or "0.0.0.0", port)))


def check_someone_to_ask(magnet, peers, dht: bool | None) -> None:
    """A magnet whose metadata must be fetched needs someone to fetch it from: its
    trackers, its x.pe peers, --peer, or the DHT (``dht`` None: a command without
    one). With none of them, one line now rather than a timeout later."""
    if magnet.trackers or magnet.peers or peers or dht:
        return
    how = "--peer HOST:PORT" + ("" if dht is None else ", or leave the DHT on (no --no-dht)")
    raise CliError(f"magnet {magnet.info_hash_hex}: nobody to ask for its metadata (it "
                   f"names no trackers (tr=) or peers (x.pe=)"
                   + ("" if dht is None else " and the DHT is off") + f"): give {how}")


def write_pid(state: Path) -> None:
    """Say that this process serves the mount whose state file is ``state``."""
    private_dir(state.parent)
    write_private(state, f"{os.getpid()}\n".encode())


def free_port() -> int:
    """A TCP port free right now (announced while the metadata is fetched)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


async def start_dht(nursery, args, cache: Path, port: int, transport=None):
    """A DHT node on UDP port ``port`` (or --dht-port) in ``nursery``, or None with
    --no-dht. Callers keep private torrents (BEP 27) off it. ``transport``: the
    torrent's uTP socket, shared with the DHT if on that port."""
    if args.no_dht:
        return None
    return await open_dht(nursery, port, args=args, cache=cache, transport=transport)


async def open_dht(nursery, port: int, *, args, cache: Path, transport=None):
    """Start the DHT node (on ``--dht-port``, else UDP ``port`` if free, else any),
    and an IPv6 node beside it on the same port where the host has IPv6 (BEP 32).
    The IPv4 node shares uTP's socket, as libtorrent does: ``transport``'s if given
    and on that port; else, unless --no-utp, a uTP socket of its own that a torrent
    started later takes over (``dht.transport``: a magnet's DHT comes up before its
    torrent). The IPv6 node shares that socket too when it is dual-stack."""
    from torrentfs.net.dht import DHT, DhtPair
    dht = await _open_dht4(nursery, port, args=args, cache=cache, transport=transport)
    sock = dht.transport   # a dual-stack uTP socket carries the IPv6 node too
    dht6 = DHT(host="::", port=dht.port, bootstrap=args.dht_bootstrap,
               state_path=cache / "dht6.state",
               transport=sock if sock is not None and sock.serves(True) else None)
    try:
        await nursery.start(dht6.run)
    except OSError as e:
        log.info("no IPv6 DHT node (UDP port %d: %s): IPv4 only", dht.port, e.strerror or e)
        return dht
    return DhtPair(dht, dht6)


async def _open_dht4(nursery, port: int, *, args, cache: Path, transport=None):
    """The IPv4 DHT node of ``open_dht``."""
    from torrentfs.net.dht import DHT
    explicit = args.dht_port is not None
    state = cache / "dht.state"
    if transport is not None and (not explicit or args.dht_port == transport.port):
        dht = DHT(bootstrap=args.dht_bootstrap, state_path=state, transport=transport)
        await nursery.start(dht.run)
        return dht
    if transport is None and not explicit and not getattr(args, "no_utp", False):
        from torrentfs.net.utp import UtpSocket
        sock = UtpSocket(port=port)
        try:
            await nursery.start(sock.run)
        except OSError as e:
            log.info("UDP port %d is taken (%s): the DHT takes another", port, e.strerror)
        else:
            dht = DHT(bootstrap=args.dht_bootstrap, state_path=state, transport=sock)
            await nursery.start(dht.run)
            return dht
    dht = DHT(port=args.dht_port if explicit else port, bootstrap=args.dht_bootstrap,
              state_path=state)
    try:
        await nursery.start(dht.run)
    except OSError as e:
        if explicit:
            raise CliError(f"cannot use UDP port {args.dht_port} for the DHT: "
                           f"{e.strerror}") from None
        log.info("UDP port %d is taken (%s): the DHT takes another", dht.port, e.strerror)
        dht.port = 0
        await nursery.start(dht.run)
    return dht


def map_ports(nursery, args, tcp_port: int, dht=None) -> None:
    """Map the TCP listen port, and the DHT's UDP port, on the router (PCP, else
    NAT-PMP, else UPnP IGD: ``net.portmap``) for as long as ``nursery`` runs, unless
    --no-port-mapping."""
    if getattr(args, "no_port_mapping", False):
        return
    from torrentfs.net.portmap import PortMapper
    ports = [("TCP", tcp_port)] + ([("UDP", dht.port)] if dht is not None else [])
    nursery.start_soon(PortMapper(ports).run)


def keep_found(nursery, dht, torrent) -> None:
    """Find the torrent's peers on the DHT, and announce our port there, for as
    long as it runs: in each of its swarms (a hybrid's v2 one too)."""
    from torrentfs.engine.swarms import adder, swarm_hashes
    from torrentfs.net.dht import keep_torrent_found
    for info_hash in swarm_hashes(torrent.meta):
        add = torrent.add_peer if info_hash == torrent.meta.info_hash else partial(
            lambda h, addr: adder(torrent)(h, [addr]), info_hash)
        nursery.start_soon(partial(keep_torrent_found, dht, info_hash,
                                   port=lambda: torrent.port, add_peer=add,
                                   peer_count=lambda: len(torrent.sessions)))
