"""The FUSE layer's reader watch: reading /proc/PID/status (no mount needed)."""

import os
import signal
import subprocess
import sys

from swarm import wait_until
from torrentfs.fuse import process_gave_up, reader_gave_up, thread_group

STATUS = """Name:\tcat
State:\t{state}
Tgid:\t4242
SigQ:\t0/95537
SigPnd:\t{pnd}
ShdPnd:\t{shd}
SigBlk:\t{blk}
SigIgn:\t0000000000000000
SigCgt:\t0000000000000000
"""


def status(state="S (sleeping)", pnd=0, shd=0, blk=0):
    return STATUS.format(state=state, pnd=f"{pnd:016x}", shd=f"{shd:016x}", blk=f"{blk:016x}")


def bit(sig):
    return 1 << (sig - 1)


def test_a_waiting_reader_is_left_alone():
    assert not reader_gave_up(status())
    assert not reader_gave_up(status(state="D (disk sleep)"))
    assert not reader_gave_up(status(shd=bit(signal.SIGCHLD) | bit(signal.SIGWINCH)))


def test_fatal_and_stop_signals_end_the_wait():
    assert reader_gave_up(status(pnd=bit(signal.SIGKILL)))  # any fatal signal
    assert reader_gave_up(status(shd=bit(signal.SIGINT)))   # Ctrl-C, caught
    assert reader_gave_up(status(shd=bit(signal.SIGTERM)))
    assert reader_gave_up(status(pnd=bit(signal.SIGHUP)))


def test_blocked_signals_do_not_count_but_sigkill_does():
    assert not reader_gave_up(status(shd=bit(signal.SIGINT), blk=bit(signal.SIGINT)))
    assert reader_gave_up(status(pnd=bit(signal.SIGKILL), blk=bit(signal.SIGKILL)))


def test_dead_or_dying_readers():
    assert reader_gave_up(status(state="Z (zombie)"))
    assert reader_gave_up(status(state="X (dead)"))
    assert not reader_gave_up("garbage\nSigPnd:\tzz\n")


def test_live_process_and_gone_process():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not process_gave_up(p.pid)
        assert thread_group(p.pid) == p.pid
    finally:
        p.kill()
    wait_until(lambda: process_gave_up(p.pid), timeout=10)  # a zombie, then gone
    p.wait(10)
    assert process_gave_up(p.pid)
    assert not process_gave_up(os.getpid())
