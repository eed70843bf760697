"""A release's signed manifest as a reader takes it: the Ed25519 signature over its exact bytes,
the signer it names, and the complete listing of the variant's files.

Format ``scrub-release/2`` lists every file of a variant in ``files`` (relative POSIX path ->
sha256), ``manifest.json`` and ``manifest.sig`` aside: a file it does not list is not part of the
release. ``scrub-release/1`` listed the shards, embeddings, removal list and ``_state/`` files in
their own entries; it is still read for ``scrub release verify``.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scrub.crypto import public_key_bytes, public_key_fingerprint
from scrub.errors import ExternalSourceError, UserInputError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
REMOVALS = "removals.parquet"
#: The manifest format this version writes, and those it reads.
FORMAT = "scrub-release/2"
FORMATS = ("scrub-release/1", FORMAT)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def signer_fingerprint(key: Ed25519PublicKey) -> str:
    return public_key_fingerprint(public_key_bytes(key))


def read_signed_manifest(folder: Path, key: Ed25519PublicKey) -> dict:
    """The manifest of the variant in ``folder`` once its signature verifies with ``key`` and it
    names that key as its signer. No manifest: UserInputError (not a release); anything else
    wrong: ExternalSourceError (exit 3), naming the file."""
    manifest_path, signature_path = folder / MANIFEST, folder / SIGNATURE
    if not manifest_path.is_file():
        raise UserInputError(f"{folder}: no {MANIFEST} (not a release folder)")
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
    return manifest


def listed_files(manifest: dict, where: Path) -> dict[str, str]:
    """Every file of the variant that ``manifest`` lists: relative POSIX path -> sha256.

    Names must be plain relative paths inside the folder; in format 2 the shards, embeddings
    and removal list must appear in ``files`` with the digests their own entries give.
    ExternalSourceError (exit 3) naming ``where`` otherwise."""
    try:
        if manifest["format"] == FORMAT:
            files = dict(manifest["files"])
            named = {s["name"]: s["sha256"] for s in manifest["shards"]}
            named.update({e["name"]: e["sha256"] for e in manifest["embeddings"]})
            named[manifest["removals"]["file"]] = manifest["removals"]["sha256"]
            for name, digest in named.items():
                if files.get(name) != digest:
                    raise ExternalSourceError(f"{where}: {name!r} is missing from the manifest's "
                                              "file list or listed there with another sha256")
        else:
            files = {s["name"]: s["sha256"] for s in manifest["shards"]}
            files.update({f"_state/{Path(s['name']).stem}.json": s["state"]
                          for s in manifest["shards"] if "state" in s})
            files.update({e["name"]: e["sha256"] for e in manifest.get("embeddings", [])})
            files.update(manifest.get("files", {}))
            files[REMOVALS] = manifest["removals"]["sha256"]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ExternalSourceError(f"{where}: signed, but its file entries are malformed") \
            from None
    for name, digest in files.items():
        if (not isinstance(name, str) or "\\" in name or "\0" in name
                or any(part in ("", ".", "..") for part in name.split("/"))
                or name in (MANIFEST, SIGNATURE)
                or not (isinstance(digest, str) and _SHA256.fullmatch(digest))):
            raise ExternalSourceError(f"{where}: lists {str(name)[:80]!r}, which is not a plain "
                                      "relative file name with a sha256")
    return files
