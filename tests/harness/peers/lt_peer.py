#!/usr/bin/python3
"""A real libtorrent (2.0, Debian's python3-libtorrent) peer for integration tests.

Runs under the system interpreter /usr/bin/python3, not the project venv.

    lt_peer.py seed   --torrent T --save-path DIR --listen IP:PORT
                      [--utp] [--ready-file F] [--upload-rate BPS] [--lsd]
    lt_peer.py leech  (--torrent T | --magnet URI) --save-path DIR --listen IP:PORT
                      [--peer IP:PORT ...] [--timeout S] [--utp]
                      [--download-rate BPS] [--ready-file F] [--gate F] [--done-file F]
    lt_peer.py create --path P --out T [--tracker URL ...] [--piece-size N]
                      [--version v1|v2|hybrid] [--symlinks]
    lt_peer.py hashes --torrent T
    lt_peer.py dht    --listen IP:PORT --ready-file F [--dht-node IP:PORT ...]

seed and leech also take --dht-node IP:PORT (repeatable): the DHT is then on, joined
through those nodes (never the public routers), with the settings a network of
loopback addresses needs; a seeder announces itself at once when seeding and every
5 s after (the DHT nodes log each announce they receive); a leecher asks the DHT for
peers every few seconds while it has none.
dht:    a DHT-only node (no torrent): writes its real port to --ready-file once
        listening, logs its routing table size, runs until SIGTERM/SIGINT.

seed:   checks the data already in DIR, waits until seeding (and, when the
        torrent has trackers, for the first tracker reply, bounded), writes the
        real listen port to --ready-file atomically, then seeds until
        SIGTERM/SIGINT and exits 0.
leech:  downloads, rechecks the data on disk, exits 0 when complete; exits 1
        with a status line on stderr on timeout or error. With --done-file it
        writes that file when complete and seeds on until SIGTERM; with --gate
        FILE it downloads nothing until FILE exists (scripts/cluster's nodes).
        With --magnet it starts from a magnet link (the metadata comes from
        peers, BEP 9).
        --ready-file gets its listen port once it is connected to a peer.
hashes: prints libtorrent's v1 and v2 info-hashes of T (hex, zeros when absent).
create: writes a .torrent of a file or directory (v1-only unless --version says
        v2 (BEP 52 only) or hybrid (libtorrent's own default: v1 and v2)) and
        prints its info-hash (hex) on stdout: the v1 one, or for v2-only the
        v2 one cut to 20 bytes (what trackers and handshakes use). With
        --version, the full v2 info-hash follows on a second line.

seed and leech take --encryption forced: MSE/PE in and out, RC4 only (plain
connections refused); by default plain and encrypted are accepted, and it dials
in plain text.
uTP is off unless --utp is given; --no-tcp turns TCP off (both directions). libtorrent allows one connection per IP, so
tests give every libtorrent peer its own loopback address (127.0.0.2, ...).
Status goes to stderr.
"""

import argparse
import os
import signal
import sys
import time

import libtorrent as lt

ANNOUNCE_WAIT_S = 10.0   # how long a seeder waits for its first tracker reply
CHECK_TIMEOUT_S = 120.0  # bound on checking the data of a seeder


