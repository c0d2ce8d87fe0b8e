"""net/mse.py over trio memory streams: both sides of MSE on a byte pipe, plain and
encrypted connections told apart on one port, the policy, and peers that stall or
send garbage dropped within HANDSHAKE_TIMEOUT."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from torrentfs.core import handshake
from torrentfs.core import mse as core_mse
from torrentfs.net import mse

IH = bytes(range(20))
OTHER = b"\xee" * 20


async def _both(policy="prefer", require=False, hashes=(OTHER, IH)):
    a_end, b_end = trio.testing.memory_stream_pair()
    got = {}

    async def side_a():
        got["a"] = await mse.initiate(a_end, IH, require=require)

    async def side_b():
        got["b"] = await mse.open_incoming(b_end, hashes, policy)

    async with trio.open_nursery() as n:
        n.start_soon(side_a)
        n.start_soon(side_b)
    return got["a"], got["b"]


async def test_encrypted_both_ways():
    a, inc = await _both()
    assert inc.encrypted and inc.info_hash == IH and a.encrypted and inc.stream.encrypted
    await a.send_all(b"hello")
    assert await inc.stream.receive_some(100) == b"hello"
    await inc.stream.send_all(b"world")
    assert await a.receive_some(100) == b"world"


async def test_require_selects_rc4():
    a, inc = await _both(policy="require", require=True)
    assert a.encrypted and inc.stream.encrypted


async def test_off_refuses_encrypted():
    a_end, b_end = trio.testing.memory_stream_pair()
    await a_end.send_all(b"\x01" * 96)  # a Ya
    with pytest.raises(mse.MSEError, match="off"):
        await mse.open_incoming(b_end, [IH], "off")


@pytest.mark.parametrize("policy", ["prefer", "off"])
async def test_plain_handshake_is_told_apart(policy):
    a_end, b_end = trio.testing.memory_stream_pair()
    hs = handshake.encode(handshake.Handshake(IH, b"P" * 20)) + b"rest"
    await a_end.send_all(hs)
    inc = await mse.open_incoming(b_end, [IH], policy)
    assert not inc.encrypted and inc.info_hash == IH
    got = b""
    while len(got) < len(hs):
        got += await inc.stream.receive_some(1000)
    assert got == hs  # every byte given again


async def test_require_refuses_plain():
    a_end, b_end = trio.testing.memory_stream_pair()
    await a_end.send_all(handshake.encode(handshake.Handshake(IH, b"P" * 20)))
    with pytest.raises(mse.MSEError, match="required"):
        await mse.open_incoming(b_end, [IH], "require")


async def test_unknown_torrent_refused():
    a_end, b_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        async def a():
            with trio.move_on_after(5):
                try:
                    await mse.initiate(a_end, IH)
                except (mse.MSEError, trio.BrokenResourceError):
                    pass
        n.start_soon(a)
        with pytest.raises(mse.MSEError, match="torrent"):
            await mse.open_incoming(b_end, [OTHER], "prefer")
        await b_end.aclose()


async def test_stalled_peer_times_out(autojump_clock):
    a_end, b_end = trio.testing.memory_stream_pair()
    await a_end.send_all(b"\x01" * 50)  # the start of a Ya, then nothing
    t0 = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await mse.open_incoming(b_end, [IH])
    assert trio.current_time() - t0 <= mse.HANDSHAKE_TIMEOUT + 0.1


async def test_stalled_responder_times_out(autojump_clock):
    a_end, _b_end = trio.testing.memory_stream_pair()
    with pytest.raises(trio.TooSlowError):
        await mse.initiate(a_end, IH)


async def test_garbage_fails_fast():
    """A peer sending endless garbage is dropped once the padding window is past,
    having sent a bounded amount."""
    a_end, b_end = trio.testing.memory_stream_pair()
    sent = 0

    async def spam():
        nonlocal sent
        try:
            while sent < 10 << 20:
                await a_end.send_all(b"\x55" * 1000)
                sent += 1000
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as n:
        n.start_soon(spam)
        with pytest.raises(mse.MSEError, match="req1"):
            await mse.open_incoming(b_end, [IH])
        n.cancel_scope.cancel()
    assert sent < 64 * 1000


async def test_replayed_stream_gives_its_head_first():
    """(Moved from tests/engine/test_multi.py: multi's _Replayed is now this.)"""
    a, b = trio.testing.memory_stream_pair()
    await a.send_all(b"rest")
    s = mse.EncryptedStream(b, head=b"head")
    assert await s.receive_some(2) == b"he"
    assert await s.receive_some() == b"ad"
    assert await s.receive_some(100) == b"rest"
    await s.send_all(b"back")
    assert await a.receive_some(100) == b"back"
    await s.aclose()


def _short_then_full() -> tuple[int, int, int]:
    """B's private key, and two of A's: the first makes a shared secret starting
    with a zero byte, the second one that does not."""
    import random
    r = random.Random(11)
    b_key = r.getrandbits(160) | 2
    yb = core_mse.public_key(b_key)
    keys = [r.getrandbits(160) | 2 for _ in range(20_000)]
    short = next(k for k in keys if core_mse._secret(yb, k)[0] == 0)
    full = next(k for k in keys if core_mse._secret(yb, k)[0] != 0)
    return b_key, short, full


async def test_initiate_dials_again_rather_than_use_a_short_secret(monkeypatch):
    """Over the first stream A gets a secret some peers hash wrong: it closes that
    stream before sending more and does the handshake over ``reopen()``'s, with a
    new key; the session runs over the second."""
    b_key, short, full = _short_then_full()
    keys = iter([short, full])
    monkeypatch.setattr(mse, "_private", lambda: next(keys))
    ends = []
    outcomes = []

    async def serve(b_end):
        hs = core_mse.Responder([IH], rc4=mse.rc4, private=b_key, pad_b=b"", pad_d=b"")
        try:
            res = await mse._exchange(b_end, hs, b"")
        except mse.MSEError as e:
            outcomes.append(str(e))
            return
        outcomes.append("done")
        stream = mse.EncryptedStream(b_end, res.encrypt, res.decrypt, res.payload)
        assert await stream.receive_some(100) == b"hello"

    async with trio.open_nursery() as n:
        async def reopen():
            a_end, b_end = trio.testing.memory_stream_pair()
            ends.append(a_end)
            n.start_soon(serve, b_end)
            return a_end

        first = await reopen()
        a = await mse.initiate(first, IH, reopen=reopen)
        await a.send_all(b"hello")
    assert len(ends) == 2 and a.stream is ends[1] and a.encrypted
    assert outcomes == ["the peer closed the connection during the encryption handshake",
                        "done"]


async def test_initiate_without_reopen_uses_a_short_secret(monkeypatch):
    """Without ``reopen`` a secret starting with a zero byte is used, padded as the
    specification has it (what our own responder expects)."""
    b_key, short, _ = _short_then_full()
    keys = iter([short, b_key])
    monkeypatch.setattr(mse, "_private", lambda: next(keys))
    a_end, b_end = trio.testing.memory_stream_pair()
    got = {}

    async def side_a():
        got["a"] = await mse.initiate(a_end, IH)

    async with trio.open_nursery() as n:
        n.start_soon(side_a)
        await trio.testing.wait_all_tasks_blocked()   # A took ``short``, B takes b_key
        got["b"] = await mse.open_incoming(b_end, [IH], "prefer")
    assert got["b"].info_hash == IH and got["a"].encrypted
