"""Who vouches for a new list version (a list is bound to its signer) and the sensitivity
it keeps; see :meth:`~scrub.lists.store.ListStore.import_list`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scrub.atomic import read_regular_bytes
from scrub.crypto import public_key_fingerprint, signature_valid
from scrub.errors import ExternalSourceError, UserInputError
from scrub.lists._catalog import ListVersion, _Catalog
from scrub.lists.hashlist import HashList, public_by_default


@dataclass
class _Signer:
    """Who vouches for a new version: its signer (fingerprint, key hex) and any recorded
    exception to the list's binding."""

    fingerprint: str | None = None
    key: str | None = None
    change: str = ""


class _Verifier:
    """Whether a list file's signature verifies under a key (hex), checked once per key over
    the bytes read once (``content``: what is then parsed). Once :meth:`forget` drops them, a
    key not checked before means the store changed during the import."""

    def __init__(self, path: Path, sig: bytes | None) -> None:
        self.path, self.sig = path, sig
        self.content = read_regular_bytes(path, "list file") if sig is not None else None
        self._verified: dict[str, bool] = {}

    def __call__(self, public_hex: str) -> bool:
        if public_hex not in self._verified:
            if self.content is None or self.sig is None:
                raise ExternalSourceError(f"{self.path}: the store changed during the import",
                                          hint="rerun it; nothing was stored")
            self._verified[public_hex] = signature_valid(bytes.fromhex(public_hex),
                                                         self.content, self.sig)
        return self._verified[public_hex]

    def forget(self) -> None:
        self.content = None


def _binding(versions: list[ListVersion],
             trust: dict[str, dict[str, str]]) -> tuple[str, str | None] | None:
    """The signer a list is bound to: the latest signed version's (fingerprint, key hex). The
    key of a version written before keys were recorded is found among the trusted keys."""
    for meta in reversed(versions):
        if meta.signed_by:
            public = meta.signer_key or next(
                (t["key"] for t in trust.values() if t["fingerprint"] == meta.signed_by), None)
            if public is not None and public_key_fingerprint(bytes.fromhex(public)) \
                    != meta.signed_by:
                public = None
            return meta.signed_by, public
    return None


def _signer_of(catalog: _Catalog, name: str, source: str, path: Path, sig: bytes | None,
               verifies: Callable[[str], bool], allow_unsigned: bool,
               retrust: bool) -> _Signer:
    """Who vouches for a new version of ``name`` (see :meth:`ListStore.import_list`)."""
    trusted = catalog.trust.get(source)
    bound = _binding(catalog.lists.get(name, []), catalog.trust)
    if bound is None:
        if retrust:
            raise UserInputError(f"--retrust: list {name!r} is not bound to a signer")
        return _unbound_signer(trusted, source, path, sig, verifies, allow_unsigned)
    fingerprint, public = bound
    if retrust:
        return _retrusted(trusted, fingerprint, name, source, path, sig, verifies)
    if sig is None:
        if allow_unsigned:
            return _Signer(change=f"accepted unsigned with --allow-unsigned (the list stays "
                                  f"bound to {fingerprint})")
        raise ExternalSourceError(
            f"{path}: list {name!r} is bound to signer {fingerprint} (an earlier version was "
            "signed); a new version needs its signature, whatever the source",
            hint=f"pass --signature FILE; --allow-unsigned accepts it unsigned (recorded); "
                 f"{_NONE_STORED}")
    if public is None:
        raise ExternalSourceError(
            f"{path}: list {name!r} is bound to signer {fingerprint}, whose key is not "
            "registered any more", hint="register it again with `scrub lists trust`, or pass "
                                        "--retrust with the source's new key (recorded)")
    if verifies(public):
        return _Signer(fingerprint, public)
    if trusted is not None and trusted["key"] != public and verifies(trusted["key"]):
        raise ExternalSourceError(
            f"{path}: the signature verifies under {trusted['fingerprint']}, the key now "
            f"registered for {source!r}, but list {name!r} is bound to {fingerprint}",
            hint=f"pass --retrust to bind the list to the new key (recorded); {_NONE_STORED}")
    raise _bad_signature(path, f"list {name!r}'s signer {fingerprint}")


_NONE_STORED = "nothing was stored"


def _unbound_signer(trusted: dict[str, str] | None, source: str, path: Path, sig: bytes | None,
                    verifies: Callable[[str], bool], allow_unsigned: bool) -> _Signer:
    """The signer of a list not yet bound: the source's registered key, if it has one."""
    if trusted is None:
        if sig is not None:
            raise ExternalSourceError(
                f"{path}: a signature was given but source {source!r} has no registered key",
                hint=f"run `scrub lists trust --source {source} --key ...`")
        return _Signer()
    if sig is None:
        if allow_unsigned:
            return _Signer(change=f"accepted unsigned with --allow-unsigned (source "
                                  f"{source} signs with {trusted['fingerprint']})")
        raise ExternalSourceError(
            f"{path}: source {source!r} is trusted with a signing key, and no signature was "
            "given", hint=f"pass --signature FILE; {_NONE_STORED}")
    if not verifies(trusted["key"]):
        raise _bad_signature(path, f"{source!r}'s key {trusted['fingerprint']}")
    return _Signer(trusted["fingerprint"], trusted["key"])


def _retrusted(trusted: dict[str, str] | None, fingerprint: str, name: str, source: str,
               path: Path, sig: bytes | None, verifies: Callable[[str], bool]) -> _Signer:
    """``--retrust``: the list is bound to the key now registered for ``source``."""
    if trusted is None:
        raise ExternalSourceError(
            f"--retrust: source {source!r} has no registered key to bind list {name!r} to",
            hint=f"register its new key with `scrub lists trust --source {source} --key ...`")
    if sig is None:
        raise ExternalSourceError(f"{path}: --retrust needs the version signed with "
                                  f"{source!r}'s key", hint=f"pass --signature; {_NONE_STORED}")
    if not verifies(trusted["key"]):
        raise _bad_signature(path, f"{source!r}'s key {trusted['fingerprint']}")
    change = "" if trusted["fingerprint"] == fingerprint else \
        f"re-trusted with --retrust: signer {fingerprint} -> {trusted['fingerprint']}"
    return _Signer(trusted["fingerprint"], trusted["key"], change)


def _bad_signature(path: Path, whose: str) -> ExternalSourceError:
    return ExternalSourceError(f"{path}: the signature does not verify under {whose}",
                               hint="the file or the signature was altered, or signed by another "
                                    "key; nothing was stored")


def _sensitivity(versions: list[ListVersion], name: str, wanted: bool | None,
                 parsed: HashList) -> bool:
    """A new version's sensitivity: as asked, else inherited from the list, else by its types
    (hash sets are sensitive; opt-out URLs, hosts and domains are not). Never sensitive to
    public: that would store a sensitive list's entries in clear."""
    was_sensitive = any(v.sensitive for v in versions)
    if wanted is False and was_sensitive:
        raise UserInputError(f"list {name!r} is sensitive; a new version of it cannot be public "
                             "(--public)", hint="a list keeps its sensitivity; import public "
                                                "entries under another name")
    if wanted is not None:
        return wanted
    if was_sensitive:
        return True
    return not public_by_default(set(parsed.keys) | set(parsed.deleted))
