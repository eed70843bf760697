"""``scrub release report``: each variant's audit rendered again from the signed artifacts
alone, so that an auditor holding the public key can regenerate the report and compare it
with the published one. Every artifact read is checked first: the manifest's signature and
signer, then the sha256 the manifest lists for the audit files; a missing or altered one is an
ExternalSourceError (exit 3) naming it, and nothing is written. A release built before the
audit's current format renders with what it has, the rest said to be missing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrub.atomic import atomic_write_bytes
from scrub.crypto import load_public_key
from scrub.errors import ExternalSourceError, UserInputError
from scrub.ledger.letter import printable
from scrub.release.audit import from_signed
from scrub.release.audit_html import render_html
from scrub.release.signed import (
    AUDIT_HTML,
    AUDIT_JSON,
    Location,
    VariantFolders,
    find_variants,
    listed_files,
    read_variant,
)


@dataclass
class RenderedVariant:
    """One variant's audit rendered again: its name, the files written, and whether each
    equals the published one byte for byte."""

    variant: str
    release_id: str
    files: dict[str, Path]
    same: dict[str, bool]


def audit_json_bytes(audit: dict[str, Any]) -> bytes:
    """An audit as the build writes it (:func:`scrub.atomic.atomic_write_json`'s form)."""
    return (json.dumps(audit, indent=2, sort_keys=True) + "\n").encode()


def signed_artifact(folders: VariantFolders, manifest: dict, name: str) -> bytes:
    """The bytes of the variant's file ``name`` once its sha256 is the one the signed manifest
    lists (ExternalSourceError naming the file otherwise)."""
    listing = listed_files(manifest, folders.manifest)
    digest = listing.meta.get(name) if not folders.inline else listing.rows.get(name)
    path = folders.meta / name
    if digest is None:
        raise ExternalSourceError(f"{path}: not listed in the signed manifest "
                                  f"{folders.manifest}")
    body = _regular_file_bytes(path)
    if hashlib.sha256(body).hexdigest() != digest:
        raise ExternalSourceError(f"{path}: sha256 differs from the signed manifest's "
                                  "(the file was altered or replaced)",
                                  hint="regenerate nothing from it: fetch the release again")
    return body


def _regular_file_bytes(path: Location) -> bytes:
    """The bytes of ``path``, a regular file of the release itself: a symbolic link (to a
    file elsewhere, a FIFO, /dev/zero) is refused, never followed, so a report cannot be made
    to read forever or from outside the release (ExternalSourceError naming it). An object
    in a bucket (no links there) is read as it is."""
    if not isinstance(path, Path):
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ExternalSourceError(f"{path}: missing (the signed manifest lists it)") from None
        except OSError as exc:
            raise ExternalSourceError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ExternalSourceError(f"{path}: missing (the signed manifest lists it)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ExternalSourceError(f"{path}: a symbolic link, not a regular file of the "
                                      "release") from None
        raise ExternalSourceError(f"{path}: cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ExternalSourceError(f"{path}: not a regular file")
        try:
            return handle.read()
        except OSError as exc:
            raise ExternalSourceError(f"{path}: cannot read ({exc.strerror})") from None


def render_release(release: Location, pubkey: Path, output: Path) -> list[RenderedVariant]:
    """Render ``audit.json`` and ``audit.html`` of every variant of ``release`` (the folder
    ``scrub release build`` wrote, or one variant) into ``output/VARIANT/``. Every variant is
    checked before anything is written."""
    key = load_public_key(pubkey)
    variants = find_variants(release)
    if not variants:
        raise UserInputError(f"{release}: not a release: no manifest.json in a variant's "
                             "companion folder", hint="give the OUT folder of release build, "
                             "or one variant folder")
    rendered = []
    for folders in variants:
        manifest = read_variant(folders, key)
        raw = signed_artifact(folders, manifest, AUDIT_JSON)
        try:
            published = json.loads(raw)
        except ValueError:
            raise ExternalSourceError(f"{folders.meta / AUDIT_JSON}: signed, but not "
                                      "JSON") from None
        if not isinstance(published, dict):
            raise ExternalSourceError(f"{folders.meta / AUDIT_JSON}: signed, but not an audit")
        html = signed_artifact(folders, manifest, AUDIT_HTML)
        audit = from_signed(manifest, published)
        body = audit_json_bytes(audit)
        page = render_html(audit).encode()
        rendered.append((folders.name, printable(manifest.get("release_id")), body, page,
                         {AUDIT_JSON: body == raw, AUDIT_HTML: page == html}))
    out = []
    for name, release_id, body, page, same in rendered:
        files = {AUDIT_JSON: output / name / AUDIT_JSON, AUDIT_HTML: output / name / AUDIT_HTML}
        files[AUDIT_JSON].parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(files[AUDIT_JSON], body)
        atomic_write_bytes(files[AUDIT_HTML], page)
        out.append(RenderedVariant(name, release_id, files, same))
    return out


__all__ = ["RenderedVariant", "audit_json_bytes", "render_release", "signed_artifact"]
