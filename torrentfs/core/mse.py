"""Message stream encryption (MSE/PE, the Vuze/libtorrent "protocol encryption").

The handshake, as the specification writes it (A dials, B answers)::

    A->B: Ya, PadA
    B->A: Yb, PadB
    A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
          ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
    A->B: ENCRYPT2(payload)

* Ya, Yb: Diffie-Hellman public keys, 96 bytes big-endian, over the 768-bit
  prime ``P`` with generator 2; S the shared secret (96 bytes).
* Pad*: 0 to 512 bytes of anything. B finds where PadA ends by looking for
  HASH('req1', S) (SHA-1), A finds where PadB ends by looking for ENCRYPT(VC).
* SKEY is the torrent's info-hash: B finds which of its torrents A asks for by
  comparing HASH('req2', SKEY) xor HASH('req3', S) with each of its info-hashes.
* ENCRYPT is RC4 keyed HASH('keyA', S, SKEY) from A and HASH('keyB', S, SKEY) from
  B, the first 1024 bytes of each keystream discarded. VC is 8 zero bytes.
* crypto_provide / crypto_select: 32-bit fields, 0x01 plaintext, 0x02 RC4. After
  the handshake the payload goes RC4-encrypted (ENCRYPT2 = the same ciphers going
  on) or, if plaintext was selected, as it is. IA (initial payload, maybe empty)
  is always RC4-encrypted.

:class:`Initiator` (A) and :class:`Responder` (B) are sans-I/O: ``receive(data)``
takes the bytes that arrived and returns the bytes to send; once ``done``,
``result`` holds the ciphers and the payload bytes that came with the handshake.
Randomness (private keys, pads) and the RC4 implementation are given in, so this
module stays pure (``net/mse.py`` passes ``secrets`` and ``cryptography``'s ARC4).

A shared secret whose first byte is zero (1 in 256) is where two widespread
implementations go wrong: libtorrent as B (before its fix of May 2026,
arvidn/libtorrent#8434; Debian's 2.0.8 has it) hashes it short into the req3 mask
it unmasks SKEY with, leaving the mask's last bytes to chance (as A it hashes S
padded, as we expect), and rtorrent's libtorrent (before rakshasa/libtorrent#894)
uses it short throughout; as B either drops the handshake. Nothing can be mended at
A's end, so ``avoid_short_secret`` makes the Initiator raise :class:`ShortSecret`
before it sends anything more: the shell dials again with a new key.

Bounded: every state needs a known number of bytes, or searches a window of known
size (PadA, PadB, PadC, PadD at most 512 bytes, IA at most 65535): a peer that
sends more garbage than that, a bad VC, a selection we did not offer, an unknown
torrent or a degenerate public key raises :class:`MSEError` (after which the object
is dead). The buffer holds at most one state's bytes plus one read; time is the
shell's business (it bounds the whole handshake).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from torrentfs.core.messages import RemoteProtocolError

__all__ = [
    "P", "G", "KEY_BYTES", "VC", "MAX_PAD", "MAX_IA", "CRYPTO_PLAINTEXT", "CRYPTO_RC4",
    "PRIVATE_KEY_BITS", "MSEError", "ShortSecret", "Cipher", "Result", "Initiator", "Responder",
    "public_key", "looks_plain",
]

P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA6"
    "3B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A63A36210000000000090563", 16)
G = 2
KEY_BYTES = 96
VC = bytes(8)
MAX_PAD = 512
MAX_IA = 0xFFFF
CRYPTO_PLAINTEXT = 0x01
CRYPTO_RC4 = 0x02
PRIVATE_KEY_BITS = 160
DISCARD = 1024
_PLAIN_PREFIX = b"\x13BitTorrent protocol"


class MSEError(RemoteProtocolError):
    """The peer's side of the encryption handshake is wrong; drop the connection."""


class ShortSecret(MSEError):
    """The shared secret starts with a zero byte, and the Initiator was asked to
    avoid that (see the module's docstring): dial again with a new key."""


class Cipher(Protocol):
    """An RC4 keystream: ``update`` encrypts (= decrypts) and moves on."""

    def update(self, data: bytes) -> bytes: ...


CipherFactory = Callable[[bytes], Cipher]


@dataclass
class Result:
    """A finished handshake. ``selected`` is CRYPTO_RC4 or CRYPTO_PLAINTEXT;
    ``encrypt``/``decrypt`` are the RC4 ciphers to go on with (None if plaintext);
    ``payload`` the peer's bytes after the handshake (IA for a responder, then
    anything that followed), already decrypted; ``skey`` the info-hash."""

    selected: int
    encrypt: Cipher | None
    decrypt: Cipher | None
    payload: bytes
    skey: bytes


