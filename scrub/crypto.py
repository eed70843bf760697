"""Keys, encryption at rest and Ed25519 signatures (rationale: docs/design/crypto.md).

- Data keys: 32 random bytes (AES-256-GCM) in a key file holding exactly their base64 line
  (``scrub keygen``), mode 0600, named by ``--key-file`` or ``SCRUB_KEY_FILE``, never by value.
  A secret key file others may read or write, or not exactly that line, is refused.
  :func:`key_id` names a key in metadata, so a wrong key is reported before decrypting.
- Encrypted files: frames of at most 8 MiB of plaintext, each bound (associated data) to the
  file's purpose, its position and whether it is last; memory stays bounded by one frame.
- Signatures: detached Ed25519 over a file's bytes (raw 64 bytes or base64); public keys in PEM
  SubjectPublicKeyInfo or raw 32 bytes; a non-canonical or small-order key is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import os
import re
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scrub.atomic import atomic_path, open_regular
from scrub.errors import ExternalSourceError, ScrubError, UserInputError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

KEY_ENV = "SCRUB_KEY_FILE"
_MAGIC = b"SCRUBENC1\n"
_FRAME = 8 << 20
#: A data key file: the base64 of 32 bytes (43 characters and one ``=``), then an optional newline.
_KEY_LINE = re.compile(rb"([A-Za-z0-9+/]{43}=)(\r?\n)?")
#: Key, signature and public-key files are small; a larger file is not one of them.
_SMALL_FILE = 1 << 16


class ByteReader(Protocol):
    """What :func:`decrypt_frames` reads from: a binary file, or a wrapper of one."""

    def read(self, size: int = -1, /) -> bytes: ...


class KeyFileError(UserInputError):
    """A key file is missing, malformed or does not fit the data (exit 2)."""


def resolve_key_file(path: Path | str | None) -> Path | None:
    """The key file named by flag or by ``SCRUB_KEY_FILE``; None when neither is set."""
    if path:
        return Path(path)
    env = os.environ.get(KEY_ENV)
    return Path(env) if env else None


def load_key(path: Path | str) -> bytes:
    """Read a 32-byte data key from a key file: one line, the key's base64 (44 characters).

    KeyFileError (exit 2) for a file others may read or write, and for any other content (a
    file cut short, raw bytes, extra lines): never a guess that would be another key."""
    path = Path(path)
    data = _read(path, "the key file", KeyFileError,
                 hint="create one with `scrub keygen --output FILE`", secret=True)
    line = _KEY_LINE.fullmatch(data)
    encoded = line.group(1) if line else b""
    key = base64.b64decode(encoded, validate=True) if line else b""
    if len(key) != 32 or base64.b64encode(key) != encoded:
        raise KeyFileError(f"{path}: not a scrub key file ({len(data)} bytes; expected one line "
                           "holding the base64 of 32 bytes, 44 characters)",
                           hint="a key file cut short or edited is refused rather than read as "
                                "another key; restore it from its backup")
    return key


def _read(path: Path, what: str, error: type[UserInputError], *,
          hint: str | None = None, secret: bool = False) -> bytes:
    """A small regular file's bytes, or ``error`` naming the file and why it cannot be read.

    ``secret``: the file holds a secret key, refused when its group or others may read or
    write it (as ssh refuses such keys: anyone else on the machine may have copied it)."""
    try:
        with open_regular(path, what.removeprefix("the ")) as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(_SMALL_FILE + 1)
    except ScrubError as exc:
        raise error(exc.message, hint=hint) from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({os.strerror(exc.errno or 0).lower()})",
                    hint=hint) from None
    if secret and stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(f"{path}: {what} is accessible to others (mode "
                           f"{stat.S_IMODE(mode):04o}); a secret key must be readable by its "
                           "owner only", hint=f"run `chmod 600 {path}`, and replace the key if "
                                              "others may have read it")
    if len(data) > _SMALL_FILE:
        raise error(f"{path}: too large for {what}", hint=hint)
    return data


def _raw_or_base64(data: bytes, size: int) -> bytes | None:
    """``data`` if it is ``size`` raw bytes, else its base64 decoding if that has ``size`` bytes."""
    if len(data) == size:
        return data
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if len(decoded) == size else None


def write_key_file(path: Path | str, *, force: bool = False) -> bytes:
    """Create a new random data key file with 0600 permissions; refuses to overwrite one."""
    path = Path(path)
    if path.exists() and not force:
        raise UserInputError(f"{path}: exists; refusing to overwrite a key",
                             hint="choose another path (a lost key makes its data unreadable)")
    key = AESGCM.generate_key(bit_length=256)
    with atomic_path(path, private=True) as tmp:
        tmp.write_bytes(base64.b64encode(key) + b"\n")
    return key


def key_id(key: bytes) -> str:
    """A public fingerprint of a key (16 hex digits); reveals nothing usable about the key."""
    return hashlib.sha256(b"scrub-key-id\x00" + key).hexdigest()[:16]


class EncryptingWriter(io.RawIOBase):
    """A write-only file that encrypts what is written to it into ``target`` as frames.

    For producers that write (a parquet writer); :func:`decrypt_frames` reads the frames back.
    Only one frame of plaintext is held at a time. ``close`` seals the last
    frame; a writer that is not closed leaves a file that fails to decrypt (truncated).
    """

    def __init__(self, key: bytes, purpose: str, target: BinaryIO) -> None:
        super().__init__()
        self._aead = AESGCM(key)
        self._purpose = purpose
        self._target = target
        self._buffer = bytearray()
        self._index = 0
        target.write(_MAGIC)

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        size = memoryview(data).nbytes
        self._buffer += data
        while len(self._buffer) > _FRAME:
            self._seal(bytes(self._buffer[:_FRAME]), last=False)
            del self._buffer[:_FRAME]
        return size

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
        super().close()

    def _seal(self, block: bytes, *, last: bool) -> None:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, block, _aad(self._purpose, self._index, last))
        self._target.write(struct.pack(">I", len(sealed)) + nonce + sealed)
        self._index += 1


def decrypt_frames(key: bytes, purpose: str, source: ByteReader, *,
                   name: str) -> Iterator[bytes]:
    """Yield the plaintext frames of an encrypted file; any tampering or wrong key fails."""
    if source.read(len(_MAGIC)) != _MAGIC:
        raise ScrubError(f"{name}: not a scrub encrypted file")
    aead = AESGCM(key)
    index = 0
    while True:
        head = source.read(16)
        if len(head) < 16:
            raise ScrubError(f"{name}: encrypted file is truncated")
        (length,) = struct.unpack(">I", head[:4])
        sealed = source.read(length)
        if len(sealed) != length:
            raise ScrubError(f"{name}: encrypted file is truncated")
        for last in (False, True):
            try:
                plain = aead.decrypt(head[4:], sealed, _aad(purpose, index, last))
            except InvalidTag:
                continue
            yield plain
            if last:
                if source.read(1):
                    raise ScrubError(f"{name}: data after the last encrypted frame")
                return
            break
        else:
            raise KeyFileError(f"{name}: cannot decrypt (wrong key, or the file was altered)")
        index += 1


def _aad(purpose: str, index: int, last: bool) -> bytes:
    return f"scrub\x00{purpose}\x00{index}\x00{int(last)}".encode()


# --------------------------------------------------------------------------- signatures


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM SubjectPublicKeyInfo or raw 32 bytes.

    Refused (UserInputError, exit 2): a PEM cut to 32 bytes, a key that is not a canonical curve
    point, and a key of small order, under which signatures can be forged without any secret.
    """
    path = Path(path)
    data = _read(path, "the public key", UserInputError)
    if len(data) == 32:
        if data.startswith(b"-----"):
            raise UserInputError(f"{path}: a PEM public key cut short (32 bytes)")
        raw = data
    else:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise UserInputError(f"{path}: not an Ed25519 public key (PEM or raw 32 bytes)") \
                from None
        if not isinstance(key, Ed25519PublicKey):
            raise UserInputError(f"{path}: the public key is not an Ed25519 key")
        raw = public_key_bytes(key)
    problem = weak_public_key(raw)
    if problem:
        raise UserInputError(f"{path}: refused as a signing key: {problem}",
                             hint="ask the source for its real public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_fingerprint(raw: bytes) -> str:
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def load_signature(path: Path | str) -> bytes:
    """A detached Ed25519 signature: raw 64 bytes or base64 text."""
    path = Path(path)
    data = _read(path, "the signature", UserInputError)
    signature = _raw_or_base64(data, 64)
    if signature is None:
        raise ExternalSourceError(f"{path}: not an Ed25519 signature (64 bytes, raw or base64)")
    return signature


def signature_valid(public_raw: bytes, data: bytes, signature: bytes) -> bool:
    """Whether a detached Ed25519 signature over ``data`` (bytes already read, so that what is
    verified is what the caller goes on to use) verifies under ``public_raw``. A weak key is
    refused (ExternalSourceError, exit 3) rather than answered."""
    problem = weak_public_key(public_raw)
    if problem:
        raise ExternalSourceError(f"the registered signing key is refused: {problem}",
                                  hint="register the source's real key with `scrub lists trust`")
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, data)
    except InvalidSignature:
        return False
    return True


