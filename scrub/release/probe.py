"""Probe sets: which hosts a shard's rows are on, so an incremental rebuild can skip shards.

A new takedown request for a URL, or a new version of an opt-out list of hosts, domains or URL
prefixes, can only remove rows on the hosts it names. A full build records, per input shard, the
canonical hosts of its rows and their registrable domains as a sorted array of 64-bit keyed
digests (the *probe set*). An incremental rebuild whose new rules are all host-bounded looks
their hosts up in each shard's probe set and reuses, without reading it, every shard that holds
none of them; the others are matched as before. A false positive (two digests agreeing on 64
bits) only costs a read.

The digests are keyed (HMAC-SHA256 with a key derived from the release's secret, itself derived
from the signing key) because the input shard holds the rows the release removed: an unkeyed set
would let anyone test whether a removed row's host was in the input. The files lie in
``OUT/.scrub-probe/``, beside the variants and outside what is published, and each carries a tag
(an HMAC over the input shard's sha256 and its bytes) stored in the variant's signed shard
state: a probe set that was changed, or that belongs to another input, is not trusted, and the
shard is read instead.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import numpy as np
import polars as pl

from scrub.atomic import atomic_path
from scrub.engine.attribution import AttributedRule
from scrub.engine.plan import MatchPlan
from scrub.engine.rules import ExactKeyRule, PrefixRule, Rule
from scrub.keys import hex_to_keys, keys_to_hex
from scrub.lists.types import text_digest_keys
from scrub.urls import registrable_domains

#: Where a release build keeps its probe sets (in OUT, beside the variants).
PROBE_DIR = ".scrub-probe"


def probe_key(secret: bytes) -> str:
    """The HMAC key (hex) of probe digests and tags, derived from the release's secret."""
    return hmac.new(secret, b"scrub.release.probe", hashlib.sha256).hexdigest()


def _keyed(digests: np.ndarray, key: str) -> np.ndarray:
    """Sorted distinct 64-bit keyed digests of (n, 32) SHA-256 digests."""
    import polars_hash as plh

    if len(digests) == 0:
        return np.zeros(0, dtype=np.uint64)
    text = pl.Series("d", keys_to_hex(digests).astype(str))
    macs = pl.DataFrame({"d": text}).select(plh.col("d").chash.hmac_sha256(key=key)).to_series()
    first, _ = hex_to_keys(macs.str.slice(0, 16).to_arrow(), 8)
    return np.unique(first.view(">u8").ravel().astype(np.uint64))


def host_probes(hosts: pl.Series, key: str) -> np.ndarray:
    """The probe set of a shard whose rows are on ``hosts`` (canonical, nulls ignored): keyed
    digests of each host and of its registrable domain."""
    hosts = hosts.drop_nulls().unique()
    values = pl.concat([hosts, registrable_domains(hosts).drop_nulls()]).unique()
    digests, valid = text_digest_keys(values)
    return _keyed(digests[valid], key)


def _rule_digests(rule: Rule) -> np.ndarray | None:
    """SHA-256 digests of the hosts or domains outside which ``rule`` matches no row, or None
    when its matches are not bounded by host (content hashes, captions, scores...)."""
    inner = rule.inner if isinstance(rule, AttributedRule) else rule
    if isinstance(rule, AttributedRule) and rule.url_hosts is not None:
        digests, valid = text_digest_keys(rule.url_hosts)  # exact URLs: rows on their hosts
        return digests[valid]
    if isinstance(inner, PrefixRule):
        digests, valid = text_digest_keys(inner.hosts)
        return digests[valid]
    if isinstance(inner, ExactKeyRule) and inner.key_type.name in ("host", "domain"):
        return inner.keys.keys  # digests of the listed hosts / registrable domains
    return None


def rule_probes(plan: MatchPlan, key: str) -> np.ndarray | None:
    """The probe digests of every rule of ``plan``; None when some rule is not host-bounded
    (then every shard must be read)."""
    found = []
    for rule in plan.rules:
        digests = _rule_digests(rule)
        if digests is None:
            return None
        found.append(digests)
    if not found:
        return np.zeros(0, dtype=np.uint64)
    return _keyed(np.concatenate(found), key)


def _tag(key: str, input_sha256: str, data: bytes) -> str:
    return hmac.new(bytes.fromhex(key), input_sha256.encode() + b"\0" + data,
                    hashlib.sha256).hexdigest()


def probe_path(root: Path, shard_name: str) -> Path:
    return root / PROBE_DIR / f"{Path(shard_name).stem}.probe"


def write_probes(root: Path, shard_name: str, probes: np.ndarray, key: str,
                 input_sha256: str) -> str:
    """Write a shard's probe set under ``root``; its tag (for the shard's state)."""
    data = np.ascontiguousarray(probes, dtype="<u8").tobytes()
    with atomic_path(probe_path(root, shard_name)) as tmp:
        tmp.write_bytes(data)
    return _tag(key, input_sha256, data)


def read_probes(root: Path, shard_name: str, key: str, input_sha256: str,
                tag: object) -> np.ndarray | None:
    """A shard's probe set if it is there and its tag checks; else None (read the shard)."""
    if not isinstance(tag, str):
        return None
    try:
        data = probe_path(root, shard_name).read_bytes()
    except OSError:
        return None
    if len(data) % 8 or not hmac.compare_digest(_tag(key, input_sha256, data), tag):
        return None
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def may_match(probes: np.ndarray, shard: np.ndarray) -> bool:
    """Whether a rule's probe digests meet a shard's probe set (both sorted)."""
    if len(probes) == 0 or len(shard) == 0:
        return False
    at = np.searchsorted(shard, probes).clip(0, len(shard) - 1)
    return bool((shard[at] == probes).any())