def log(msg):
    print(f"lt_peer[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def parse_endpoint(text):
    """'IP:PORT' -> (ip, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def make_session(listen, utp, dht_nodes=None, lsd=False, bind_outgoing=False,
                 encryption="enabled", tcp=True, pex=True):
    """A session with only what tests need: no UPnP/NAT-PMP, no DHT unless
    ``dht_nodes`` is given (a list, maybe empty, of (ip, port) to join through), and
    no LSD unless asked for (then it announces every 2 s, not every 5 minutes). With
    bind_outgoing, connections it makes start from its listen address (so the
    peers it meets, and the peers they tell of it by PEX, see that address).
    pex=False: none of libtorrent's default plugins (ut_pex, ut_metadata,
    smart_ban); the built-in extensions (ut_holepunch among them) stay."""
    mask = (lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.tracker_notification
            | lt.alert.category_t.storage_notification
            | lt.alert.category_t.dht_notification)
    if lsd:
        mask |= lt.alert.category_t.peer_notification  # for lsd_peer_alert
    settings = {
        "listen_interfaces": listen,
        "enable_dht": dht_nodes is not None,
        "enable_lsd": lsd,
        "local_service_announce_interval": 2 if lsd else 300,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": utp,
        "enable_outgoing_utp": utp,
        "enable_incoming_tcp": tcp,
        "enable_outgoing_tcp": tcp,
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        # Accept plain and encrypted incoming; connect out in plain text so a
        # client without MSE/PE (like ours) is never made to wait for a retry.
        "in_enc_policy": int(lt.enc_policy.pe_enabled),
        "out_enc_policy": int(lt.enc_policy.pe_disabled),
        "alert_mask": int(mask),
        # Quick retries: everything here is local.
        "min_reconnect_time": 1,
        "peer_connect_timeout": 3,
        "user_agent": "torrentfs-test-lt/" + lt.__version__,
    }
    if dht_nodes is not None:
        settings.update({
            # Never the public routers: only the nodes given (add_dht_node below).
            "dht_bootstrap_nodes": "",
            # Every node is on 127.0.0.0/8: libtorrent's anti-Sybil defaults (one node
            # per /24 in the routing table and in search results, ids tied to IPs by
            # BEP 42) would leave its routing table and lookups nearly empty.
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_prefer_verified_node_ids": False,
            "dht_enforce_node_id": False,
            "dht_ignore_dark_internet": False,
            "dht_max_fail_count": 100,
        })
    if bind_outgoing:
        settings["outgoing_interfaces"] = parse_endpoint(listen)[0]
    if encryption == "forced":
        settings.update({
            "in_enc_policy": int(lt.enc_policy.pe_forced),
            "out_enc_policy": int(lt.enc_policy.pe_forced),
            "allowed_enc_level": int(lt.enc_level.pe_rc4),
            "prefer_rc4": True,
        })
    ses = lt.session(settings) if pex else lt.session(settings, 0)
    for node in dht_nodes or ():
        ses.add_dht_node(node)
    return ses


def wait_listen_port(ses, deadline):
    """The TCP port the session really listens on (port 0 picks one)."""
    while time.monotonic() < deadline:
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_failed_alert):
                raise SystemExit(f"listen failed: {a.message()}")
            if isinstance(a, lt.listen_succeeded_alert):
                log(a.message())
        port = ses.listen_port()
        if port:
            return port
    raise SystemExit("timed out waiting for the listen socket")


def add_torrent(ses, torrent, save_path):
    """Add a torrent, started and not auto-managed (never queued or paused)."""
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_path
    atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused
                   | lt.torrent_flags.seed_mode)
    h = ses.add_torrent(atp)
    log(f"added {atp.ti.name()!r} info-hash {atp.ti.info_hash()} "
        f"({atp.ti.total_size()} bytes, {atp.ti.num_pieces()} pieces)")
    return h


def status_line(h):
    s = h.status()
    ti = h.torrent_file()
    return (f"state={s.state} progress={s.progress * 100:.1f}% "
            f"have={s.num_pieces}/{ti.num_pieces() if ti else '?'} "
            f"peers={s.num_peers} seeds={s.num_seeds} "
            f"down={s.download_rate / 1024:.0f}kB/s up={s.upload_rate / 1024:.0f}kB/s "
            f"error={s.errc.message() if s.errc.value() else '-'}")


def log_alerts(ses):
    """Log and return this batch of alerts."""
    alerts = ses.pop_alerts()
    for a in alerts:
        if isinstance(a, (lt.tracker_reply_alert, lt.tracker_error_alert,
                          lt.tracker_warning_alert, lt.torrent_error_alert,
                          lt.file_error_alert, lt.hash_failed_alert,
                          lt.dht_announce_alert, lt.dht_reply_alert,
                          lt.listen_failed_alert, lt.torrent_checked_alert,
                          lt.torrent_finished_alert)) or a.what() == "lsd_peer":
            # (lsd_peer_alert has no Python class of its own in 2.0: known by name.)
            log(a.message())
    return alerts


def write_atomically(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class StopFlag:
    """Set by SIGTERM/SIGINT so loops can end cleanly."""

    def __init__(self):
        self.stop = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, signum, frame):
        self.stop = True


def cmd_seed(args):
    """Check the data, become a seed, announce, write the ready file, seed."""
    flag = StopFlag()
    ses = make_session(args.listen, args.utp, args.dht_node if args.dht else None, args.lsd,
                       args.bind_outgoing, args.encryption, tcp=args.tcp)
    if args.tick_ms:  # how often the rate limiter hands out its quota (500 ms)
        ses.apply_settings({"tick_interval": args.tick_ms})
    port = wait_listen_port(ses, time.monotonic() + 10)
    h = add_torrent(ses, args.torrent, args.save_path)
    if args.upload_rate:
        h.set_upload_limit(args.upload_rate)  # per torrent: applies on loopback too
    has_trackers = bool(list(h.torrent_file().trackers()))

    announced = reannounced = False
    deadline = time.monotonic() + CHECK_TIMEOUT_S
    seeding_since = None
    while not flag.stop:
        ses.wait_for_alert(200)
        for a in log_alerts(ses):
            if isinstance(a, (lt.tracker_reply_alert, lt.dht_reply_alert)):
                # libtorrent announces only once the data is checked, so
                # with complete data this is an announce as a seed (left=0).
                announced = True
            if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                raise SystemExit(f"seed failed: {a.message()}")
        s = h.status()
        if s.errc.value():
            raise SystemExit(f"seed failed: {s.errc.message()}")
        if s.is_seeding and seeding_since is None:
            seeding_since = time.monotonic()
            log("data checked, seeding")
        if seeding_since is not None:
            waited = time.monotonic() - seeding_since
            if has_trackers and not announced and not reannounced and waited > 2:
                log("no tracker reply yet, reannouncing")
                h.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
                reannounced = True
            if announced or not has_trackers or waited > ANNOUNCE_WAIT_S:
                break
        elif time.monotonic() > deadline:
            raise SystemExit(f"not seeding after {CHECK_TIMEOUT_S}s: {status_line(h)}")
    if flag.stop:
        log("stopped before ready")
        return 0
    if has_trackers and not announced:
        log(f"WARNING: no tracker reply within {ANNOUNCE_WAIT_S}s; seeding anyway")
    if args.dht:
        h.force_dht_announce()
    for ip, peer_port in args.peer:
        h.connect_peer((ip, peer_port))
    if args.ready_file:
        write_atomically(args.ready_file, f"{port}\n")
    log(f"ready: seeding on {args.listen} (port {port})")

    def again():
        for ip, peer_port in args.peer:   # (again, should it have dropped)
            h.connect_peer((ip, peer_port))
        if args.dht:
            h.force_dht_announce()  # keep the swarm's DHT nodes told (cheap here)

    return stay(ses, h, flag, again)


def cmd_leech(args):
    """Download to completion, then recheck; 0 when every piece is good."""
    flag = StopFlag()
    ses = make_session(args.listen, args.utp, args.dht_node if args.dht else None,
                       bind_outgoing=args.bind_outgoing, encryption=args.encryption,
                       tcp=args.tcp, pex=args.pex)
    port = wait_listen_port(ses, time.monotonic() + 10)
    if args.magnet:
        atp = lt.parse_magnet_uri(args.magnet)
        atp.save_path = args.save_path
        atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        h = ses.add_torrent(atp)
        log(f"added magnet {args.magnet}")
    else:
        h = add_torrent(ses, args.torrent, args.save_path)
    gated = bool(args.gate) and not os.path.exists(args.gate)
    if gated:  # 1 byte/s: it meets its peers, but downloads nothing until the gate opens
        h.set_download_limit(1)
    elif args.download_rate:
        h.set_download_limit(args.download_rate)
    last_dht = time.monotonic()

    def connect_peers():
        for ip, port in args.peer:
            h.connect_peer((ip, port))

    deadline = time.monotonic() + args.timeout
    last_log = last_connect = time.monotonic()
    connect_peers()
    rechecking = rechecked = False
    while time.monotonic() < deadline and not flag.stop:
        ses.wait_for_alert(200)
        for a in log_alerts(ses):
            if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                log(f"FAILED: {a.message()}")
                return 1
            if isinstance(a, lt.torrent_checked_alert) and rechecking:
                rechecked = True
        s = h.status()
        now = time.monotonic()
        if gated and os.path.exists(args.gate):
            gated = False
            h.set_download_limit(args.download_rate or -1)
            log("gate open")
        if args.ready_file and (s.num_peers or not args.peer):
            write_atomically(args.ready_file, f"{port}\n")
            args.ready_file = None
        if not s.has_metadata:
            if now - last_log >= 1:
                last_log = now
                log(f"waiting for metadata: peers={s.num_peers}")
            if args.peer and s.num_peers == 0 and now - last_connect >= 2:
                last_connect = now
                connect_peers()
            continue
        n = h.torrent_file().num_pieces()
        if s.is_seeding and s.num_pieces == n and s.state == lt.torrent_status.seeding:
            if args.done_file:
                log(f"complete: {status_line(h)}; seeding until stopped")
                write_atomically(args.done_file, f"{time.time()}\n")
                return stay(ses, h, flag)
            if not rechecking:
                log("download complete; rechecking the data on disk")
                h.force_recheck()
                rechecking = True
            elif rechecked:
                log(f"complete and verified: {status_line(h)}")
                return 0
            continue
        if args.dht and s.num_peers == 0 and now - last_dht >= 3:
            last_dht = now
            h.force_dht_announce()
        if args.peer and s.num_peers == 0 and now - last_connect >= 2:
            last_connect = now
            connect_peers()
        if now - last_log >= 1:
            last_log = now
            log(status_line(h))
    reason = "interrupted" if flag.stop else f"timed out after {args.timeout}s"
    print(f"lt_peer leech {reason}: {status_line(h)}", file=sys.stderr, flush=True)
    return 1


def stay(ses, h, flag, every_5s=None):
    """Seed until SIGTERM/SIGINT (a seeder, or a cluster's node that keeps uploading
    to the others once it has everything), logging the status and calling
    ``every_5s`` every 5 s; 0."""
    last = time.monotonic()
    while not flag.stop:
        ses.wait_for_alert(500)
        log_alerts(ses)
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            log(status_line(h))
            if every_5s is not None:
                every_5s()
    log("signal received, stopping")
    ses.pause()
    return 0


def cmd_dht(args):
    """A DHT node with no torrent, for a swarm's DHT to have more than its peers."""
    flag = StopFlag()
    ses = make_session(args.listen, False, args.dht_node)
    port = wait_listen_port(ses, time.monotonic() + 10)
    write_atomically(args.ready_file, f"{port}\n")
    log(f"ready: DHT node on {args.listen} (port {port})")
    last = time.monotonic()
    while not flag.stop:
        ses.wait_for_alert(500)
        for a in ses.pop_alerts():
            if isinstance(a, lt.dht_stats_alert):
                log(f"DHT: {sum(b['num_nodes'] for b in a.routing_table)} nodes, "
                    f"{len(a.active_requests)} lookups running")
            elif isinstance(a, (lt.dht_announce_alert, lt.dht_bootstrap_alert)):
                log(a.message())
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            ses.post_dht_stats()
    log("signal received, stopping")
    return 0


