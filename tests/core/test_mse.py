"""core/mse.py: the MSE/PE handshake, both sides joined back to back, and any bytes
from a peer end it cleanly (MSEError) with bounded buffers."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torrentfs.core import mse
from torrentfs.core.mse import MSEError
from torrentfs.net.mse import rc4  # RC4 from cryptography: the core takes it as a parameter

IH = bytes(range(20))
OTHER = bytes(range(1, 21))


def pair(*, provide=mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT, allow=mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT,
         prefer_rc4=True, ia=b"", seed=1, skeys=(OTHER, IH), pads=(b"", b"", b"", b"")):
    r = random.Random(seed)
    a = mse.Initiator(IH, rc4=rc4, private=r.getrandbits(160) | 2, pad_a=pads[0], pad_c=pads[2],
                      provide=provide, ia=ia)
    b = mse.Responder(skeys, rc4=rc4, private=r.getrandbits(160) | 2, pad_b=pads[1],
                      pad_d=pads[3], allow=allow, prefer_rc4=prefer_rc4)
    return a, b


def run(a, b, chunk=None, extra_a=b"", extra_b=b""):
    """Pump bytes between A and B (in chunks of ``chunk`` bytes if given) until both
    are done; then A sends ``extra_a`` and B ``extra_b`` through their ciphers, in the
    same reads as the end of the handshake."""
    to_b = a.start()
    to_a = b""
    for _ in range(100):
        if a.done and b.done:
            break
        while to_b and not b.done:
            n = chunk or len(to_b)
            out = b.receive(to_b[:n])
            to_b = to_b[n:]
            to_a += out
            if b.done:
                enc = b.result.encrypt
                to_a += enc.update(extra_b) if enc else extra_b
        while to_a and not a.done:
            n = chunk or len(to_a)
            out = a.receive(to_a[:n])
            to_a = to_a[n:]
            to_b += out
            if a.done:
                enc = a.result.encrypt
                to_b += enc.update(extra_a) if enc else extra_a
                a_rest = a.result.payload + (a.result.decrypt.update(to_a) if a.result.decrypt else to_a)
                to_a = b""
    assert a.done and b.done
    return a.result, b.result, to_b, a_rest


@pytest.mark.parametrize("chunk", [None, 1, 7, 97])
def test_rc4_handshake_both_sides_agree(chunk):
    a, b = pair(ia=b"hello IA", pads=(b"x" * 300, b"y" * 512, b"z" * 17, b"w" * 5))
    ra, rb, to_b, a_got = run(a, b, chunk, extra_a=b"from A", extra_b=b"from B")
    assert ra.selected == rb.selected == mse.CRYPTO_RC4
    assert rb.skey == IH
    assert a_got == b"from B"
    b_got = rb.payload + rb.decrypt.update(to_b)
    assert b_got == b"hello IA" + b"from A"
    # and the streams go on
    assert rb.decrypt.update(ra.encrypt.update(b"more")) == b"more"
    assert ra.decrypt.update(rb.encrypt.update(b"back")) == b"back"


def test_plaintext_selected_when_rc4_not_preferred():
    a, b = pair(prefer_rc4=False, ia=b"IA!")
    ra, rb, to_b, a_got = run(a, b, extra_a=b"plain A", extra_b=b"plain B")
    assert ra.selected == rb.selected == mse.CRYPTO_PLAINTEXT
    assert ra.encrypt is None and rb.decrypt is None
    assert a_got == b"plain B"
    assert rb.payload + to_b == b"IA!plain A"  # IA decrypted; then the payload as it is


def test_rc4_required_but_only_plaintext_provided_fails():
    a, b = pair(provide=mse.CRYPTO_PLAINTEXT, allow=mse.CRYPTO_RC4)
    with pytest.raises(MSEError, match="provides"):
        run(a, b)


def test_unknown_torrent_fails():
    a, b = pair(skeys=(OTHER,))
    with pytest.raises(MSEError, match="torrent"):
        run(a, b)
    with pytest.raises(MSEError):  # dead after an error
        b.receive(b"x")


def test_degenerate_public_key_refused():
    _, b = pair()
    with pytest.raises(MSEError, match="degenerate"):
        b.receive((1).to_bytes(96, "big"))
    a, _ = pair()
    a.start()
    with pytest.raises(MSEError, match="degenerate"):
        a.receive((mse.P - 1).to_bytes(96, "big"))


def test_selection_not_provided_refused():
    """B selects plaintext, but A (as it now stands) provided RC4 only: A refuses."""
    a, b = pair(prefer_rc4=False)
    to_a = b.receive(a.start())
    to_b = a.receive(to_a)
    reply = b.receive(to_b)
    assert b.result.selected == mse.CRYPTO_PLAINTEXT
    a.provide = mse.CRYPTO_RC4
    with pytest.raises(MSEError, match="selected"):
        a.receive(reply)


def test_looks_plain():
    assert mse.looks_plain(b"\x13BitTorrent protocol\0\0")
    assert mse.looks_plain(b"\x13Bit")
    assert not mse.looks_plain(b"")
    assert not mse.looks_plain(b"\x13BitTorrent protocoX")
    assert not mse.looks_plain(bytes(96))


# ---------------------------------------------------------------- any bytes


BOUND = mse.KEY_BYTES + mse.MAX_PAD + 20 + 14 + mse.MAX_PAD + 2 + mse.MAX_IA


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=700), max_size=12))
def test_responder_any_bytes_fail_cleanly(chunks):
    _, b = pair()
    for c in chunks:
        try:
            b.receive(c)
        except MSEError:
            return
        assert len(b._buf) <= BOUND
        assert not b.done  # garbage never completes a handshake


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=700), max_size=12))
def test_initiator_any_bytes_fail_cleanly(chunks):
    a, _ = pair()
    a.start()
    for c in chunks:
        try:
            a.receive(c)
        except MSEError:
            return
        assert len(a._buf) <= mse.KEY_BYTES + mse.MAX_PAD + 8 + 700
        assert not a.done


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_a_flipped_byte_fails_or_is_harmless(pos, xor):
    """A byte of the handshake changed in flight: the handshake fails with MSEError
    or (a byte of padding) completes with both sides agreeing."""
    a, b = pair(ia=b"IA", pads=(b"p" * 10, b"q" * 10, b"", b""))
    to_b = bytearray(a.start())
    flip_b = pos % 400
    try:
        if flip_b < len(to_b) and xor:
            to_b[flip_b] ^= xor
        to_a = b.receive(bytes(to_b))
        to_b = a.receive(to_a)
        to_a = b.receive(to_b)
        a.receive(to_a)
    except MSEError:
        return
    # Or it waits for more (a changed Ya hides req1: B waits for the rest of PadA,
    # which the shell's time limit ends); never a handshake the two disagree on.
    if a.done and b.done:
        assert a.result.selected == b.result.selected
        assert b.result.decrypt.update(a.result.encrypt.update(b"x")) == b"x"


# -- a shared secret starting with a zero byte (libtorrent 2.0.8, older rtorrent) -----

def _keys(leading_zero: bool) -> tuple[int, int]:
    """Private keys of A and B (the first found, in a fixed order) whose shared
    secret starts with a zero byte, or does not."""
    r = random.Random(7)
    for _ in range(20_000):
        a, b = r.getrandbits(160) | 2, r.getrandbits(160) | 2
        if (mse._secret(mse.public_key(b), a)[0] == 0) == leading_zero:
            return a, b
    raise AssertionError("no such keys in 20,000 tries")


def test_initiator_avoiding_a_short_secret_raises_before_sending_more():
    a_key, b_key = _keys(leading_zero=True)
    a = mse.Initiator(IH, rc4=rc4, private=a_key, pad_a=b"", pad_c=b"",
                      avoid_short_secret=True)
    b = mse.Responder((IH,), rc4=rc4, private=b_key, pad_b=b"", pad_d=b"")
    to_a = b.receive(a.start())
    with pytest.raises(mse.ShortSecret, match="zero byte"):
        a.receive(to_a)
    # Asked not to avoid it (the default), the same keys make a good handshake with
    # an implementation that pads S, as the specification has it.
    a = mse.Initiator(IH, rc4=rc4, private=a_key, pad_a=b"", pad_c=b"")
    b = mse.Responder((IH,), rc4=rc4, private=b_key, pad_b=b"", pad_d=b"")
    ra, rb, _, _ = run(a, b)
    assert rb.skey == IH and ra.selected == rb.selected == mse.CRYPTO_RC4


def test_initiator_avoiding_a_short_secret_goes_on_with_a_full_one():
    a_key, b_key = _keys(leading_zero=False)
    a = mse.Initiator(IH, rc4=rc4, private=a_key, pad_a=b"", pad_c=b"",
                      avoid_short_secret=True)
    b = mse.Responder((IH,), rc4=rc4, private=b_key, pad_b=b"", pad_d=b"")
    ra, rb, _, _ = run(a, b)
    assert rb.skey == IH
