"""What the ledger key (the 32-byte data key of ``--key-file``) does in the ledger.

- Seals: requester identities and request items are AES-256-GCM sealed, bound (associated data)
  to their request id (an item also to its type), so a value moved to another row does not open.
- Keyed digests (HMAC-SHA256, derived keys) of emails, items and notes: lookups and what events
  record, untestable against a guess without the key.
- The event chain's MAC: each event's hash is an HMAC over its fields and the previous hash.

The database holds none of these keys, only ``key_id`` (a public fingerprint). Rationale:
docs/design/ledger.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scrub.crypto import KeyFileError, key_id

#: The associated data identities were sealed with before revision 0004 (bound to nothing).
LEGACY_IDENTITY_AD = b"scrub-ledger-identity"


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


class IdentitySeal:
    """Seals, keyed digests and the chain MAC under one ledger key (see the module text)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.key_id = key_id(key)
        self._lookup = _derive(key, b"scrub-ledger-requester-lookup")
        self._items = _derive(key, b"scrub-ledger-item-lookup")
        self._notes = _derive(key, b"scrub-ledger-notes")
        self._chain = _derive(key, b"scrub-ledger-chain")
        self._staff = _derive(key, b"scrub-ledger-staff")
        self._root = _derive(key, b"scrub-ledger-derived")

    # ---- identities

    def seal(self, name: str, email: str, request_id: int) -> bytes:
        """The requester's name and email, sealed for request ``request_id`` only."""
        plain = json.dumps({"name": name, "email": email}, sort_keys=True).encode()
        return self._seal(plain, _identity_ad(request_id))

    def open(self, sealed: bytes, stored_key_id: str, request_id: int) -> dict[str, str]:
        """The identity of request ``request_id``; KeyFileError for another key, and for a
        sealed identity that was altered or belongs to another request."""
        if stored_key_id != self.key_id:
            raise KeyFileError(f"the identity of request {request_id} was sealed with key "
                               f"{stored_key_id}, not with this key ({self.key_id})",
                               hint="pass the ledger's key with --key-file")
        identity = self.try_open(sealed, request_id)
        if identity is None:
            raise KeyFileError(f"the sealed identity of request {request_id} does not open for "
                               "it (altered, or moved from another request)",
                               hint="run `scrub ledger verify`")
        return identity

    def try_open(self, sealed: bytes, request_id: int) -> dict[str, str] | None:
        """The identity of request ``request_id``, or None when it does not open for it."""
        plain = self._open(sealed, _identity_ad(request_id))
        if plain is None:
            return None
        try:
            identity = json.loads(plain)
        except ValueError:
            return None
        return identity if isinstance(identity, dict) else None

    def open_legacy(self, sealed: bytes) -> dict[str, str] | None:
        """An identity sealed before revision 0004 (not bound to its request), or None."""
        plain = self._open(sealed, LEGACY_IDENTITY_AD)
        return None if plain is None else json.loads(plain)

    def lookup(self, email: str) -> str:
        """Keyed digest of an email: finds repeat requesters without storing the email."""
        normal = email.strip().lower().encode()
        return hmac.new(self._lookup, normal, hashlib.sha256).hexdigest()

    # ---- items

    def seal_item(self, request_id: int, type_name: str, value: str) -> bytes:
        return self._seal(value.encode(), _item_ad(request_id, type_name))

    def open_item(self, sealed: bytes, request_id: int, type_name: str) -> str | None:
        """The canonical value, or None when the seal does not open for this request and
        type (altered, or moved from another row)."""
        plain = self._open(sealed, _item_ad(request_id, type_name))
        return None if plain is None else plain.decode()

    def item_digest(self, type_name: str, value: str) -> str:
        """Keyed digest of an item: the same for every request naming it."""
        return hmac.new(self._items, f"{type_name}\x00{value}".encode(),
                        hashlib.sha256).hexdigest()

    def notes_digest(self, notes: str | None) -> str | None:
        if notes is None:
            return None
        return hmac.new(self._notes, notes.encode(), hashlib.sha256).hexdigest()

    # ---- staff accounts, web sessions, intake receipts (scrub.ledger.staff, scrub.web)

    def derived(self, label: str) -> bytes:
        """A 32-byte key for one purpose (``label``), derived from the ledger key: the web
        console's session and CSRF signing keys, intake receipt code digests."""
        return _derive(self._root, b"scrub-derived\x00" + label.encode())

    def staff_mac(self, user_id: int, name: str, role: str, password_hash: str) -> str:
        """A staff account's MAC: a row edited outside scrub (a role raised, a password hash
        swapped, a user inserted) no longer checks."""
        text = _CANONICAL_JSON.encode([int(user_id), name, role, password_hash]).encode()
        return hmac.digest(self._staff, text, "sha256").hex()

    def seal_statement(self, request_id: int, code_digest: str, text: str) -> bytes:
        """A requester's statement from the intake form, sealed for its request and receipt."""
        return self._seal(text.encode(), _statement_ad(request_id, code_digest))

    def open_statement(self, sealed: bytes, request_id: int, code_digest: str) -> str | None:
        plain = self._open(sealed, _statement_ad(request_id, code_digest))
        return None if plain is None else plain.decode()

    # ---- the chain

    def mac(self, text: bytes) -> str:
        """An event's hash: HMAC-SHA256 of its canonical text (which holds the previous hash)."""
        return hmac.digest(self._chain, text, "sha256").hex()

    # ---- internals

    def _seal(self, plain: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plain, associated)

    def _open(self, sealed: bytes | None, associated: bytes) -> bytes | None:
        if not isinstance(sealed, (bytes, bytearray, memoryview)) or len(sealed) < 28:
            return None
        sealed = bytes(sealed)
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], associated)
        except InvalidTag:
            return None


def _identity_ad(request_id: int) -> bytes:
    return f"scrub-ledger-identity\x00{int(request_id)}".encode()


def _statement_ad(request_id: int, code_digest: str) -> bytes:
    return f"scrub-intake-statement\x00{int(request_id)}\x00{code_digest}".encode()


def _item_ad(request_id: int, type_name: str) -> bytes:
    return f"scrub-ledger-item\x00{int(request_id)}\x00{type_name}".encode()


# --------------------------------------------------------------------------- event text

GENESIS = "0" * 64
_CANONICAL_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def event_text(prev_hash: str, seq: int, request_id: int | None, at_iso: str, actor: str,
               action: str, body: str) -> bytes:
    """What an event's hash covers: the previous hash and every field of the event."""
    return _CANONICAL_JSON.encode([prev_hash, seq, request_id, at_iso, actor, action,
                                   body]).encode()


def legacy_hash(text: bytes) -> str:
    """The unkeyed sha256 events had before revision 0004 (kept to verify that prefix)."""
    return hashlib.sha256(text).hexdigest()


def legacy_item_digest(type_name: str, value: str) -> str:
    """What events recorded of an item before revision 0004 (an unkeyed sha256)."""
    return hashlib.sha256(f"{type_name}\x00{value}".encode()).hexdigest()
