"""A release's signed manifest as a reader takes it: where a variant's files lie, the Ed25519
signature over the manifest's exact bytes, the signer it names, and the complete listing of the
variant's files.

Format ``scrub-release/3``: the variant folder ``V/`` holds its shards only, its companion
``V.scrub/`` the manifest, signature, audit, removal list and ``img_emb/``; the manifest maps
every file of both (``files``, ``companion_files``: relative POSIX path -> sha256) and names the
release's variants (``release_variants``). Formats 1 and 2 (everything in ``V/``) are still read
for ``scrub release verify``; their layouts: docs/design/output-layout.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from scrub.crypto import public_key_bytes, public_key_fingerprint
from scrub.errors import ExternalSourceError, UserInputError
from scrub.layout import companion, companion_of
from scrub.storage import ObjectPath

#: A local folder or file, or a prefix or object in object storage.
Location = Path | ObjectPath

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
REMOVALS = "removals.parquet"
AUDIT_JSON = "audit.json"
AUDIT_HTML = "audit.html"
#: The manifest format this version writes, and those it reads.
FORMAT = "scrub-release/3"
FORMATS = ("scrub-release/1", "scrub-release/2", FORMAT)
#: Formats whose manifest and other files lie in the variant folder, beside the shards.
INLINE_FORMATS = ("scrub-release/1", "scrub-release/2")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VariantFolders:
    """Where a variant lies: ``rows``, its folder of shards, and ``meta``, the folder of its
    manifest (its companion ``rows.scrub`` from format 3 on, ``rows`` itself before)."""

    rows: Location
    meta: Location

    @property
    def inline(self) -> bool:
        return self.rows == self.meta

    @property
    def manifest(self) -> Location:
        return self.meta / MANIFEST

    @property
    def name(self) -> str:
        return self.rows.name


def locate_variant(path: Location | str) -> VariantFolders | None:
    """The variant ``path`` names: its variant folder, its companion folder or its
    ``manifest.json``, in either layout (locally or in object storage); None when ``path`` is
    none of these."""
    path = _location(path)
    if path.name == MANIFEST and path.is_file():
        path = path.parent
    if path.name in ("", ".."):  # "." or "..": the folder's own name tells its companion
        path = path.resolve()
    if not path.is_dir():
        return None
    if path.name and (companion(path) / MANIFEST).is_file():
        return VariantFolders(path, companion(path))
    rows = companion_of(path)
    if rows is not None and (path / MANIFEST).is_file():
        return VariantFolders(rows, path)
    if (path / MANIFEST).is_file():
        return VariantFolders(path, path)
    return None


def find_variants(path: Location | str) -> list[VariantFolders]:
    """The variants at ``path``: the one it names (see :func:`locate_variant`), or every
    variant of the release folder it is (what ``scrub release build`` wrote; a companion
    folder whose variant folder is gone counts, so that its verification says so). Empty
    when there is none."""
    one = locate_variant(path)
    if one is not None:
        return [one]
    path = _location(path)
    if not path.is_dir():
        return []
    found: dict[str, VariantFolders] = {}
    for child in children(path):
        if not child.is_dir() or child.is_symlink():
            continue
        rows = companion_of(child)
        if rows is not None:
            if (child / MANIFEST).is_file():
                found.setdefault(rows.name, VariantFolders(rows, child))
        elif (variant := locate_variant(child)) is not None:
            found[child.name] = variant
    return [found[name] for name in sorted(found)]


def _location(path: Location | str) -> Location:
    """``path`` as a location: an object storage URI stays one (``Path`` would fold it)."""
    from scrub.storage import location

    return location(path)


def children(folder: Location) -> list[Location]:
    """What lies directly in ``folder``, by name: its files and folders; in object storage the
    objects and the prefixes some object lies under (a store may list a prefix whose objects
    are all deleted: that is nothing)."""
    found: list[Location]
    if isinstance(folder, ObjectPath):
        start = len(folder.key) + 1 if folder.key else 0
        found = [folder / name for name in {path.key[start:].split("/", 1)[0]
                                            for path, _ in folder.walk_files()}]
    else:
        found = list(folder.iterdir())
    return sorted(found, key=lambda child: child.name)


def signer_fingerprint(key: Ed25519PublicKey) -> str:
    return public_key_fingerprint(public_key_bytes(key))


def read_signed_manifest(path: Location, key: Ed25519PublicKey) -> dict:
    """The manifest of the variant ``path`` names (see :func:`locate_variant`) once its
    signature verifies with ``key``, it names that key as its signer and its format matches
    where it lies. No manifest: UserInputError (not a release); anything else wrong:
    ExternalSourceError (exit 3), naming the file."""
    folders = locate_variant(path)
    if folders is None:
        raise UserInputError(f"{path}: no {MANIFEST} here nor in {companion(path).name}/ "
                             "(not a release variant)")
    return read_variant(folders, key)


def read_variant(folders: VariantFolders, key: Ed25519PublicKey) -> dict:
    """The signed manifest of the variant in ``folders`` (see :func:`read_signed_manifest`)."""
    manifest_path, signature_path = folders.manifest, folders.meta / SIGNATURE
    if not signature_path.is_file():
        raise ExternalSourceError(f"{signature_path}: missing (the manifest is not signed)")
    body = manifest_path.read_bytes()
    try:
        signature = base64.b64decode(signature_path.read_bytes().strip(), validate=True)
        key.verify(signature, body)
    except Exception:  # noqa: BLE001 - bad base64 or bad signature: the same verdict
        raise ExternalSourceError(f"{manifest_path}: the signature does not verify",
                                  hint="the manifest or its signature was altered, or signed by "
                                  "another key") from None
    try:
        manifest = json.loads(body)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise ExternalSourceError(f"{manifest_path}: signed, but not a manifest of a format "
                                  f"this scrub reads ({', '.join(FORMATS)})")
    fingerprint = signer_fingerprint(key)
    if manifest.get("signed_by") != fingerprint:
        raise ExternalSourceError(f"{manifest_path}: names signer "
                                  f"{str(manifest.get('signed_by'))[:80]!r}, but verifies with "
                                  f"the key given ({fingerprint})")
    if (manifest["format"] in INLINE_FORMATS) != folders.inline:
        where = "a variant folder, beside the shards" if folders.inline else "a companion folder"
        raise ExternalSourceError(f"{manifest_path}: a {manifest['format']} manifest cannot lie "
                                  f"in {where}",
                                  hint="publish the release as scrub release build laid it out")
    return manifest


@dataclass(frozen=True)
class Listing:
    """Every file of a variant that its manifest lists, relative POSIX path -> sha256: ``rows``
    in the variant folder, ``meta`` in its companion folder (empty for the inline formats,
    whose ``rows`` holds everything)."""

    rows: dict[str, str]
    meta: dict[str, str]


def listed_files(manifest: dict, where: Location) -> Listing:
    """Every file of the variant that ``manifest`` lists.

    Names must be plain relative paths inside their folder. From format 3 the variant folder
    lists exactly the shards (flat names, with the digests their entries give), and the
    companion folder the embeddings and the removal list with theirs; in format 2 the shards,
    embeddings and removal list must appear in ``files`` with their digests.
    ExternalSourceError (exit 3) naming ``where`` otherwise."""
    meta: dict[str, str] = {}
    try:
        shards = {s["name"]: s["sha256"] for s in manifest["shards"]}
        named = {e["name"]: e["sha256"] for e in manifest.get("embeddings", [])}
        if manifest["format"] == FORMAT:
            files, meta = dict(manifest["files"]), dict(manifest["companion_files"])
            named[manifest["removals"]["file"]] = manifest["removals"]["sha256"]
            listed = meta
        elif manifest["format"] == "scrub-release/2":
            files = dict(manifest["files"])
            named.update(shards)
            named[manifest["removals"]["file"]] = manifest["removals"]["sha256"]
            listed = files
        else:
            files = dict(shards)
            files.update({f"_state/{Path(s['name']).stem}.json": s["state"]
                          for s in manifest["shards"] if "state" in s})
            files.update(named)
            files.update(manifest.get("files", {}))
            files[REMOVALS] = manifest["removals"]["sha256"]
            named, listed = {}, files
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ExternalSourceError(f"{where}: signed, but its file entries are malformed") \
            from None
    inline = manifest["format"] in INLINE_FORMATS
    for name, digest in (*files.items(), *meta.items()):
        if (not isinstance(name, str) or "\\" in name or "\0" in name
                or any(part in ("", ".", "..") for part in name.split("/"))
                or (name in (MANIFEST, SIGNATURE) and (inline or name in meta))
                or not (isinstance(digest, str) and _SHA256.fullmatch(digest))):
            raise ExternalSourceError(f"{where}: lists {str(name)[:80]!r}, which is not a plain "
                                      "relative file name with a sha256")
    if not inline and (files != shards or any("/" in name for name in files)):
        raise ExternalSourceError(f"{where}: the variant folder's file list is not exactly its "
                                  "shards, each a file directly in it")
    for name, digest in named.items():
        if listed.get(name) != digest:
            raise ExternalSourceError(f"{where}: {name!r} is missing from the manifest's file "
                                      "list or listed there with another sha256")
    return Listing(files, meta)


def release_secret(private: Ed25519PrivateKey) -> bytes:
    """The release's secret, derived from the signing key: it keys the removal list's HMAC key,
    the probe sets and the sealed shard states, so that nobody without the key can guess or
    test them."""
    return hashlib.sha256(b"scrub-release-secret" + private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())).digest()
