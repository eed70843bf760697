"""``scrub release build``: several policy variants of a dataset in one pass over it.

One plan holds the rules of every policy (lists, ledger requests, NSFW thresholds), each rule
under a source; a variant is the set of sources its policy uses. Every shard is read once: the
kernel runs each rule once and gives, per variant, the reason bits of its own sources
(``decide(..., groups=...)``), and each variant's writer gets the rows it keeps, in input order,
with the input schema. ``img_emb/img_emb_{i}.npy`` files are filtered with the same masks so
they stay row-aligned.

Each variant is published as two folders (:mod:`scrub.layout`): ``OUT/<name>/`` holds its shards
and nothing else, ``OUT/<name>.scrub/`` its embeddings (``img_emb/``, clip-retrieval's layout),
manifest, signature, audit and removal list. Work happens under ``OUT/.scrub-release`` (per-shard
outputs and stats, so an interrupted build resumes where it stopped and yields the same bytes);
the variants move to ``OUT`` only when every shard, manifest, audit and removal list is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import polars_hash as plh
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scrub import __version__
from scrub.atomic import atomic_path, atomic_write_json, file_sha256, link_or_copy
from scrub.dataset import (
    DIGEST_WIDTHS,
    Shard,
    detect_roles,
    discover_shards,
    keep_rows,
    open_shard,
    role_values,
)
from scrub.engine.apply import survey
from scrub.engine.attribution import AttributedRule
from scrub.engine.filtering import iter_batches, open_writer, several_reasons
from scrub.engine.kernel import decide
from scrub.engine.local import configure_worker, default_workers
from scrub.engine.plan import MatchOptions, MatchPlan, add_ledger_rules, plan_for_apply
from scrub.engine.reasons import Reason
from scrub.engine.rules import AllOf, BatchView, CaptionTermRule, ScoreRule, Source
from scrub.engine.scores import RESCORED, scored_roles, shard_scores, with_scores
from scrub.errors import (
    ExternalSourceError,
    InvalidDatasetError,
    OutputConflictError,
    StorageError,
    UserInputError,
    brief,
    from_os_error,
)
from scrub.layout import COMPANION_SUFFIX, companion
from scrub.lists.store import ListStore
from scrub.progress import Progress
from scrub.release.policy import Policy
from scrub.release.probe import (
    HOSTS,
    PROBE_DIR,
    TAILS,
    Probing,
    RuleProbe,
    fingerprints_ok,
    host_probes,
    keyed_tails,
    probe_key,
    probe_path,
    read_inputs,
    read_probes,
    rule_probes,
    ruled_out,
    tail_fingerprints,
    write_inputs,
    write_probes,
)
from scrub.release.signed import (
    FORMAT,
    MANIFEST,
    REMOVALS,
    Listing,
    listed_files,
    locate_variant,
    read_variant,
)
from scrub.release.state import STATE_DIR, read_state, state_path, write_state
from scrub.keys import digest_hex
from scrub.urls import canonicalize_urls
from scrub.workers import worker_threads

STAGING = ".scrub-release"


@dataclass
class Variant:
    policy: Policy
    sources: frozenset[int]


@dataclass
class ReleasePlan:
    plan: MatchPlan
    variants: list[Variant]
    lists: list[dict[str, str]]
    watermark: tuple[int, str] | None = None
    requests: list[int] = field(default_factory=list)


def plan_release(policies: Sequence[Policy], *, store: ListStore | None, key: bytes | None,
                 ledger: object | None = None, scores: Path | None = None,
                 options: MatchOptions | None = None) -> ReleasePlan:
    """One plan for every policy, and each policy's sources in it."""
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})[0]
        raise UserInputError(f"two policies are named {twice!r} (each names a variant)")
    refs: dict[str, set[str]] = {}
    wanted = [ref for p in policies for ref in p.lists]
    if wanted:
        store = store or ListStore()
        catalog = store.catalog()
        for policy in policies:
            for ref in policy.lists:
                chosen = ([versions[-1] for versions in catalog.values()
                           if versions[-1].kind == "block"] if ref == "*"
                          else [_resolve(store, ref, policy)])
                for meta in chosen:
                    refs.setdefault(f"{meta.name}@{meta.version}", set()).add(policy.name)
    plan = plan_for_apply([], sorted(refs), store=store, key=key, options=options)
    by_list = {s.id: s for s in plan.sources if s.kind == "hashlist"}
    label_policies: dict[int, set[str]] = {}
    for source in by_list.values():
        for ref, users in refs.items():
            if ref.split("@", 1)[0] == source.name:
                label_policies.setdefault(source.id, set()).update(users)
    release = ReleasePlan(plan=plan, variants=[], lists=[
        {"name": s.name, "label": s.label, "sha256": s.digest} for s in by_list.values()])
    request_ids: set[int] = set()
    if any(p.ledger for p in policies):
        if ledger is None:
            raise UserInputError("a policy applies ledger requests: give the ledger (--db, or "
                                 "the default $SCRUB_HOME/ledger.db)")
        before, first_rule = len(plan.sources), len(plan.rules)
        items = list(ledger.enforced_items())  # type: ignore[attr-defined]
        release.watermark = ledger.watermark()  # type: ignore[attr-defined]
        add_ledger_rules(plan, items, watermark=release.watermark, options=options)
        _label_items(plan.rules[first_rule:], items, getattr(ledger, "seal", None))
        request_ids = set(range(before, len(plan.sources)))
        release.requests = sorted({item[0] for item in items})
    if scores is not None:
        plan.scores[RESCORED] = str(Path(scores).resolve())
    score_sources: dict[tuple[str, float, bool], int] = {}
    for policy in policies:
        if policy.score == "rescored" and scores is None:
            raise UserInputError(f"{policy.path}: nsfw.score is \"rescored\": give --scores DIR "
                                 "(from `scrub nsfw rescore`)")
        for threshold in policy.thresholds:
            spec = (policy.score, threshold.above, threshold.keywords)
            if spec in score_sources:
                continue
            role = RESCORED if policy.score == "rescored" else "punsafe"
            label = f"punsafe > {threshold.above}" + (" with a flagged caption"
                                                      if threshold.keywords else "")
            source = Source(id=len(plan.sources), label=f"{label} ({policy.score})",
                            kind="policy", digest="", sensitive=False, name=label)
            plan.sources.append(source)
            rule = ScoreRule(role, threshold.above, Reason.NSFW, source)
            if threshold.keywords:
                terms = CaptionTermRule(policy.keywords, Reason.NSFW, source)
                rule = AllOf([rule, terms], Reason.NSFW, source)  # type: ignore[assignment]
            plan.rules.append(rule)
            score_sources[spec] = source.id
    for policy in policies:
        members = {sid for sid, users in label_policies.items() if policy.name in users}
        if policy.ledger:
            members |= request_ids
        members |= {score_sources[(policy.score, t.above, t.keywords)]
                    for t in policy.thresholds}
        release.variants.append(Variant(policy, frozenset(members)))
    return release


