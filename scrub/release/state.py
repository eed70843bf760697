"""Per-shard build state, for incremental rebuilds (``--from``): each variant's drop mask of the
shard and its stats (counts per reason and per source, digests, probe-set tags).

With the public input, a drop mask and per-source counts say which rows a partner list or a
takedown request removed, so the state is never published: it lies in ``OUT/.scrub-state/``,
beside the variant folders, sealed with AES-256-GCM under a key derived from the signing key
and bound to its variant and shard; the signed manifest holds only a keyed tag (HMAC-SHA256)
of each sealed file. Without the signing key nobody can read a state or test a guess against
its tag; a changed, missing or swapped state is refused (exit 3). The nonce is synthetic (an
HMAC of the plaintext), so a resumed build writes the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scrub.atomic import atomic_path
from scrub.errors import ExternalSourceError
from scrub.storage import ObjectPath

#: A local folder, or a prefix in object storage.
Folder = Path | ObjectPath

#: Where a release build keeps the sealed shard states (in OUT, beside the variants).
STATE_DIR = ".scrub-state"
_MAGIC = b"SCRUBSTATE1\n"


def _keys(key: str) -> tuple[bytes, bytes]:
    """The cipher key and the tag key, from the build's probe key (hex)."""
    root = bytes.fromhex(key)
    return (hmac.new(root, b"scrub.release.state.cipher", hashlib.sha256).digest(),
            hmac.new(root, b"scrub.release.state.tag", hashlib.sha256).digest())


def _bound(variant: str, shard_name: str) -> bytes:
    return f"scrub.release.state\0{variant}\0{shard_name}".encode()


def state_path(root: Folder, variant: str, shard_name: str) -> Folder:
    return root / STATE_DIR / variant / f"{Path(shard_name).stem}.state"


def _tag(tag_key: bytes, bound: bytes, sealed: bytes) -> str:
    return hmac.new(tag_key, b"tag\0" + bound + b"\0" + sealed, hashlib.sha256).hexdigest()


def write_state(root: Folder, variant: str, shard_name: str, drop: np.ndarray,
                stat: dict[str, object], key: str) -> str:
    """Seal the shard's drop mask and stats under ``root``; the tag for the manifest."""
    body = {"rows": int(len(drop)),
            "drop": base64.b64encode(np.packbits(drop).tobytes()).decode(),
            "stats": {k: v for k, v in stat.items() if k != "state"}}
    plain = json.dumps(body, sort_keys=True).encode()
    cipher_key, tag_key = _keys(key)
    bound = _bound(variant, shard_name)
    nonce = hmac.new(tag_key, b"nonce\0" + bound + b"\0" + plain, hashlib.sha256).digest()[:12]
    sealed = _MAGIC + nonce + AESGCM(cipher_key).encrypt(nonce, plain, bound)
    with atomic_path(state_path(root, variant, shard_name)) as tmp:
        tmp.write_bytes(sealed)
    return _tag(tag_key, bound, sealed)


def read_state(root: Folder, variant: str, shard_name: str, tag: object,
               key: str) -> tuple[np.ndarray, dict]:
    """The drop mask and stats of a shard's state under ``root`` whose tag is ``tag`` (from
    the signed manifest); ExternalSourceError when it is missing or is not that state."""
    path = state_path(root, variant, shard_name)
    try:
        sealed = path.read_bytes()
    except OSError:
        raise ExternalSourceError(f"{path}: missing; the previous release cannot be rebuilt "
                                  "incrementally", hint="run a full build") from None
    cipher_key, tag_key = _keys(key)
    bound = _bound(variant, shard_name)
    if not isinstance(tag, str) or not hmac.compare_digest(_tag(tag_key, bound, sealed), tag):
        raise ExternalSourceError(f"{path}: not the state the signed manifest names (altered, "
                                  "swapped or made with another signing key)",
                                  hint="run a full build")
    try:
        head = len(_MAGIC)
        if sealed[:head] != _MAGIC:
            raise ValueError
        plain = AESGCM(cipher_key).decrypt(sealed[head:head + 12], sealed[head + 12:], bound)
        body = json.loads(plain)
        bits = np.frombuffer(base64.b64decode(body["drop"]), dtype=np.uint8)
        return np.unpackbits(bits, count=body["rows"]).astype(bool), body["stats"]
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise ExternalSourceError(f"{path}: cannot be opened as a shard state",
                                  hint="run a full build") from None