def looks_plain(head: bytes) -> bool:
    """Whether the first bytes of an incoming connection (as many as have come, up
    to 20) start a plain BitTorrent handshake rather than an MSE one."""
    n = min(len(head), len(_PLAIN_PREFIX))
    return n > 0 and head[:n] == _PLAIN_PREFIX[:n]


def public_key(private: int) -> bytes:
    """G^private mod P, 96 bytes big-endian."""
    return pow(G, private, P).to_bytes(KEY_BYTES, "big")


def _secret(their_public: bytes, private: int) -> bytes:
    y = int.from_bytes(their_public, "big")
    if not 1 < y < P - 1:
        raise MSEError("degenerate Diffie-Hellman public key")
    return pow(y, private, P).to_bytes(KEY_BYTES, "big")


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def _rc4(factory: CipherFactory, key: bytes) -> Cipher:
    cipher = factory(key)
    cipher.update(bytes(DISCARD))
    return cipher


def _check_private(private: int) -> None:
    if not 1 < private < P - 1:
        raise ValueError("private key out of range")


def _check_pad(pad: bytes) -> None:
    if len(pad) > MAX_PAD:
        raise ValueError(f"a pad has at most {MAX_PAD} bytes")


def _one_bit(field: int) -> bool:
    return field in (CRYPTO_PLAINTEXT, CRYPTO_RC4)