def cmd_create(args):
    """Write a torrent of a file or directory; print its info-hash(es)."""
    path = os.path.abspath(args.path)
    fs = lt.file_storage()
    links = lt.create_torrent.symlinks if args.symlinks else 0
    lt.add_files(fs, path, flags=links)
    if fs.num_files() == 0:
        raise SystemExit(f"no files under {path}")
    flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only,
             "hybrid": 0}[args.version] | links
    ct = lt.create_torrent(fs, args.piece_size or 0, flags)
    for tier, url in enumerate(args.tracker):
        ct.add_tracker(url, tier)
    ct.set_creator("torrentfs tests")
    lt.set_piece_hashes(ct, os.path.dirname(path))
    data = lt.bencode(ct.generate())
    tmp = f"{args.out}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    ti = lt.torrent_info(args.out)
    hashes = ti.info_hashes()
    if args.version == "v2":
        print(hashes.v2.to_bytes()[:20].hex())
    else:
        print(str(ti.info_hash()))
    if args.version != "v1":
        print(hashes.v2.to_bytes().hex())
    log(f"created {args.out}: {ti.num_files()} files, {ti.total_size()} bytes, "
        f"piece size {ti.piece_length()}")
    return 0


def cmd_hashes(args):
    hashes = lt.torrent_info(args.torrent).info_hashes()
    print(hashes.v1.to_bytes().hex(), hashes.v2.to_bytes().hex())
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, torrent_required=True):
        sp.add_argument("--torrent", required=torrent_required)
        sp.add_argument("--save-path", required=True)
        sp.add_argument("--listen", required=True, help="IP:PORT, port 0 = any")
        sp.add_argument("--utp", action="store_true", help="enable uTP (off by default)")
        sp.add_argument("--no-tcp", dest="tcp", action="store_false",
                        help="disable TCP both ways (with --utp: uTP only)")
        sp.add_argument("--no-utp", dest="utp", action="store_false",
                        help="disable uTP (the default)")
        sp.add_argument("--bind-outgoing", action="store_true",
                        help="connect out from the --listen address")
        sp.add_argument("--encryption", choices=("enabled", "forced"), default="enabled",
                        help="forced: MSE/PE with RC4 only, in and out")
        dht_option(sp)

    def dht_option(sp):
        sp.add_argument("--dht-node", action="append", type=parse_endpoint, default=[],
                        help="turn the DHT on, joined through this node (repeatable)")

    sp = sub.add_parser("seed")
    common(sp)
    sp.add_argument("--ready-file")
    sp.add_argument("--upload-rate", type=int, default=0, help="bytes/s, 0 = unlimited")
    sp.add_argument("--tick-ms", type=int, default=0,
                    help="libtorrent's tick_interval, ms: how often a rate cap's quota is "
                         "handed out (0: libtorrent's default, 500)")
    sp.add_argument("--lsd", action="store_true", help="local service discovery (BEP 14)")
    sp.add_argument("--peer", action="append", type=parse_endpoint, default=[],
                    help="connect to this peer once seeding, and every 5 s (repeatable)")
    sp.set_defaults(func=cmd_seed)

    sp = sub.add_parser("leech")
    common(sp, torrent_required=False)
    sp.add_argument("--magnet", help="start from this magnet link instead of --torrent")
    sp.add_argument("--download-rate", type=int, default=0, help="bytes/s, 0 = unlimited")
    sp.add_argument("--ready-file")
    sp.add_argument("--peer", action="append", type=parse_endpoint, default=[])
    sp.add_argument("--timeout", type=float, default=60.0)
    sp.add_argument("--no-pex", dest="pex", action="store_false",
                    help="no default plugins (ut_pex, ut_metadata): with --torrent only")
    sp.add_argument("--gate", metavar="FILE",
                    help="download nothing (1 byte/s) until FILE exists, meeting peers "
                         "meanwhile: a cluster's nodes start at once")
    sp.add_argument("--done-file", metavar="FILE",
                    help="once complete, write the time to FILE and seed until stopped "
                         "(no recheck, no --timeout after that)")
    sp.set_defaults(func=cmd_leech)

    sp = sub.add_parser("dht")
    sp.add_argument("--listen", required=True, help="IP:PORT, port 0 = any")
    sp.add_argument("--ready-file", required=True)
    dht_option(sp)
    sp.set_defaults(func=cmd_dht)

    sp = sub.add_parser("create")
    sp.add_argument("--path", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--tracker", action="append", default=[])
    sp.add_argument("--piece-size", type=int, default=0)
    sp.add_argument("--version", choices=["v1", "v2", "hybrid"], default="v1")
    sp.add_argument("--symlinks", action="store_true",
                    help="keep symlinks as BEP 47 links (libtorrent's symlinks flag)")
    sp.set_defaults(func=cmd_create)

    sp = sub.add_parser("hashes")
    sp.add_argument("--torrent", required=True)
    sp.set_defaults(func=cmd_hashes)

    args = p.parse_args(argv)
    if args.cmd == "leech" and not (args.torrent or args.magnet):
        p.error("leech needs --torrent or --magnet")
    if getattr(args, "listen", None):
        parse_endpoint(args.listen)  # validate
    args.dht = bool(getattr(args, "dht_node", None))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
