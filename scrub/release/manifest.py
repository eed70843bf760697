"""What a release publishes beside its shards, in each variant's companion folder ``V.scrub/``:
the signed manifest, the audit report (JSON and self-contained HTML) and the removal list; and how
a variant, or a whole release folder, is verified.

The manifest is canonical JSON (sorted keys, two-space indent); ``manifest.sig`` holds the
base64 Ed25519 signature of its exact bytes. It lists every file of the variant folder and of
its companion with its sha256 (see :mod:`scrub.release.signed`), and for each shard only a keyed
tag of its sealed build state (:mod:`scrub.release.state`, kept outside the variant). Sensitive
sources (partner lists, ledger requests) appear in reports as counts only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from scrub import __version__
from scrub.atomic import atomic_path, atomic_write_bytes, atomic_write_json, file_sha256
from scrub.crypto import load_public_key, public_key_bytes, public_key_fingerprint
from scrub.errors import ExternalSourceError, UserInputError
from scrub.layout import REMOVALS_KEY, companion
from scrub.progress import Progress
from scrub.release.audit import variant_audit
from scrub.release.audit_html import render_html
from scrub.release.contents import check_files, parquet_file, unlisted
from scrub.release.plan import ReleasePlan
from scrub.release.probe import HOSTS, INPUTS, PROBE_DIR, TAILS
from scrub.release.reuse import Reuse, carried_removals
from scrub.release.signed import (
    AUDIT_HTML,
    AUDIT_JSON,
    FORMAT,
    MANIFEST,
    REMOVALS,
    SIGNATURE,
    Location,
    VariantFolders,
    children,
    find_variants,
    listed_files,
    locate_variant,
    read_variant,
)
from scrub.release.staging import STAGING, Job, removal_parts
from scrub.release.state import STATE_DIR
from scrub.release.stats import VariantShardStats


def canonical(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class Finisher:
    """Writes each variant's removal list, audit and signed manifest into its companion folder
    where the build writes its files (the staging folder; OUT in object storage): every other
    file first, then the manifests, then the signatures."""

    def __init__(self, release: ReleasePlan, source: Location, signing_key: Ed25519PrivateKey,
                 *, dataset: str, previous: Location | None = None,
                 carry: Reuse | None = None) -> None:
        """``previous``: a release to compare each variant with in its audit; ``carry``: the
        release an incremental build extends (its removal list, under the same key, is
        carried over once it matches its signed manifest)."""
        self.release, self.source, self.key = release, source, signing_key
        self.dataset, self.previous, self.carry = dataset, previous, carry

    def __call__(self, stage: Location, job: Job,
                 stats: dict[str, list[VariantShardStats]]) -> None:
        first = next(iter(stats.values()))
        inputs = [{"name": s.shard, "sha256": s.input_sha256,
                   "size": (self.source / s.shard).stat().st_size} for s in first]
        public = public_key_bytes(self.key.public_key())
        every = sorted(v.policy.name for v in self.release.variants)
        signed: list[tuple[Location, bytes]] = []
        for variant in self.release.variants:
            name = variant.policy.name
            folder = companion(stage / name)
            removal_rows = self._removal_list(stage, name, job.removal_key)
            shards = [{"name": s.shard, "rows": s.rows_out, "sha256": s.sha256,
                       "state_tag": s.state}
                      for s in stats[name]]  # hashed by the workers as they wrote them
            embeddings = [s.embeddings for s in stats[name] if s.embeddings is not None]
            audit = variant_audit(self.release, variant, stats[name],
                                  release_id=job.release_id, created_at=job.created_at,
                                  dataset=self.dataset,
                                  signed_by=public_key_fingerprint(public),
                                  previous=self.previous,
                                  only=len(self.release.variants) == 1)
            atomic_write_json(folder / AUDIT_JSON, audit)
            atomic_write_bytes(folder / AUDIT_HTML, render_html(audit).encode())
            removals_sha256 = file_sha256(folder / REMOVALS)
            # every file of the variant's two folders: whatever else lies in them is not the
            # release's. The variant folder holds its shards only.
            files = {s["name"]: s["sha256"] for s in shards}
            others = {e["name"]: e["sha256"] for e in embeddings}
            others.update({REMOVALS: removals_sha256,
                           AUDIT_JSON: file_sha256(folder / AUDIT_JSON),
                           AUDIT_HTML: file_sha256(folder / AUDIT_HTML)})
            manifest = {
                "format": FORMAT, "scrub_version": __version__,
                "dataset": self.dataset, "release_id": job.release_id, "variant": name,
                "created_at": job.created_at,
                "policy": variant.policy.describe(),
                "lists": [entry for entry in self.release.lists
                          if any(s.digest == entry["sha256"] and s.id in variant.sources
                                 for s in self.release.plan.sources)],
                "ledger": ({"events": self.release.watermark[0],
                            "head": self.release.watermark[1],
                            "requests": self.release.requests}
                           if self.release.watermark and variant.policy.ledger else None),
                "input_shards": inputs,
                "shards": shards, "embeddings": embeddings,
                "totals": {"rows_in": audit["rows_in"], "rows_out": audit["rows_out"],
                           "removed": audit["removed"],
                           "removed_by_reason": audit["removed_by_reason"]},
                "removals": {"file": REMOVALS, "rows": removal_rows,
                             "sha256": removals_sha256,
                             "hmac": "sha256", "key": job.removal_key},
                "files": dict(sorted(files.items())),
                "companion_files": dict(sorted(others.items())),
                "release_variants": every,
                "signed_by": public_key_fingerprint(public),
            }
            signed.append((folder, canonical(manifest)))
        for folder, body in signed:  # a variant is published once its signature is written
            atomic_write_bytes(folder / MANIFEST, body)
        for folder, body in signed:
            atomic_write_bytes(folder / SIGNATURE, base64.b64encode(self.key.sign(body)) + b"\n")

    def _removal_list(self, stage: Location, name: str, key: str) -> int:
        """Every removed row's keyed hashes, all reasons together, unlabelled and shuffled (in
        an order fixed by the key, so a resumed build writes the same bytes)."""
        folder = removal_parts(stage) / name
        parts: list[Path | io.BytesIO] = (
            list(sorted(folder.glob("*.parquet"))) if isinstance(folder, Path)
            else [io.BytesIO(p.read_bytes()) for p in children(folder)
                  if p.name.endswith(".parquet")])
        if self.carry is not None:
            parts.append(io.BytesIO(carried_removals(self.carry, name)))
        table = pl.concat([pl.read_parquet(p) for p in parts]) if parts else pl.DataFrame(
            {"url": [], "md5": [], "sha256": []}, schema={c: pl.String for c in
                                                          ("url", "md5", "sha256")})
        table = table.filter(pl.any_horizontal(pl.all().is_not_null())).unique(
            maintain_order=True)
        seed = int.from_bytes(hashlib.sha256(f"{key}:{name}".encode()).digest()[:8], "big")
        order = np.random.default_rng(seed).permutation(table.height)
        shuffled = table[order].to_arrow().replace_schema_metadata({REMOVALS_KEY: key.encode()})
        target = companion(stage / name) / REMOVALS
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            pq.write_table(shuffled, tmp, compression="zstd")
        return table.height


# --------------------------------------------------------------------------- verify


def verify_release(folder: Location, pubkey: Path, *, progress: bool = False) -> dict:
    """Check that the variant ``folder`` names (its variant folder, its companion folder or its
    manifest) is exactly the signed release: the signature verifies with ``pubkey`` and the
    manifest names that key as ``signed_by``; the variant folder and its companion hold every
    file the manifest lists, each with its sha256, and nothing else (no other file, folder or
    link, at any depth); every shard reads as parquet with its row count. Errors (exit 3) name
    the first problem. Returns the manifest."""
    folders = locate_variant(folder)
    if folders is None:
        raise UserInputError(f"{folder}: no {MANIFEST} here nor in {companion(folder).name}/ "
                             "(not a release variant)")
    manifest, problems = check_variant(folders, load_public_key(pubkey), progress=progress)
    if problems:
        raise ExternalSourceError(_verdict(_title(manifest), problems))
    return manifest


@dataclass
class VariantCheck:
    """One variant of a release folder as :func:`verify_release_folder` found it: its
    manifest (None when it is not signed with the key) and its problems, first first."""

    folders: VariantFolders
    manifest: dict | None
    problems: list[str]


def verify_release_folder(root: Location, pubkey: Path, *, progress: bool = False
                          ) -> tuple[list[VariantCheck], list[str]]:
    """Check every variant of the release folder ``root`` (what ``scrub release build``
    wrote) as :func:`verify_release` does, and the folder itself: it holds the variants, their
    companion folders and the build's private state (``.scrub-state/``, ``.scrub-probe/``) and
    nothing else; every variant belongs to one release, lies in the folder its manifest names,
    and every variant the manifests name is there. Returns each variant's check and the
    problems of the folder; raises nothing for a variant that fails."""
    key = load_public_key(pubkey)
    checks = []
    for folders in find_variants(root):
        try:
            manifest, problems = check_variant(folders, key, progress=progress)
        except (ExternalSourceError, UserInputError) as exc:
            manifest, problems = None, [exc.message]
        checks.append(VariantCheck(folders, manifest, problems))
    # the private folders' problems come last: a missing or foreign variant explains them
    problems, private = [], []
    known = {c.folders.rows.name for c in checks} | {c.folders.meta.name for c in checks}
    for entry in children(root):
        if entry.name in known:
            continue
        if entry.name in (STATE_DIR, PROBE_DIR) and entry.is_dir() and not entry.is_symlink():
            # the build's private state, beside the variants and never published: only the
            # files a build writes there
            private += _private_extras(entry, checks)
            continue
        problems.append(f"{entry}: the staging folder of an unfinished build (rerun it to "
                        "finish)" if entry.name == STAGING else
                        f"{entry}: not part of the release (no variant with a signed manifest)")
    signed = [c.manifest for c in checks if c.manifest is not None]
    releases = sorted({str(m.get("release_id")) for m in signed})
    if len(releases) > 1:
        problems.append(f"{root}: holds variants of {len(releases)} releases "
                        f"({', '.join(r[:40] for r in releases[:4])})")
    named = {v for m in signed for v in (m.get("release_variants") or [])
             if isinstance(v, str)}
    for name in sorted(named - {c.folders.name for c in checks}):
        problems.append(f"{root / name}: missing (the release's manifests name variant "
                        f"{name[:80]!r})")
    return checks, problems + private


def _private_extras(folder: Location, checks: list[VariantCheck]) -> list[str]:
    """What lies in the build's private folder ``folder`` besides what ``scrub release build``
    writes there for the signed variants of ``checks`` (anything else could be any content):
    in ``.scrub-probe/`` the inputs record and each shard's probe sets (``STEM.probe``,
    ``STEM.tails``, :mod:`scrub.release.probe`), flat; in ``.scrub-state/`` a folder per
    variant holding each of its shards' sealed state (``VARIANT/STEM.state``,
    :mod:`scrub.release.state`)."""
    stems = {str(c.manifest["variant"]): {Path(str(s["name"])).stem
                                          for s in c.manifest["shards"]}
             for c in checks if c.manifest is not None}
    if folder.name == PROBE_DIR:
        expected = {INPUTS} | {f"{stem}.{kind}" for names in stems.values()
                               for stem in names for kind in (HOSTS, TAILS)}
    else:
        expected = {f"{variant}/{stem}.state" for variant, names in stems.items()
                    for stem in names}
    return unlisted(folder, expected, listed_by="what scrub release build writes there")


def check_variant(folders: VariantFolders, key: Ed25519PublicKey, *,
                  progress: bool = False) -> tuple[dict, list[str]]:
    """The signed manifest of a variant and every problem of its files (see
    :func:`verify_release`); a manifest that is not signed with ``key``, or not a manifest, is
    an error (ExternalSourceError or UserInputError). ``progress``: the files hashed so far,
    on stderr."""
    manifest = read_variant(folders, key)
    listing = listed_files(manifest, folders.manifest)
    try:
        rows = {str(s["name"]): int(s["rows"]) for s in manifest["shards"]}
        _title(manifest)
    except (KeyError, TypeError, ValueError):
        raise ExternalSourceError(f"{folders.manifest}: signed, but its shard entries are "
                                  "malformed") from None
    problems = [f"{folder}: a symbolic link (a release holds plain folders and files only)"
                for folder in dict.fromkeys((folders.rows, folders.meta)) if folder.is_symlink()]
    if manifest.get("variant") != folders.name:  # e.g. the unsafe variant renamed as the safe
        problems.append(f"{folders.rows}: the folder is named {folders.name[:80]!r}, but its "
                        f"signed manifest is of variant {str(manifest.get('variant'))[:80]!r}")
    if folders.inline:
        problems += unlisted(folders.rows, set(listing.rows) | {MANIFEST, SIGNATURE})
        located = [(folders.rows / n, n in rows, n, d) for n, d in listing.rows.items()]
    else:  # the variant folder holds exactly its shards; the companion everything else
        problems += unlisted(folders.rows, set(listing.rows))
        problems += unlisted(folders.meta, set(listing.meta) | {MANIFEST, SIGNATURE})
        located = [(folders.rows / n, True, n, d) for n, d in listing.rows.items()]
        located += [(folders.meta / n, False, n, d) for n, d in listing.meta.items()]
    meter = Progress(f"verify {folders.name}", len(rows), sum(rows.values()), enabled=progress)
    problems += check_files([(path, rows[name] if shard else None, digest)
                             for path, shard, name, digest in sorted(located)], meter.advance)
    meter.finish()
    return manifest, problems


def _title(manifest: dict) -> str:
    return f"release {manifest['release_id']} ({manifest['variant']})"


def _verdict(title: str, problems: list[str]) -> str:
    return (f"{title} fails verification: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def diff_releases(old: Location, new: Location, *, progress: bool = False) -> dict[str, Any]:
    """What changed between two releases of a dataset: rows (by sample key) removed and added
    back, and the removals per reason from their audits. ``progress``: the shards read so far,
    on stderr."""
    sides = []
    for folder in (old, new):
        folders = locate_variant(folder)
        if folders is None:
            raise UserInputError(f"{folder}: no {MANIFEST} here nor in "
                                 f"{companion(folder).name}/ (not a release variant)")
        manifest = json.loads(folders.manifest.read_text())
        audit = json.loads((folders.meta / AUDIT_JSON).read_text())
        shards = [folders.rows / s["name"] for s in manifest["shards"]]
        names = parquet_file(shards[0]).schema_arrow.names if shards else []
        column = next((c for c in ("key", "SAMPLE_ID", "uid", "url", "URL") if c in names), None)
        if column is None:
            raise UserInputError(f"{folder}: no key or URL column to match rows on")
        meter = Progress(f"read {folders.name}", len(shards),
                         sum(int(s["rows"]) for s in manifest["shards"]), enabled=progress)
        parts = []
        for path in shards:
            parts.append(_column(path, column))
            meter.advance(len(parts[-1]))
        meter.finish()
        keys = pl.concat(parts) if parts else pl.Series([], dtype=pl.String)
        sides.append((manifest, audit, keys))
    (m_old, a_old, k_old), (m_new, a_new, k_new) = sides
    reasons = sorted(set(a_old["removed_by_reason"]) | set(a_new["removed_by_reason"]))
    return {
        "old": m_old["release_id"], "new": m_new["release_id"],
        "rows_old": int(len(k_old)), "rows_new": int(len(k_new)),
        "removed": int((~k_old.is_in(k_new.implode())).sum()),
        "added": int((~k_new.is_in(k_old.implode())).sum()),
        "by_reason": {r: {"old": a_old["removed_by_reason"].get(r, 0),
                          "new": a_new["removed_by_reason"].get(r, 0)} for r in reasons},
    }


def _column(path: Location, column: str) -> pl.Series:
    """One column of a shard, as strings."""
    if isinstance(path, Path):
        return pl.read_parquet(path, columns=[column]).to_series().cast(pl.String)
    table = parquet_file(path).read(columns=[column], use_threads=False)
    return pl.Series(column, table.column(0).combine_chunks()).cast(pl.String)