class _Handshake:
    """What both sides share: the buffer, the error state, the result."""

    def __init__(self, rc4: CipherFactory, private: int) -> None:
        _check_private(private)
        self._rc4 = rc4
        self._private = private
        self._buf = bytearray()
        self._state = "start"
        self.result: Result | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    def receive(self, data: bytes) -> bytes:
        """Take the bytes that arrived; return the bytes to send now (maybe none).
        Raises MSEError if the peer's bytes are wrong, and after that on every call."""
        if self._state == "error":
            raise MSEError("encryption handshake failed earlier")
        if self.done:
            raise RuntimeError("the handshake is over: the payload is the stream's")
        self._buf += data
        try:
            return self._step()
        except MSEError:
            self._state = "error"
            self._buf.clear()
            raise

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _step(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError


class Initiator(_Handshake):
    """Side A: we dial. ``start()`` gives Ya and PadA to send first."""

    def __init__(self, skey: bytes, *, rc4: CipherFactory, private: int, pad_a: bytes,
                 pad_c: bytes, provide: int = CRYPTO_RC4 | CRYPTO_PLAINTEXT,
                 ia: bytes = b"", avoid_short_secret: bool = False) -> None:
        super().__init__(rc4, private)
        for pad in (pad_a, pad_c):
            _check_pad(pad)
        if len(ia) > MAX_IA:
            raise ValueError("IA too long")
        if not provide or provide & ~(CRYPTO_RC4 | CRYPTO_PLAINTEXT):
            raise ValueError("provide plaintext and/or RC4")
        self.skey = skey
        self.provide = provide
        self._pad_a, self._pad_c, self._ia = pad_a, pad_c, ia
        self._select = 0
        self._pad_d = 0
        self._avoid_short = avoid_short_secret

    def start(self) -> bytes:
        if self._state != "start":
            raise RuntimeError("start() once, first")
        self._state = "yb"
        return public_key(self._private) + self._pad_a

    def _step(self) -> bytes:
        out = b""
        if self._state == "start":
            raise RuntimeError("call start() first")
        if self._state == "yb":
            yb = self._take(KEY_BYTES)
            if yb is None:
                return out
            s = _secret(yb, self._private)
            if s[0] == 0 and self._avoid_short:
                raise ShortSecret("the shared secret starts with a zero byte, which "
                                  "some peers hash wrong")
            skey = self.skey
            self._enc = _rc4(self._rc4, _sha1(b"keyA", s, skey))
            self._dec = _rc4(self._rc4, _sha1(b"keyB", s, skey))
            self._vc = self._dec.update(VC)   # what B's encrypted VC looks like
            out = (_sha1(b"req1", s) + _xor(_sha1(b"req2", skey), _sha1(b"req3", s))
                   + self._enc.update(VC + struct.pack(">IH", self.provide, len(self._pad_c))
                                      + self._pad_c + struct.pack(">H", len(self._ia)))
                   + self._enc.update(self._ia))
            self._state = "vc"
        if self._state == "vc":  # PadB (0-512 bytes), then ENCRYPT(VC)
            at = self._buf.find(self._vc, 0, MAX_PAD + len(VC))
            if at < 0:
                if len(self._buf) >= MAX_PAD + len(VC):
                    raise MSEError("no verification constant after 512 bytes of padding")
                return out
            del self._buf[:at + len(VC)]
            self._state = "select"
        if self._state == "select":
            head = self._take(6)
            if head is None:
                return out
            select, self._pad_d = struct.unpack(">IH", self._dec.update(head))
            if not _one_bit(select) or not select & self.provide:
                raise MSEError(f"peer selected crypto {select:#x}, we provided "
                               f"{self.provide:#x}")
            if self._pad_d > MAX_PAD:
                raise MSEError(f"PadD of {self._pad_d} bytes (at most {MAX_PAD})")
            self._select = select
            self._state = "pad_d"
        if self._state == "pad_d":
            pad = self._take(self._pad_d)
            if pad is None:
                return out
            self._dec.update(pad)
            rest = bytes(self._buf)
            self._buf.clear()
            rc4 = self._select == CRYPTO_RC4
            self.result = Result(self._select, self._enc if rc4 else None,
                                 self._dec if rc4 else None,
                                 self._dec.update(rest) if rc4 else rest, self.skey)
            self._state = "done"
        return out


class Responder(_Handshake):
    """Side B: a peer dialed us. ``skeys`` are the info-hashes we serve; ``allow``
    the crypto we accept (RC4 and/or plaintext); with both offered and allowed,
    ``prefer_rc4`` picks RC4. Yb and PadB are sent once Ya is in."""

    def __init__(self, skeys: Iterable[bytes], *, rc4: CipherFactory, private: int,
                 pad_b: bytes, pad_d: bytes, allow: int = CRYPTO_RC4 | CRYPTO_PLAINTEXT,
                 prefer_rc4: bool = True) -> None:
        super().__init__(rc4, private)
        for pad in (pad_b, pad_d):
            _check_pad(pad)
        self._by_req2 = {_sha1(b"req2", k): k for k in skeys}
        self._pad_b, self._pad_d = pad_b, pad_d
        self.allow = allow
        self.prefer_rc4 = prefer_rc4
        self._state = "ya"
        self._pad_c = 0
        self._ia_len = 0

    def _step(self) -> bytes:
        out = b""
        if self._state == "ya":
            ya = self._take(KEY_BYTES)
            if ya is None:
                return out
            self._s = _secret(ya, self._private)
            self._req1 = _sha1(b"req1", self._s)
            out = public_key(self._private) + self._pad_b
            self._state = "req1"
        if self._state == "req1":  # PadA (0-512 bytes), then HASH('req1', S)
            at = self._buf.find(self._req1, 0, MAX_PAD + len(self._req1))
            if at < 0:
                if len(self._buf) >= MAX_PAD + len(self._req1):
                    raise MSEError("no req1 hash after 512 bytes of padding")
                return out
            del self._buf[:at + len(self._req1)]
            self._state = "skey"
        if self._state == "skey":
            obf = self._take(20)
            if obf is None:
                return out
            skey = self._by_req2.get(_xor(obf, _sha1(b"req3", self._s)))
            if skey is None:
                raise MSEError("the peer asks for a torrent we do not have")
            self.skey = skey
            self._dec = _rc4(self._rc4, _sha1(b"keyA", self._s, skey))
            self._enc = _rc4(self._rc4, _sha1(b"keyB", self._s, skey))
            self._state = "provide"
        if self._state == "provide":
            head = self._take(14)
            if head is None:
                return out
            head = self._dec.update(head)
            if head[:8] != VC:
                raise MSEError("bad verification constant")
            provide, self._pad_c = struct.unpack(">IH", head[8:])
            if self._pad_c > MAX_PAD:
                raise MSEError(f"PadC of {self._pad_c} bytes (at most {MAX_PAD})")
            common = provide & self.allow
            if common & CRYPTO_RC4 and (self.prefer_rc4 or not common & CRYPTO_PLAINTEXT):
                self._select = CRYPTO_RC4
            elif common & CRYPTO_PLAINTEXT:
                self._select = CRYPTO_PLAINTEXT
            else:
                raise MSEError(f"the peer provides crypto {provide:#x}, we allow "
                               f"{self.allow:#x}")
            self._state = "pad_c"
        if self._state == "pad_c":
            pad = self._take(self._pad_c + 2)
            if pad is None:
                return out
            (self._ia_len,) = struct.unpack(">H", self._dec.update(pad)[-2:])
            self._state = "ia"
        if self._state == "ia":
            ia = self._take(self._ia_len)
            if ia is None:
                return out
            ia = self._dec.update(ia)
            out += self._enc.update(VC + struct.pack(">IH", self._select, len(self._pad_d))
                                    + self._pad_d)
            rest = bytes(self._buf)
            self._buf.clear()
            rc4 = self._select == CRYPTO_RC4
            self.result = Result(self._select, self._enc if rc4 else None,
                                 self._dec if rc4 else None,
                                 ia + (self._dec.update(rest) if rc4 else rest), self.skey)
            self._state = "done"
        return out
