"""Message stream encryption on any trio stream: the shell of ``core/mse.py``.

* ``initiate(stream, info_hash, require=...)`` runs side A of the handshake on a
  stream we opened and returns an ``EncryptedStream`` to run the peer session over.
* ``open_incoming(stream, info_hashes, policy)`` reads the first bytes of a
  connection a peer opened and tells a plain BitTorrent handshake
  (``\\x13BitTorrent protocol``) from an MSE one on the same port; it runs side B
  when encrypted (the SKEY names the torrent among ``info_hashes``: one listening
  socket serves every torrent of a mount) and returns the stream to run the
  session over (with the bytes it read given again) and the info-hash asked for.

The whole of either, from the first byte to the last of the handshake, is bounded
by ``HANDSHAKE_TIMEOUT``; reads are at most ``READ_SIZE`` bytes, and the core
bounds what it buffers; a peer that stalls or sends garbage raises ``MSEError`` or
``trio.TooSlowError`` (or the stream's own errors): the caller drops the
connection, nothing else.

The policy (``--encryption``):

* ``prefer`` (the default): accept plain and encrypted connections (RC4 chosen
  when the peer offers it); dial in plain text, which every peer but those that
  require encryption takes at no cost, and dial again at once with encryption
  (offering RC4 and plaintext) a peer that closed a plain connection before its
  handshake; what worked is used for that peer from then on. A peer PEX flags as
  preferring encryption is dialed encrypted first (plain text if that fails).
* ``require``: RC4 only, both ways; plain connections are refused and dialed ones
  are encrypted.
* ``off``: plain only; encrypted handshakes are refused.

``EncryptedStream`` is a ``trio.abc.Stream`` over any other (TCP or uTP): RC4 from
``cryptography`` (OpenSSL) both ways, or none if plaintext was selected.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable

import trio

from torrentfs.core import handshake, mse
from torrentfs.core.mse import MSEError

log = logging.getLogger("torrentfs.mse")

__all__ = ["POLICIES", "HANDSHAKE_TIMEOUT", "MSEError", "EncryptedStream", "Incoming",
           "initiate", "respond", "open_incoming", "rc4"]

POLICIES = ("prefer", "require", "off")
HANDSHAKE_TIMEOUT = 10.0   # the whole handshake, plain or encrypted, first byte to last
READ_SIZE = 4096
SHORT_SECRET_REDIALS = 2   # a new connection each; three zero first bytes in a row: 1 in 16M


def rc4(key: bytes) -> mse.Cipher:
    """An RC4 keystream from ``cryptography`` (OpenSSL's). Imported at the first
    encrypted connection, not with the mount: it costs some 25 ms of CPU, and a
    mount lists its files before any peer is dialed."""
    try:  # cryptography >= 43 keeps ARC4 with the other "decrepit" ciphers
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.algorithms import ARC4
    from cryptography.hazmat.primitives.ciphers import Cipher
    return Cipher(ARC4(key), mode=None).encryptor()


def _private() -> int:
    return secrets.randbits(mse.PRIVATE_KEY_BITS) | (1 << (mse.PRIVATE_KEY_BITS - 1))


def _pad() -> bytes:
    return secrets.token_bytes(secrets.randbelow(mse.MAX_PAD + 1))


class EncryptedStream(trio.abc.Stream):
    """``stream`` with RC4 applied both ways (``encrypt``/``decrypt`` None: as it
    is), giving ``head`` (bytes already read and decrypted) before the rest.
    Also serves to replay the first bytes of a plain connection."""

    def __init__(self, stream: trio.abc.Stream, encrypt: mse.Cipher | None = None,
                 decrypt: mse.Cipher | None = None, head: bytes = b"") -> None:
        self.stream = stream
        self._encrypt = encrypt
        self._decrypt = decrypt
        self._head = head

    @property
    def encrypted(self) -> bool:
        """Whether the payload goes RC4-encrypted (not just the handshake)."""
        return self._encrypt is not None

    @property
    def plain_stream(self) -> trio.abc.Stream | None:
        """The stream below when what is sent goes to it unchanged (no RC4): a
        sender may write to it directly. None when encrypted."""
        return None if self._encrypt is not None else self.stream

    @property
    def plain_receive_stream(self) -> trio.abc.Stream | None:
        """The stream below when what arrives there is this stream's as it is (no
        RC4, no replayed bytes left): a receiver may read it directly. Else None."""
        return None if self._decrypt is not None or self._head else self.stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._head:
            n = len(self._head) if max_bytes is None else max_bytes
            data, self._head = self._head[:n], self._head[n:]
            await trio.lowlevel.checkpoint()
            return data
        data = await self.stream.receive_some(max_bytes)
        return self._decrypt.update(data) if self._decrypt is not None and data else data

    async def send_all(self, data) -> None:
        if self._encrypt is not None:
            data = self._encrypt.update(bytes(data))
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _exchange(stream: trio.abc.Stream, hs, first: bytes, head: bytes = b"") -> mse.Result:
    """Send ``first``, feed ``head`` then the peer's bytes to ``hs`` (sending what it
    answers) until it is done."""
    if first:
        await stream.send_all(first)
    if head:
        out = hs.receive(head)
        if out:
            await stream.send_all(out)
    while not hs.done:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise MSEError("the peer closed the connection during the encryption handshake")
        out = hs.receive(data)
        if out:
            await stream.send_all(out)
    return hs.result


async def initiate(stream: trio.abc.Stream, info_hash: bytes, *, require: bool = False,
                   reopen: Callable[[], Awaitable[trio.abc.Stream]] | None = None
                   ) -> EncryptedStream:
    """Side A over a stream we opened: offer RC4 (and plaintext unless
    ``require``). Raises MSEError, trio.TooSlowError or the stream's errors.

    With ``reopen`` (a new stream to the same peer), a shared secret starting with
    a zero byte, which libtorrent 2.0.8 and older rtorrents hash wrong and so drop
    the connection (1 handshake in 256; see core/mse.py), is not used: this stream
    is closed and the handshake done again over ``reopen()``'s, with a new key (at
    most ``SHORT_SECRET_REDIALS`` times). The stream returned is then over that one,
    and one that fails is closed here."""
    provide = mse.CRYPTO_RC4 | (0 if require else mse.CRYPTO_PLAINTEXT)
    for redial in range(SHORT_SECRET_REDIALS + 1):
        hs = mse.Initiator(info_hash, rc4=rc4, private=_private(), pad_a=_pad(), pad_c=b"",
                           provide=provide, avoid_short_secret=(
                               reopen is not None and redial < SHORT_SECRET_REDIALS))
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                res = await _exchange(stream, hs, hs.start())
            return EncryptedStream(stream, res.encrypt, res.decrypt, res.payload)
        except mse.ShortSecret:
            log.debug("a shared secret with a leading zero byte: dialing again")
        except BaseException:
            if redial:   # the caller knows only the first stream
                with trio.CancelScope(shield=True):
                    await stream.aclose()
            raise
        with trio.CancelScope(shield=True):
            await stream.aclose()
        assert reopen is not None
        stream = await reopen()
    raise AssertionError("unreachable")  # pragma: no cover


async def respond(stream: trio.abc.Stream, head: bytes, info_hashes: Iterable[bytes], *,
                  require: bool = False) -> tuple[EncryptedStream, bytes]:
    """Side B over a stream a peer opened, whose first bytes ``head`` were read
    already. Returns the stream and the info-hash the peer asked for."""
    allow = mse.CRYPTO_RC4 | (0 if require else mse.CRYPTO_PLAINTEXT)
    hs = mse.Responder(info_hashes, rc4=rc4, private=_private(), pad_b=_pad(), pad_d=b"",
                       allow=allow)
    res = await _exchange(stream, hs, b"", head)
    return EncryptedStream(stream, res.encrypt, res.decrypt, res.payload), res.skey


@dataclass
class Incoming:
    """An accepted connection, ready for a peer session: the stream to run it over
    (the bytes read so far given again), the info-hash its handshake asks for, and
    whether it came encrypted."""

    stream: EncryptedStream
    info_hash: bytes
    encrypted: bool


async def open_incoming(stream: trio.abc.Stream, info_hashes: Iterable[bytes],
                        policy: str = "prefer") -> Incoming:
    """Read the start of a connection a peer opened and make it ready for a
    session: plain (refused if ``policy`` is ``require``) or MSE (refused if
    ``off``). Raises MSEError (or TooSlowError, the stream's errors) when it is
    refused or fails; the caller closes ``stream``."""
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        head = b""
        while len(head) < handshake.INFO_HASH_END:
            if len(head) >= 20 and not mse.looks_plain(head):
                break
            chunk = await stream.receive_some(handshake.INFO_HASH_END - len(head))
            if not chunk:
                raise MSEError("the peer closed the connection before its handshake")
            head += chunk
            if not mse.looks_plain(head):
                break
        if mse.looks_plain(head):
            if policy == "require":
                raise MSEError("a plain handshake, and encryption is required")
            info_hash = handshake.info_hash_of(head)
            if info_hash is None:
                raise MSEError("not a BitTorrent handshake")
            return Incoming(EncryptedStream(stream, head=head), info_hash, False)
        if policy == "off":
            raise MSEError("an encrypted handshake, and encryption is off")
        wrapped, info_hash = await respond(stream, head, info_hashes,
                                           require=policy == "require")
        return Incoming(wrapped, info_hash, True)
