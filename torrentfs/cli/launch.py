"""The ``torrentfs`` program (its console script): ``cli.main``, with the mount's
daemon forked before the command line's imports (``prefork``).

Only the standard library and ``prefork`` are imported before that fork, so that the
child can start on the daemon's imports (trio, pyfuse3, the engine) at once, on the
other core, while this process imports the command line, parses it and checks the
torrent and the mountpoint. ``cli.main.main`` called directly (tests) never forks
early. With a resident process (``zygote``), the whole command runs there instead;
a mount that none ran starts one as it exits.
"""

from __future__ import annotations

import sys

from torrentfs.cli import prefork


def main() -> int:
    argv = sys.argv[1:]
    from torrentfs.cli import zygote
    resident = prefork.wanted(argv) and zygote.enabled(argv)
    if resident:  # the resident process runs the command, if it can
        code = zygote.run_command(argv)
        if code is not None:
            if code < 0:  # killed by the signal passed on: so is this process
                import os
                import signal
                signal.signal(-code, signal.SIG_DFL)
                os.kill(os.getpid(), -code)
            return code
    prefork.start(argv, _daemon_to_be)
    try:
        from torrentfs.cli.main import main as cli_main
        code = cli_main(argv)
    finally:
        prefork.cancel()  # not handed the work: it ends now
    if code == 0 and resident and prefork.resident_allowed:
        try:  # the mount is ready: a resident process for the next ones
            zygote.spawn()
        except OSError:
            pass
    return code


def _daemon_to_be(sock, w: int) -> None:
    """The early child: import what the daemon needs, then serve the work the parent
    hands over (``daemon.serve_child``), or end if none comes. The imports run with
    no garbage collection (they make few cycles; the passes cost ~8 ms of CPU); the
    parent's gc state comes with the work."""
    import gc
    import os
    gc.disable()

    from torrentfs.cli.mount import preload
    preload()
    work = prefork.receive(sock)
    if work is None:
        os._exit(0)
    from torrentfs.cli.daemon import serve_child
    serve_child(w, *work)


if __name__ == "__main__":
    sys.exit(main())