def _label_items(rules: Sequence[object], items: Sequence[tuple[int, str, str, str]],
                 seal: object | None) -> None:
    """Label each ledger rule's values "REQUEST:DIGEST" (the ledger's keyed item digest), so
    that a build counts the rows each variant removed per request item (``by_item`` in the
    shard stats; the ledger records them in its 'apply' events, never a value). The labels
    follow :func:`add_ledger_rules`, which gives each item type's rule its values in the
    items' order."""
    if seal is None:
        return
    labels: dict[str, list[str]] = {}
    for request_id, _, type_name, value in items:
        labels.setdefault(type_name, []).append(
            f"{request_id}:{seal.item_digest(type_name, value)}")  # type: ignore[attr-defined]
    for rule in rules:
        if isinstance(rule, AttributedRule):
            rule.item_keys = labels.get(rule.type_name)


def rows_per_item(stats: dict[str, list[dict[str, object]]]
                  ) -> dict[int, dict[str, dict[str, int]]]:
    """Request id -> variant -> keyed item digest -> rows the variant removed that the item
    matches, summed over the shards' stats (items that matched nothing are absent)."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    for variant, shards in stats.items():
        for shard in shards:
            for label, count in (shard.get("by_item") or {}).items():  # type: ignore[union-attr]
                request, digest = str(label).split(":", 1)
                counts = out.setdefault(int(request), {}).setdefault(variant, {})
                counts[digest] = counts.get(digest, 0) + int(count)
    return out


def _count_items(rules: Sequence[tuple[AttributedRule, frozenset[int]]], view: BatchView,
                 sources: dict[int, np.ndarray], drops: list[np.ndarray],
                 groups: list[frozenset[int]], stats: list[dict[str, object]]) -> None:
    """Add to each variant's ``by_item`` the rows of this batch it drops, per request item
    that matches them. ``rules``: each ledger rule with its sources; ``sources``: the masks of
    the sources that matched in this batch (few), so only rows a request hit are looked at."""
    if not drops:
        return
    union = np.logical_or.reduce(drops)
    for rule, members in rules:
        hit = np.zeros(len(union), dtype=bool)
        for source, mask in sources.items():
            if source in members:
                hit |= mask
        hit &= union
        if not hit.any():
            continue
        pairs = rule.item_pairs(view, np.flatnonzero(hit))
        rows, owners = pairs["row"].to_numpy(), pairs["source"]
        for v, drop in enumerate(drops):
            chosen = pairs.filter(pl.Series(drop[rows]) & owners.is_in(list(groups[v])))
            by = stats[v]["by_item"]
            for item, count in chosen.group_by("item").len().iter_rows():
                label = rule.item_keys[item]  # type: ignore[index]
                by[label] = by.get(label, 0) + count  # type: ignore[union-attr,attr-defined]


def _resolve(store: ListStore, ref: str, policy: Policy):  # type: ignore[no-untyped-def]
    try:
        return store.resolve(ref)
    except UserInputError as exc:
        raise UserInputError(f"{policy.path}: lists.names: {exc.message}", hint=exc.hint) \
            from None


# --------------------------------------------------------------------------- one shard


def embedding_file(source: Path, shard: Shard) -> Path | None:
    match = re.search(r"(\d+)$", shard.path.stem)
    if match is None:
        return None
    path = source / "img_emb" / f"img_emb_{int(match.group(1))}.npy"
    return path if path.is_file() else None


def open_embeddings(path: Path, shard: Shard, rows: int) -> np.ndarray:
    """A shard's embeddings, memory-mapped, as they may be published: a (rows, dim) float16 or
    float32 array (clip-retrieval's layout) row-aligned with the shard. Anything else is an
    InvalidDatasetError naming the file, what it holds and what is expected; pickled (object)
    arrays are never loaded."""
    expected = (f"expected a .npy array of shape ({rows}, dim), float16 or float32, "
                f"row-aligned with {shard.path.name}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise InvalidDatasetError(f"{path}: not a readable .npy array of numbers (empty, "
                                  f"truncated, not .npy, or Python objects); {expected}") \
            from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise InvalidDatasetError(f"{path}: an .npz archive, not one .npy array; {expected}")
    if array.dtype.kind != "f" or array.dtype.itemsize not in (2, 4):
        raise InvalidDatasetError(f"{path}: dtype {str(array.dtype)[:40]}; {expected}")
    if array.ndim != 2 or array.shape[1] == 0:
        raise InvalidDatasetError(f"{path}: shape {array.shape}; {expected}")
    if array.shape[0] != rows:
        raise InvalidDatasetError(f"{path} holds {array.shape[0]} embeddings but {shard.path} "
                                  f"has {rows} rows: they are not row-aligned")
    return array


def build_shard(plan: MatchPlan, groups: list[frozenset[int]], names: list[str], shard: Shard,
                stage: Path, emb: Path | None, hmac_key: str, probing: Probing,
                overrides: dict[str, str] | None) -> list[dict[str, object]]:
    """Every variant of one shard under ``stage/<variant>/``, and the shard's probe sets under
    ``stage`` (see :mod:`scrub.release.probe`); per variant its stats."""
    parquet = open_shard(shard)
    rows = parquet.metadata.num_rows
    scores = shard_scores(plan.scores, shard, rows)
    roles = scored_roles(detect_roles(parquet.schema_arrow, overrides), scores)
    missing = sorted(plan.required_roles() - set(roles.columns))
    if missing:
        raise InvalidDatasetError(f"{shard.path}: no column for role(s) {', '.join(missing)}",
                                  hint="name the column with --column ROLE=NAME")
    embeddings = open_embeddings(emb, shard, rows) if emb is not None else None
    stats = [{"shard": shard.name, "rows_in": rows, "rows_out": 0, "by_reason": {},
              "by_source": {}, "several_reasons": 0, "by_item": {}} for _ in groups]
    counted = [(r, frozenset(r.sources)) for r in plan.rules
               if isinstance(r, AttributedRule) and r.item_keys]
    labels = source_labels(plan)
    keeps: list[list[np.ndarray]] = [[] for _ in groups]
    removed: list[list[pa.Table]] = [[] for _ in groups]
    paths = [stage / name / shard.name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmps = [p.with_name(f".{p.name}.partial") for p in paths]
    sinks = [_HashingFile(tmp) for tmp in tmps]
    writers = [open_writer(sink, parquet.schema_arrow, roles) for sink in sinks]  # type: ignore
    offset = 0
    hosts: list[pl.Series] = []
    tails: list[np.ndarray] | None = (
        [] if probing.tails and roles.get("url") and fingerprints_ok() else None)
    batches = 0
    try:
        for batch in iter_batches(parquet):
            batches += 1
            table = with_scores(batch, scores, offset)
            offset += batch.num_rows
            view = BatchView(table, roles)
            decisions = decide(plan, table, roles, groups=groups, view=view)
            if view.has_hosts():  # the rules worked out the rows' hosts: record them
                hosts.append(view.distinct_hosts())
            if tails is not None:
                tails.append(tail_fingerprints(pl.Series(view.column("url"))))
            drops = [bits != 0 for bits in decisions.group_reasons]
            if counted:
                _count_items(counted, view, decisions.sources, drops, groups, stats)
            # the removal rows (keyed hashes) of every row some variant drops, computed once
            union = np.logical_or.reduce(drops) if drops else np.zeros(batch.num_rows, bool)
            hashed = (_removal_rows(keep_rows(batch, union), roles, hmac_key)
                      if union.any() else None)
            for v, bits in enumerate(decisions.group_reasons):
                drop = drops[v]
                keeps[v].append(~drop)
                writers[v].write_table(keep_rows(batch, ~drop) if drop.any() else batch)
                stat = stats[v]
                stat["rows_out"] += int((~drop).sum())  # type: ignore[operator]
                if not drop.any():
                    continue
                for reason in Reason:
                    count = int(((bits & np.uint32(reason.mask)) != 0).sum())
                    if count:
                        by = stat["by_reason"]
                        by[reason.code] = by.get(reason.code, 0) + count  # type: ignore
                stat["several_reasons"] += several_reasons(bits)  # type: ignore[operator]
                for source, mask in decisions.sources.items():
                    if source in groups[v]:
                        count = int((mask & drop).sum())
                        label = labels[source]
                        by = stat["by_source"]
                        by[label] = by.get(label, 0) + count  # type: ignore
                removed[v].append(hashed.filter(pa.array(drop[union])))  # type: ignore[union-attr]
        for writer in writers:
            writer.close()
        for stat, sink, tmp, path in zip(stats, sinks, tmps, paths):
            stat["sha256"] = sink.finish()  # hashed as written: never read back
            os.replace(tmp, path)
    except (OSError, pa.ArrowException) as exc:
        full = from_os_error(exc) if isinstance(exc, OSError) else None
        if isinstance(full, StorageError):  # the disk, not the shard: every shard would fail
            raise full from None
        raise InvalidDatasetError(f"{shard.path}: cannot process ({brief(exc)})") from exc
    finally:
        for sink, tmp in zip(sinks, tmps):
            sink.abandon()
            tmp.unlink(missing_ok=True)
    source_hash = _fsync_and_hash(shard.path, sync=False)
    tags = {}
    # A host probe set only when the plan had the hosts of every batch worked out (it has
    # rules on URLs or hosts): working them out for it alone would cost ~5% of the build.
    # Without one, a later incremental rebuild reads the shard (unless its tails rule it out).
    if hosts and len(hosts) == batches:
        found = pl.concat(hosts)
        tags[HOSTS] = write_probes(stage, shard.name, host_probes(found, probing.key),
                                   probing.key, source_hash, HOSTS)
    if tails is not None and len(tails) == batches:
        prints = np.concatenate(tails) if tails else np.zeros(0, np.uint64)
        tags[TAILS] = write_probes(stage, shard.name, keyed_tails(prints, probing.key),
                                   probing.key, source_hash, TAILS)
    for v, name in enumerate(names):
        stats[v]["input_sha256"] = source_hash
        stats[v].update(tags)
        if embeddings is not None and emb is not None:
            keep = np.concatenate(keeps[v]) if keeps[v] else np.ones(0, bool)
            target = companion(stage / name) / "img_emb" / emb.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, np.asarray(embeddings[keep]), allow_pickle=False)
                stats[v]["embeddings"] = {"name": f"img_emb/{emb.name}",
                                          "sha256": _fsync_and_hash(tmp, sync=False)}
        part = (pa.concat_tables(removed[v]) if removed[v] else _empty_removals())
        with atomic_path(stage / ".removals" / name / shard.name) as tmp:
            pq.write_table(part, tmp)
        drop = ~np.concatenate(keeps[v]) if keeps[v] else np.zeros(0, bool)
        stats[v]["state"] = write_state(stage, name, shard.name, drop, stats[v], probing.key)
    return stats


def source_labels(plan: MatchPlan) -> dict[int, str]:
    """Source id -> the label reports use (every ledger request is "ledger requests")."""
    return {s.id: "ledger requests" if s.kind == "request" else s.label for s in plan.sources}


class _HashingFile:
    """A write-only file for the parquet writer that hashes (sha256) what it writes."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "wb")  # noqa: SIM115 - closed by finish() or abandon()
        self._digest = hashlib.sha256()
        self._size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._handle.write(data)
        self._digest.update(data)
        self._size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:  # the parquet writer's close: the file stays open to be synced
        self.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def finish(self) -> str:
        """Sync and close the file; its sha256."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self.closed = True
        return self._digest.hexdigest()

    def abandon(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self.closed = True


def _fsync_and_hash(path: Path, *, sync: bool = True) -> str:
    digest = hashlib.sha256()
    with open(path, "rb+" if sync else "rb") as handle:
        if sync:
            os.fsync(handle.fileno())
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _empty_removals() -> pa.Table:
    return pa.table({"url": pa.array([], pa.string()), "md5": pa.array([], pa.string()),
                     "sha256": pa.array([], pa.string())})


def _removal_rows(dropped: pa.Table, roles, hmac_key: str) -> pa.Table:  # type: ignore
    """Keyed hashes (HMAC-SHA256) of the dropped rows' canonical URLs and content hashes."""
    columns: dict[str, pl.Series] = {}
    n = dropped.num_rows
    url = roles.get("url")
    # the columns' values whatever their Arrow type (dictionaries, views, raw digests)
    urls = (canonicalize_urls(pl.Series(role_values(dropped.column(url), "url", url))
                              .cast(pl.String)) if url
            else pl.Series([None] * n, dtype=pl.String))
    columns["url"] = urls
    for name in ("md5", "sha256"):
        column = roles.get(name)
        values = (pl.Series(digest_hex(dropped.column(column), DIGEST_WIDTHS[name]))
                  .cast(pl.String) if column else pl.Series([None] * n, dtype=pl.String))
        columns[name] = values
    frame = pl.DataFrame(columns).select(
        plh.col(name).chash.hmac_sha256(key=hmac_key).alias(name) for name in columns)
    return frame.to_arrow()


# --------------------------------------------------------------------------- the job


@dataclass
class Reuse:
    """What an incremental rebuild starts from: the previous release (``previous/<variant>``
    and ``previous/<variant>.scrub``), its manifests (their signatures verified), each one's
    files (path -> sha256, per folder), the key of its sealed shard states, and a plan of only
    the rules that are new since (list versions, requests)."""

    previous: Path
    manifests: dict[str, dict]
    delta: ReleasePlan
    files: dict[str, Listing]
    state_key: str

    @property
    def key(self) -> str:
        return str(next(iter(self.manifests.values()))["removals"]["key"])

    def checked_copy(self, variant: str, relative: str, target: Path, *,
                     in_companion: bool = False) -> None:
        """Link (or copy) the previous release's file ``variant/relative`` (in its companion
        folder ``variant.scrub/`` with ``in_companion``) to ``target`` and check the bytes
        there against the sha256 its signed manifest lists: a file changed since it was signed
        is never signed again (ExternalSourceError, exit 3)."""
        folder = self.previous / variant
        if in_companion:
            folder = companion(folder)
        source = folder / relative
        listing = self.files[variant]
        digest = (listing.meta if in_companion else listing.rows).get(relative)
        if digest is None:
            raise ExternalSourceError(f"--from {self.previous}: {folder.name}/{relative} is not "
                                      "in the previous release's signed manifest",
                                      hint="run a full build")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            link_or_copy(source, target)
            same = file_sha256(target) == digest
        except OSError as exc:
            raise ExternalSourceError(f"{source}: cannot be read ({brief(exc)})",
                                      hint="run a full build") from None
        if not same:
            target.unlink(missing_ok=True)
            raise ExternalSourceError(f"{source}: sha256 differs from the previous release's "
                                      "signed manifest (changed since it was signed)",
                                      hint="run a full build, from the input")


class _NewItems:
    """A ledger view offering only the items of requests a previous release did not apply."""

    def __init__(self, ledger: object, items: list, watermark: tuple[int, str]) -> None:
        self.items, self._watermark = items, watermark
        self.seal = getattr(ledger, "seal", None)  # labels the items (see _label_items)

    def enforced_items(self) -> list:
        return self.items

    def watermark(self) -> tuple[int, str]:
        return self._watermark


def prepare_reuse(previous: Path, source: Path, release: ReleasePlan, policies: Sequence[Policy],
                  *, store: ListStore | None, key: bytes | None, ledger: object | None,
                  scores: Path | None, secret: bytes, signer: Ed25519PublicKey,
                  verify_inputs: bool = False) -> Reuse:
    """Check that ``previous`` can be extended (same policies, same input shards, only new
    list versions and requests since) and plan the new rules; otherwise a clear error.

    Every variant's manifest must verify with ``signer`` (the public half of this build's
    signing key) and name it, else ExternalSourceError (exit 3): nothing of an unsigned or
    altered release is reused. Each file reused later is checked against the manifest's sha256
    (:meth:`Reuse.checked_copy`), each shard state against its keyed tag. An input shard counts
    as unchanged when the previous build recorded it with the same size and modification time
    (``secret`` checks that record); any other is hashed and compared with the manifest's
    sha256 (every one with ``verify_inputs``)."""
    manifests, files = {}, {}
    for policy in policies:
        folder = Path(previous) / policy.name
        folders = locate_variant(folder)
        if folders is None or folders.rows != folder:
            raise UserInputError(f"--from {previous}: no {companion(folder).name}/{MANIFEST}")
        manifest = read_variant(folders, signer)
        shown = folders.manifest.relative_to(previous)
        if manifest.get("variant") != policy.name:
            raise ExternalSourceError(f"--from {previous}: {shown} is the manifest of another "
                                      "variant")
        if manifest["format"] != FORMAT:
            raise UserInputError(f"--from {previous}: made by an older scrub "
                                 f"({manifest['format']}); run a full build")
        files[policy.name] = listed_files(manifest, folders.manifest)
        if manifest["policy"]["sha256"] != policy.sha256:
            raise UserInputError(f"--from {previous}: policy {policy.name} changed since; run a "
                                 "full build")
        manifests[policy.name] = manifest
    if len({(m["release_id"], m["removals"]["key"]) for m in manifests.values()}) > 1:
        raise ExternalSourceError(f"--from {previous}: its variants come from different "
                                  "releases", hint="run a full build")
    shards = discover_shards(source)
    current = {s.name: s.path.stat() for s in shards}
    for name, manifest in manifests.items():
        before = {s["name"]: s.get("size") for s in manifest["input_shards"]}
        if before != {n: st.st_size for n, st in current.items()}:
            raise UserInputError(f"--from {previous}: the input shards changed since "
                                 f"{name} was built; run a full build")
    _check_inputs(previous, shards, current, next(iter(manifests.values()))["input_shards"],
                  {} if verify_inputs or secret is None else read_inputs(previous,
                                                                         probe_key(secret)))
    old_lists = {(e["label"], e["sha256"]) for m in manifests.values() for e in m["lists"]}
    new_lists = {(e["label"], e["sha256"]) for e in release.lists}
    if not old_lists <= new_lists:
        gone = sorted(label for label, _ in old_lists - new_lists)
        raise UserInputError(f"--from {previous}: list version(s) {', '.join(gone)} no longer "
                             "apply; run a full build")
    old_requests = {r for m in manifests.values() for r in (m.get("ledger") or {})
                    .get("requests", [])}
    if not old_requests <= set(release.requests):
        raise UserInputError(f"--from {previous}: {len(old_requests - set(release.requests))} "
                             "request(s) applied before are no longer verified (withdrawn?); "
                             "run a full build")
    added = {label for label, _ in new_lists - old_lists}
    trimmed = [replace(p, lists=sorted(label for label in added
                                       if _uses(release, p.name, label)),
                       thresholds=[]) for p in policies]
    view = None
    if ledger is not None and any(p.ledger for p in policies):
        items = [i for i in ledger.enforced_items()  # type: ignore[attr-defined]
                 if i[0] not in old_requests]
        view = _NewItems(ledger, items, ledger.watermark())  # type: ignore[attr-defined]
    delta = plan_release(trimmed, store=store, key=key, ledger=view, scores=scores)
    for rule in delta.plan.rules:
        if isinstance(rule, AttributedRule):
            rule.prefilter = True  # the counts of reused shards come from the previous build
    reuse = Reuse(Path(previous), manifests, delta, files, probe_key(secret))
    for name in manifests:  # carried into the new removal list: fail now rather than at the end
        carried_removals(reuse, name)
    return reuse


def carried_removals(reuse: Reuse, variant: str) -> bytes:
    """The bytes of the previous release's removal list of ``variant``, once they match its
    signed manifest (ExternalSourceError otherwise)."""
    path = companion(reuse.previous / variant) / REMOVALS
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExternalSourceError(f"{path}: cannot be read ({brief(exc)})",
                                  hint="run a full build") from None
    if hashlib.sha256(data).hexdigest() != reuse.manifests[variant]["removals"]["sha256"]:
        raise ExternalSourceError(f"{path}: sha256 differs from the previous release's signed "
                                  "manifest (changed since it was signed)",
                                  hint="run a full build, from the input")
    return data


def _check_inputs(previous: Path, shards: list[Shard], current: dict[str, os.stat_result],
                  listed: list[dict], record: dict[str, tuple[int, int, str]]) -> None:
    """Every input shard is the one the previous release read: recorded with its size and
    modification time, or else hashed (on threads) to its manifest's sha256."""
    hashes = {str(s["name"]): s.get("sha256") for s in listed}
    unsure = [s for s in shards
              if record.get(s.name) != (current[s.name].st_size, current[s.name].st_mtime_ns,
                                        hashes.get(s.name))]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        found = pool.map(lambda shard: _fsync_and_hash(shard.path, sync=False), unsure)
        for shard, digest in zip(unsure, found):
            if digest != hashes.get(shard.name):
                raise UserInputError(f"--from {previous}: input shard {shard.path} changed "
                                     "since the previous release (its sha256 differs); run a "
                                     "full build")


def _uses(release: ReleasePlan, policy: str, label: str) -> bool:
    variant = next(v for v in release.variants if v.policy.name == policy)
    return any(s.label == label and s.id in variant.sources for s in release.plan.sources)


def rebuild_shard(plan: MatchPlan, groups: list[frozenset[int]], reuse: Reuse,
                  names: list[str], shard: Shard, stage: Path, emb: Path | None, hmac_key: str,
                  probing: Probing, overrides: dict[str, str] | None) -> list[dict[str, object]]:
    """Reuse the previous release's files of this shard when the new rules remove nothing
    more from it (reading only the columns they need); else build it again in full."""
    changed, entries, olds = shard_changed(reuse, names, shard, overrides)
    if changed:
        return build_shard(plan, groups, names, shard, stage, emb, hmac_key, probing,
                           overrides)
    return reuse_shard(reuse, names, shard, stage, emb, entries, olds)


def shard_changed(reuse: Reuse, names: list[str], shard: Shard,
                  overrides: dict[str, str] | None
                  ) -> tuple[bool, list[dict], list[tuple[np.ndarray, dict]]]:
    """Whether the new rules remove a row the previous release kept, in some variant (reading
    only the columns they need, and stopping at the first such row); with the previous states.
    """
    entries, olds = previous_states(reuse, names, shard)
    delta, delta_groups = reuse.delta.plan, [v.sources for v in reuse.delta.variants]
    if not delta.rules:
        return False, entries, olds
    parquet = open_shard(shard)
    scores = shard_scores(delta.scores, shard, parquet.metadata.num_rows)
    roles = scored_roles(detect_roles(parquet.schema_arrow, overrides), scores)
    columns = sorted({roles.get(r) for r in delta.required_roles()} - {None}
                     - {roles.get(r) for r in scores})
    offset = 0
    for index in range(parquet.metadata.num_row_groups):
        batch = parquet.read_row_group(index, columns=columns, use_threads=False)
        view = with_scores(batch, scores, offset)
        decisions = decide(delta, view, roles, groups=delta_groups)
        for (old, _), bits in zip(olds, decisions.group_reasons):
            if ((bits != 0) & ~old[offset:offset + batch.num_rows]).any():
                return True, entries, olds
        offset += batch.num_rows
    return False, entries, olds


def previous_states(reuse: Reuse, names: list[str],
                    shard: Shard) -> tuple[list[dict], list[tuple[np.ndarray, dict]]]:
    """The previous release's manifest entry and state (drop mask, stats) of ``shard`` in
    each variant."""
    entries = [{s["name"]: s for s in reuse.manifests[n]["shards"]}[shard.name] for n in names]
    olds = [read_state(reuse.previous, n, shard.name, e.get("state_tag"), reuse.state_key)
            for n, e in zip(names, entries)]
    return entries, olds


def reuse_shard(reuse: Reuse, names: list[str], shard: Shard, stage: Path, emb: Path | None,
                entries: list[dict], olds: list[tuple[np.ndarray, dict]]
                ) -> list[dict[str, object]]:
    """Link the previous release's files of ``shard`` (every variant's shard and embeddings,
    each checked against its signed manifest; its sealed state, checked already; its probe
    sets) into ``stage``; per variant its stats, as before."""
    stats = []
    for name, entry, (_, stat) in zip(names, entries, olds):
        reuse.checked_copy(name, shard.name, stage / name / shard.name)
        if emb is not None:
            reuse.checked_copy(name, f"img_emb/{emb.name}",
                               companion(stage / name) / "img_emb" / emb.name, in_companion=True)
        target = state_path(stage, name, shard.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(state_path(reuse.previous, name, shard.name), target)
        stats.append({**stat, "state": entry["state_tag"], "reused": True})
    for kind in (HOSTS, TAILS):
        probes = probe_path(reuse.previous, shard.name, kind)
        if probes.is_file():
            target = probe_path(stage, shard.name, kind)
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(probes, target)
    return stats


def skippable(reuse: Reuse, names: list[str], shard: Shard, probes: list[RuleProbe] | None,
              key: str) -> tuple[list[dict], list[tuple[np.ndarray, dict]]] | None:
    """The previous states of ``shard`` when its probe sets show that no new rule can match
    it (its files are then reused without reading it); else None."""
    if probes is None:
        return None
    entries, olds = previous_states(reuse, names, shard)
    stat = olds[0][1]
    found = {kind: read_probes(reuse.previous, shard.name, key, str(stat.get("input_sha256")),
                               stat.get(kind), kind)
             if any(getattr(rule, attr) is not None for rule in probes) else None
             for kind, attr in ((HOSTS, "hosts"), (TAILS, "tails"))}
    if not ruled_out(probes, found[HOSTS], found[TAILS]):
        return None
    return entries, olds


_WORKER: dict[str, object] = {}


def _init(plan: MatchPlan, groups: list[frozenset[int]], reuse: Reuse | None = None) -> None:
    _WORKER["plan"], _WORKER["groups"], _WORKER["reuse"] = plan, groups, reuse


def _init_from(plans: multiprocessing.queues.Queue, threads: int) -> None:
    """A worker's initializer: set it up as apply's workers are, then wait for the plan (sent
    once every worker is starting)."""
    configure_worker(threads)
    _init(*plans.get())


def _task(args: tuple) -> list[dict[str, object]]:  # type: ignore[type-arg]
    if _WORKER.get("reuse") is not None:
        return rebuild_shard(_WORKER["plan"], _WORKER["groups"],  # type: ignore[arg-type]
                             _WORKER["reuse"], *args)  # type: ignore[arg-type]
    return build_shard(_WORKER["plan"], _WORKER["groups"], *args)  # type: ignore[arg-type]


@dataclass
class BuildResult:
    release_id: str
    variants: dict[str, Path]
    stats: dict[str, list[dict[str, object]]]
    job: dict[str, object]


def build(source: Path, output: Path, release: ReleasePlan, *, secret: bytes,
          release_id: str | None = None,
          workers: int | None = None, overrides: dict[str, str] | None = None,
          allow_empty: bool = False, progress: bool = True, reuse: Reuse | None = None,
          finish=None, engine: str = "local",
          address: str | None = None, published=None) -> BuildResult:  # type: ignore
    """Build every variant's shards (resuming a staged build of the same job), then call
    ``finish(stage, job, stats)`` to write manifests and reports, then publish atomically.

    ``published(result)`` runs once every variant is published and before the staging folder
    goes (the ledger update): a build killed after publishing keeps its staging folder, and a
    rerun publishes what is left and runs ``published`` again, so it must be idempotent. A
    rerun whose inputs or policies differ finishes the interrupted release that way and is
    then refused; one where only the lists or the ledger moved (the ledger update moves it)
    returns the interrupted release.

    ``secret`` (derived from the signing key) keys the removal list's HMAC key to the job: it
    cannot be guessed before publication, and a rebuild of the same job finds the same key."""
    source, output = Path(source), Path(output)
    shards = discover_shards(source)
    if output.resolve() == source.resolve() or source.resolve() in output.resolve().parents:
        raise UserInputError(f"{output}: OUTPUT must be outside the input folder")
    total = survey(shards)
    names = [v.policy.name for v in release.variants]
    identity = {
        "scrub_version": __version__, "input": str(source.resolve()),
        "input_shards": [[s.name, s.path.stat().st_size, s.path.stat().st_mtime_ns]
                         for s in shards],
        "plan": release.plan.fingerprint(),
        "policies": {v.policy.name: v.policy.sha256 for v in release.variants},
        "columns": dict(sorted((overrides or {}).items())),
        "from": str(reuse.previous.resolve()) if reuse else None,
    }
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    # the job but its plan: equal when only the lists or the ledger moved (as the ledger
    # update of an interrupted build moves it)
    inputs = hashlib.sha256(json.dumps({k: v for k, v in identity.items() if k != "plan"},
                                       sort_keys=True).encode()).hexdigest()
    stage = output / STAGING
    job_path = stage / "job.json"
    job: dict[str, object] | None = None
    if job_path.is_file():
        job = json.loads(job_path.read_text())
        if job.get("fingerprint") != fingerprint:  # another build: start again
            if job.get("finished") and _published_by(output, job):
                finished = _publish(stage, output, job, published)
                if job.get("inputs") == inputs:
                    return finished
                raise OutputConflictError(
                    f"{output}: holds release {finished.release_id}, published by an "
                    "interrupted build that this run has now finished (ledger update "
                    "included)", hint="build into a new OUT folder (releases are never "
                    "overwritten)")
            shutil.rmtree(stage)
            job = None
    for name in names:
        for folder in (output / name, companion(output / name)):
            # a folder this job's interrupted publication moved there already is no conflict
            moved = job is not None and job.get("finished") and not (stage / folder.name).exists()
            if moved or not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
                continue
            found = locate_variant(folder)
            raise OutputConflictError(
                f"{folder}: holds a release already ("
                f"{json.loads(found.manifest.read_text()).get('release_id', '?')})"
                if found is not None else f"{folder}: exists and is not an empty folder",
                hint="build into a new OUT folder (releases are never overwritten)")
    if job is None:
        # Everything below is a function of the job (the day, the inputs, the policies, the
        # signing key), so an interrupted build and an uninterrupted one give the same bytes.
        created = dt.datetime.now(dt.timezone.utc).date()
        job = {"fingerprint": fingerprint, "inputs": inputs, "created_at": created.isoformat(),
               "release_id": release_id or f"{created:%Y%m%d}-{fingerprint[:10]}",
               "removal_key": reuse.key if reuse else hmac.new(
                   secret, f"removals:{fingerprint}".encode(), hashlib.sha256).hexdigest()}
        stage.mkdir(parents=True, exist_ok=True)
        atomic_write_json(job_path, job)
    groups = [v.sources for v in release.variants]
    done_dir = stage / ".done"
    done_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, dict[str, list[dict[str, object]]]] = {}
    pending = []
    for shard in shards:
        marker = done_dir / f"{shard.name}.json"
        if marker.is_file():
            stats[shard.name] = json.loads(marker.read_text())
        else:
            pending.append(shard)
    meter = Progress("release", len(shards), total, enabled=progress)
    meter.resume(sum(open_shard(s).metadata.num_rows for s in shards if s.name in stats),
                 shards=len(stats))
    key = probe_key(secret)
    # Tail probe sets cost ~0.4 us per row: only for policies that take ledger requests.
    probing = Probing(key, tails=any(v.policy.ledger for v in release.variants))
    # Embeddings that may not be published are refused before any work (a rebuild checks those
    # of the shards it builds again, and does not read the others).
    for shard in pending if reuse is None else []:
        emb = embedding_file(source, shard)
        if emb is not None:
            open_embeddings(emb, shard, open_shard(shard).metadata.num_rows)
    tasks_reuse = reuse
    try:
        if reuse is not None:
            probes = rule_probes(reuse.delta.plan, key)

            def settle(shard: Shard) -> list[dict[str, object]] | None:
                """The shard's stats once its previous files are reused (unread when its probe
                sets rule every new rule out, else when the new rules remove nothing more from
                it); None when it must be built again."""
                previous = skippable(reuse, names, shard, probes, key)
                if previous is None:
                    changed, *previous = shard_changed(reuse, names, shard, overrides)
                    if changed:
                        return None
                return reuse_shard(reuse, names, shard, stage, embedding_file(source, shard),
                                   *previous)

            if engine != "ray":
                # Every shard is settled here, on threads (reading only the new rules' columns,
                # and hashing the reused files, is light: workers would take longer to start);
                # only the shards with new removals are built again, below, in full.
                threads = max(1, min(workers or default_workers(), len(pending) or 1))
                rest = []
                with ThreadPoolExecutor(threads) as settlers:
                    for shard, result in zip(pending, settlers.map(settle, pending)):
                        if result is None:
                            rest.append(shard)
                        else:
                            _collect([(shard, result)], names, stats, done_dir, meter)
                pending, tasks_reuse = rest, None
            else:
                # Shards whose probe sets rule every new rule out: reused unread, here; the
                # cluster's workers match the others.
                unread, rest = [], []
                for shard in pending:
                    previous = skippable(reuse, names, shard, probes, key)
                    if previous is None:
                        rest.append(shard)
                    else:
                        unread.append((shard, reuse_shard(reuse, names, shard, stage,
                                                          embedding_file(source, shard),
                                                          *previous)))
                _collect(unread, names, stats, done_dir, meter)
                pending = rest
        args = [(names, shard, stage, embedding_file(source, shard), str(job["removal_key"]),
                 probing, overrides) for shard in pending]
        count = max(1, min(workers or (os.cpu_count() or 1), len(pending) or 1))
        if engine == "ray":
            from scrub.engine.distributed import connect, ray_map

            connect(address, num_cpus=workers)
            payload = {"plan": release.plan, "groups": groups, "reuse": tasks_reuse,
                       "args": args}
            finished = ray_map(_ray_setup, payload, len(args), workers=workers)
            _collect(((pending[i], result) for i, result in finished), names, stats, done_dir,
                     meter)
        elif count == 1:
            _init(release.plan, groups, tasks_reuse)
            _collect(zip(pending, map(_task, args)), names, stats, done_dir, meter)
        else:
            # spawn, not fork: a forked child of a process running polars/Arrow threads can
            # deadlock on their locks. The plan goes through a queue, not the initializer's
            # arguments: those travel in each child's launch data, which the parent writes
            # into a pipe that only drains once the child has imported scrub, so the children
            # would start one after the other (~0.4 s each, measured).
            context = multiprocessing.get_context("spawn")
            plans = context.Queue()
            threads = max(1, default_workers() // count)
            with worker_threads(threads), ProcessPoolExecutor(
                    count, mp_context=context, initializer=_init_from,
                    initargs=(plans, threads)) as pool:
                results = pool.map(_task, args)
                for _ in range(count):
                    plans.put((release.plan, groups, tasks_reuse))
                _collect(zip(pending, results), names, stats, done_dir, meter)
    finally:
        meter.finish()
    by_variant = {name: [stats[s.name][name] for s in shards] for name in names}  # type: ignore
    for name, rows in by_variant.items():
        if not allow_empty and total and sum(r["rows_out"] for r in rows) == 0:  # type: ignore
            raise UserInputError(f"policy {name!r} removes every row of the dataset; nothing "
                                 "was published", hint="pass --allow-empty if that is meant")
    if not job.get("finished"):  # a rerun after publication began reuses what it wrote
        write_inputs(stage, {shard.name: (size, mtime, str(stats[shard.name][names[0]]
                                                           ["input_sha256"]))
                             for shard, (_, size, mtime) in zip(shards,
                                                                identity["input_shards"])},
                     key)
        if finish is not None:
            finish(stage, job, by_variant)
        job["finished"] = True
        atomic_write_json(job_path, job)
    return _publish(stage, output, job, published, names=names, stats=by_variant)


def _published_by(output: Path, job: dict[str, object]) -> set[str]:
    """The variants in ``output`` whose manifest (in their companion folder) names ``job``'s
    release."""
    found = set()
    for manifest in output.glob(f"*{COMPANION_SUFFIX}/{MANIFEST}"):
        try:
            if json.loads(manifest.read_text()).get("release_id") == job.get("release_id"):
                found.add(manifest.parent.name[: -len(COMPANION_SUFFIX)])
        except (OSError, ValueError, AttributeError):
            continue
    return found


def _publish(stage: Path, output: Path, job: dict[str, object], published, *,  # type: ignore
             names: list[str] | None = None,
             stats: dict[str, list[dict[str, object]]] | None = None) -> BuildResult:
    """Move the staged variants into ``output`` (those an interrupted run moved stay): each
    variant folder, then its companion, so that a variant is published once its manifest is
    there. Then call ``published(result)``, then remove the staging folder: until that runs to
    its end a rerun finds the staging folder and finishes the job."""
    output.mkdir(parents=True, exist_ok=True)
    names = names if names is not None else sorted(
        {p.name[: -len(COMPANION_SUFFIX)] for p in stage.iterdir()
         if p.name.endswith(COMPANION_SUFFIX) and (p / MANIFEST).is_file()}
        | _published_by(output, job))
    variants = {}
    for name in names:
        for folder in (stage / name, companion(stage / name)):
            if folder.is_dir():
                os.replace(folder, output / folder.name)
        variants[name] = output / name
    for private in (PROBE_DIR, STATE_DIR):  # beside the variants: never published with them
        if (stage / private).is_dir():
            shutil.rmtree(output / private, ignore_errors=True)  # a leftover of this job's own
            os.replace(stage / private, output / private)
    if stats is None:  # from the completion markers, as the job recorded them
        markers = [json.loads(m.read_text()) for m in sorted((stage / ".done").glob("*.json"))]
        stats = {name: [m[name] for m in markers] for name in names}
    result = BuildResult(str(job["release_id"]), variants, stats, job)
    if published is not None:
        published(result)
    shutil.rmtree(stage)
    return result


def _ray_setup(payload: dict) -> object:  # type: ignore[type-arg]
    _init(payload["plan"], payload["groups"], payload["reuse"])
    args = payload["args"]
    return lambda index: _task(args[index])


def _collect(results, names, stats, done_dir, meter) -> None:  # type: ignore
    """Record each (shard, per-variant stats) as it finishes: a completion marker (what a
    resumed build skips), the stats, progress."""
    for shard, result in results:
        per_variant = dict(zip(names, result))
        atomic_write_json(done_dir / f"{shard.name}.json", per_variant, durable=False)
        stats[shard.name] = per_variant
        meter.advance(int(result[0]["rows_in"]) if result else 0)
