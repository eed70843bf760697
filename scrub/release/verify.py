"""``scrub release verify`` as library calls: a variant, or a whole release folder, checked
against its signature and listing (:mod:`scrub.release.manifest`) and, given the store and the
ledger, matched again against what it should have removed; the verdict, for the command to
render."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrub.errors import ExternalSourceError, ReleaseOutdated, UserInputError
from scrub.storage import ObjectPath, location

if TYPE_CHECKING:
    from scrub.engine.plan import MatchPlan


@dataclass
class Rematch:
    """What a release's rows match now: ``matches``, rows matching the lists and requests it
    applied (None: not checked); ``newer``, verified requests of the ledger it predates, and
    ``newer_matches``, its rows that they name."""

    matches: int | None = None
    newer: int = 0
    newer_matches: int = 0


@dataclass
class VariantVerdict:
    """One variant verified: its signed manifest and what its rows match now."""

    manifest: dict[str, Any]
    found: Rematch

    def outdated(self) -> ReleaseOutdated | None:
        """The error to raise once the verdict is shown, when verified requests are newer."""
        if not self.found.newer:
            return None
        return outdated(f"release {self.manifest['release_id']}", self.found.newer,
                        self.found.newer_matches)


@dataclass
class FolderVerdict:
    """A release folder verified: per variant its result (``ok``, ``matches``,
    ``newer_requests``, ``newer_request_matches``, ``shards``, ``problem``), the folder's own
    problems, every problem found (variants' first), the signed manifests, the title, the
    release id (None unless one), how many variants, whether rows were matched again, and the
    most newer requests (and their rows) of any variant."""

    variants: dict[str, dict[str, object]]
    problems: list[str]
    found: list[str]
    signed: list[dict[str, Any]]
    title: str
    release_id: str | None
    checks: int
    rematched: bool
    newer: int = 0
    newer_rows: int = 0

    def failure(self) -> ExternalSourceError | None:
        """The error naming the first problem, if any (after the per-variant verdicts)."""
        if not self.found:
            return None
        return ExternalSourceError(f"{self.title} fails verification: {self.found[0]}"
                                   + (f" (and {len(self.found) - 1} more)"
                                      if len(self.found) > 1 else ""))

    def outdated(self) -> ReleaseOutdated | None:
        return outdated(self.title, self.newer, self.newer_rows) if self.newer else None


def outdated(title: str, newer: int, rows: int) -> ReleaseOutdated:
    return ReleaseOutdated(
        f"{title} verifies, but predates {newer} verified request(s) in the ledger "
        f"({rows:,} of its row(s) match them)",
        hint="not a fault of the release: build a new one to apply them (scrub release build "
             "... --from OUT)")


def verify_path(release: Path | ObjectPath | str, pubkey: Path, *, store: Path | None = None,
                key_file: Path | None = None, db_url: str | None = None,
                progress: bool = True) -> VariantVerdict | FolderVerdict:
    """Verify what ``release`` names: a variant (its folder, companion or manifest), else the
    release folder ``scrub release build`` wrote (every variant, and nothing else there). A
    variant whose rows match what it applied is an ExternalSourceError here; a folder's
    problems are in its verdict."""
    from scrub.release.manifest import verify_release
    from scrub.release.signed import locate_variant

    release = location(release)
    if locate_variant(release) is None and release.is_dir():  # what release build wrote
        return verify_folder(release, pubkey, store, key_file, db_url, progress=progress)
    manifest = verify_release(release, pubkey, progress=progress)
    found = Rematch()
    if store is not None or db_url is not None:
        found = rematch(release, manifest, store, key_file, db_url, progress=progress)
        if found.matches:
            raise ExternalSourceError(f"release {manifest['release_id']}: {found.matches:,} "
                                      "row(s) match the lists or requests it should have "
                                      "removed")
    return VariantVerdict(manifest, found)


def verify_folder(root: Path | ObjectPath, pubkey: Path, store: Path | None, key_file: Path | None,
                  db_url: str | None, *, progress: bool = True) -> FolderVerdict:
    """Every variant of a release folder checked, and the folder itself."""
    from scrub.release.manifest import verify_release_folder

    checks, problems = verify_release_folder(root, pubkey, progress=progress)
    if not checks:
        raise UserInputError(f"{root}: not a release: no manifest.json in {root.name}.scrub/, "
                             "here, nor in its folders",
                             hint="give a variant folder, or the OUT folder of release build")
    variants: dict[str, dict[str, object]] = {}
    newer = newer_rows = 0
    for check in checks:
        found = Rematch()
        if check.manifest is not None and not check.problems and (store or db_url):
            found = rematch(check.folders.rows, check.manifest, store, key_file, db_url,
                            progress=progress)
            if found.matches:
                check.problems.append(f"{check.folders.rows}: {found.matches:,} row(s) match "
                                      "the lists or requests it should have removed")
        newer, newer_rows = max(newer, found.newer), max(newer_rows, found.newer_matches)
        variants[check.folders.name] = {
            "ok": not check.problems, "matches": found.matches,
            "newer_requests": found.newer, "newer_request_matches": found.newer_matches,
            "shards": len(check.manifest["shards"]) if check.manifest else None,
            "problem": check.problems[0] if check.problems else None}
    every = [problem for check in checks for problem in check.problems] + problems
    signed = [check.manifest for check in checks if check.manifest is not None]
    ids = sorted({str(m["release_id"]) for m in signed})
    title = f"release {ids[0]}" if len(ids) == 1 else f"release folder {root}"
    return FolderVerdict(variants, problems, every, signed, title,
                         ids[0] if len(ids) == 1 else None, len(checks),
                         bool(store or db_url), newer, newer_rows)


def rematch(folder: Path | ObjectPath, manifest: dict[str, Any], store: Path | None,
            key_file: Path | None, db_url: str | None, *, progress: bool = True) -> Rematch:
    """Match the release's rows against the store's lists its manifest names and the ledger's
    verified requests, in one pass: those its signed manifest says it applied (a match is a
    fault of the release) apart from those it predates (a match is a reason to rebuild)."""
    import numpy as np

    from scrub.dataset import detect_roles, open_parquet
    from scrub.engine.filtering import iter_batches
    from scrub.engine.kernel import decide
    from scrub.progress import Progress
    from scrub.release.signed import locate_variant

    plan, newer = _rematch_plan(manifest, store, key_file, db_url)
    later = frozenset(s.id for s in plan.sources
                      if s.kind == "request" and dict(s.details).get("request") in newer)
    groups = [frozenset(s.id for s in plan.sources) - later, later]
    variant = locate_variant(folder)
    rows = variant.rows if variant is not None else folder  # the variant folder: its shards
    matches = newer_matches = 0
    meter = Progress(f"match {manifest.get('variant', folder.name)}", len(manifest["shards"]),
                     sum(int(s["rows"]) for s in manifest["shards"]), enabled=progress)
    for shard in manifest["shards"]:
        parquet = open_parquet(rows / shard["name"])
        roles = detect_roles(parquet.schema_arrow)
        for batch in iter_batches(parquet):
            decisions = decide(plan, batch, roles, groups=groups)
            matches += int(np.count_nonzero(decisions.group_reasons[0]))
            newer_matches += int(np.count_nonzero(decisions.group_reasons[1]))
        meter.advance(parquet.metadata.num_rows)
    meter.finish()
    return Rematch(matches=matches, newer=len(newer), newer_matches=newer_matches)


def _rematch_plan(manifest: dict[str, Any], store: Path | None, key_file: Path | None,
                  db_url: str | None) -> tuple[MatchPlan, set[int]]:
    """The plan of the lists the manifest names (with ``store``) and of the ledger's verified
    requests (with ``db_url``, when the release applied requests); the ids of those it did
    not apply."""
    from scrub.crypto import load_key, resolve_key_file
    from scrub.engine.plan import add_ledger_rules, plan_for_apply
    from scrub.lists.store import ListStore

    key_path = resolve_key_file(key_file)
    key = load_key(key_path) if key_path else None
    refs = [entry["label"] for entry in manifest.get("lists", [])] if store else []
    plan = plan_for_apply([], refs, store=ListStore(store) if store else None, key=key)
    newer: set[int] = set()
    if db_url is not None and manifest.get("ledger"):
        from scrub.ledger.db import make_engine
        from scrub.ledger.service import IdentitySeal, Ledger

        book = Ledger(make_engine(db_url), seal=IdentitySeal(key) if key else None)
        items = list(book.enforced_items())
        applied = {int(r) for r in manifest["ledger"].get("requests", [])}
        newer = {int(item[0]) for item in items} - applied
        add_ledger_rules(plan, items, watermark=book.watermark())
    return plan, newer