def keyed_mac(key: bytes, purpose: str, data: bytes) -> str:
    """HMAC-SHA256 (hex) of ``data`` under a subkey derived from the data key for one purpose
    (e.g. sealing the list store's catalog): whoever lacks the key file cannot forge it."""
    subkey = hmac.new(key, b"scrub.subkey\x00" + purpose.encode(), hashlib.sha256).digest()
    return hmac.new(subkey, data, hashlib.sha256).hexdigest()


def public_key_path(private_path: Path) -> Path:
    """Where the public half of a signing key lies: ``NAME.pub`` beside ``NAME.pem`` (or beside
    ``NAME``, for a private key file without that suffix). ``keygen --signing`` and the demo
    both name their files so."""
    private_path = Path(private_path)
    if private_path.suffix == ".pem":
        return private_path.with_suffix(".pub")
    return private_path.with_name(private_path.name + ".pub")


def write_signing_keypair(private_path: Path, public_path: Path, *, force: bool = False) -> str:
    """A new Ed25519 key pair: PKCS#8 PEM private key (0600) and SubjectPublicKeyInfo PEM."""
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise UserInputError(f"{path}: exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    with atomic_path(private_path, private=True) as tmp:
        tmp.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    public = private.public_key()
    with atomic_path(public_path) as tmp:
        tmp.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    return public_key_fingerprint(public_key_bytes(public))


def load_signing_key(path: Path | str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PKCS#8 PEM (as ``scrub keygen --signing`` writes it)."""
    path = Path(path)
    data = _read(path, "the signing key", UserInputError, secret=True)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise UserInputError(f"{path}: not a PEM private key (PKCS#8, unencrypted)",
                             hint="make one with `scrub keygen --signing`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserInputError(f"{path}: the signing key is not an Ed25519 key "
                             f"({type(key).__name__.removeprefix('_')})",
                             hint="make one with `scrub keygen --signing`")
    return key


# Ed25519 point arithmetic (RFC 8032), only to tell a usable public key from a weak one.
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def weak_public_key(raw: bytes) -> str | None:
    """Why a raw Ed25519 public key must not be trusted, or None when it may.

    A key of small order (8 points, 14 encodings with the non-canonical ones: all zeros, the
    identity and their kin) lets anyone forge signatures: for the identity, the signature
    ``R = identity, S = 0`` verifies over every message.
    """
    if len(raw) != 32:
        return "not 32 bytes"
    point = _decode_point(raw)
    if point is None:
        return "not a canonical Ed25519 curve point"
    for _ in range(3):  # times the cofactor, 8
        point = _add(point, point)
    if point == (0, 1):
        return "a point of small order (such a key accepts forged signatures)"
    return None


def _decode_point(raw: bytes) -> tuple[int, int] | None:
    """(x, y) of a canonical point encoding (RFC 8032 5.1.3), or None."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P:
            return None
    if x == 0 and sign:
        return None
    return (_P - x if x & 1 != sign else x), y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Twisted Edwards addition (a = -1; complete, since d is not a square)."""
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return ((x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P)
