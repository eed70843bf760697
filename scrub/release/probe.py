"""Probe sets: which hosts and URL tails a shard holds, so an incremental rebuild can skip it.

A full build records per input shard sorted keyed digests of its rows' hosts and parent domains
(``.probe``) and of its URLs' last path segments (``.tails``), in ``OUT/.scrub-probe/``, never
published; each file's tag lies in the variant's signed shard state. A rebuild reuses unread
every shard that the probe sets show no new rule can match. Keys, sizes, costs and why they are
keyed: docs/design/release.md.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from scrub.atomic import atomic_path
from scrub.engine.plan import MatchPlan
from scrub.keys import hex_to_keys, keys_to_hex
from scrub.lists.types import text_digest_keys
from scrub.storage import ObjectPath
from scrub.urls import URL_FORM, host_suffixes, url_tails

#: A local folder, or a prefix in object storage.
Folder = Path | ObjectPath

#: Where a release build keeps its probe sets (in OUT, beside the variants).
PROBE_DIR = ".scrub-probe"
#: The kinds of probe set (file suffix, and key of its tag in a shard's state).
HOSTS, TAILS = "probe", "tails"


@dataclass(frozen=True)
class Probing:
    """What a build records for later incremental rebuilds: ``key`` (hex, from
    :func:`probe_key`) keys every digest and tag; ``tails`` asks for tail probe sets."""

    key: str
    tails: bool = False


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
    digests of each host and of each of its parent domains (``amazonaws.com`` for
    ``a.s3.amazonaws.com``, whatever the public suffix list says), so that a domain rule
    meets every shard with a row on or under its domain."""
    values = host_suffixes(hosts.drop_nulls().unique())[1].unique()
    digests, valid = text_digest_keys(values)
    return _keyed(digests[valid], key)


#: XXH3-64 (seed 0) of strings of each length class its algorithm treats apart (0, 1-3, 4-8,
#: 9-16, 17-128, 129-240 and longer bytes), checked against the xxhash reference library.
_XXH3_VECTORS = {"": 0x2D06800538D394C2, "ab": 0xA873719C24D5735C, "1.jpg": 0x1230997D5982A033,
                 "media.jpg": 0xFEC574276D28396F,
                 "a-long-file-name-2020-large.jpeg": 0x7B81D452E218055B,
                 "x" * 200: 0x50EF124FB1E4DE53, "y" * 300: 0xE59D0F1DA61C2EE0}


def _xxh3(values: pl.Series) -> np.ndarray:
    import polars_hash as plh

    return (pl.DataFrame({"v": values}).select(plh.col("v").nchash.xxh3_64()).to_series()
            .to_numpy().astype(np.uint64))


@functools.lru_cache(maxsize=1)
def fingerprints_ok() -> bool:
    """Whether the installed XXH3 gives the reference values: tail probe sets made by another
    implementation would not find their own tails (shards would be skipped wrongly), so
    without it none are written or read."""
    got = _xxh3(pl.Series(list(_XXH3_VECTORS), dtype=pl.String))
    return [int(v) for v in got] == list(_XXH3_VECTORS.values())


def tail_fingerprints(urls: pl.Series) -> np.ndarray:
    """Unkeyed 64-bit fingerprints (XXH3) of the URLs' canonical tails (nulls skipped): the
    per-batch part of a tail probe set (:func:`keyed_tails` keys the shard's, once)."""
    return _xxh3(url_tails(urls).drop_nulls())


def keyed_tails(fingerprints: np.ndarray, key: str) -> np.ndarray:
    """Sorted distinct 32-bit keyed digests of distinct fingerprints: each is one 16-byte
    block (fingerprint, zeros) enciphered with AES-256 under a key derived from ``key``, cut to
    32 bits (a keyed set lookup; sizes and collision odds: docs/design/release.md)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    values = _sorted_distinct(np.asarray(fingerprints, dtype=np.uint64))
    if len(values) == 0:
        return np.zeros(0, dtype=np.uint32)
    blocks = np.zeros((len(values), 2), dtype="<u8")
    blocks[:, 0] = values
    cipher = Cipher(algorithms.AES(_tail_key(key)), modes.ECB()).encryptor()
    out = np.frombuffer(cipher.update(blocks.tobytes()) + cipher.finalize(), dtype="<u4")
    return _sorted_distinct(out.reshape(-1, 4)[:, 0].astype(np.uint32))


def _tail_key(key: str) -> bytes:
    return hmac.new(bytes.fromhex(key), b"scrub.release.probe.tails", hashlib.sha256).digest()


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    values = np.sort(values)
    if len(values) > 1:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


@dataclass(frozen=True)
class RuleProbe:
    """The probe digests that bound one rule's matches: its hosts and domains, its URLs'
    tails (None: not bounded that way)."""

    hosts: np.ndarray | None
    tails: np.ndarray | None


def rule_probes(plan: MatchPlan, key: str) -> list[RuleProbe] | None:
    """The probe digests of every rule of ``plan``; None when some rule is bounded neither
    by hosts nor by tails (then every shard must be read)."""
    found = []
    for rule in plan.rules:
        bounds = rule.probe_bounds()
        hosts = None if bounds.host_digests is None else _keyed(bounds.host_digests, key)
        tails = None
        if bounds.url_segments is not None and fingerprints_ok():
            tails = keyed_tails(_xxh3(bounds.url_segments), key)
        if hosts is None and tails is None:
            return None
        found.append(RuleProbe(hosts, tails))
    return found


#: Each kind's digests as stored (little-endian), and what its tag binds besides the input:
#: the layout and the canonical form of URLs and hosts (``URL_FORM``). Probe sets made before
#: they held every parent domain, or under another canonical form (whose hosts and tails a
#: rule of today might not find), fail their tag: the shard is read.
_LAYOUT = {HOSTS: ("<u8", b"hosts/suffixes/hmac-sha256/u64/url-form-%d\0" % URL_FORM),
           TAILS: ("<u4", b"tails/xxh3-64/aes-256/u32/url-form-%d\0" % URL_FORM)}


def _tag(key: str, input_sha256: str, data: bytes, kind: str = HOSTS) -> str:
    return hmac.new(bytes.fromhex(key), _LAYOUT[kind][1] + input_sha256.encode() + b"\0" + data,
                    hashlib.sha256).hexdigest()


def probe_path(root: Folder, shard_name: str, kind: str = HOSTS) -> Folder:
    return root / PROBE_DIR / f"{Path(shard_name).stem}.{kind}"


def write_probes(root: Folder, shard_name: str, probes: np.ndarray, key: str,
                 input_sha256: str, kind: str = HOSTS) -> str:
    """Write a shard's probe set of ``kind`` under ``root``; its tag (for the shard's
    state)."""
    data = np.ascontiguousarray(probes, dtype=_LAYOUT[kind][0]).tobytes()
    # not fsynced: a probe set lost or cut short by a crash fails its tag (the shard is read)
    with atomic_path(probe_path(root, shard_name, kind), durable=False) as tmp:
        tmp.write_bytes(data)
    return _tag(key, input_sha256, data, kind)


def read_probes(root: Folder, shard_name: str, key: str, input_sha256: str,
                tag: object, kind: str = HOSTS) -> np.ndarray | None:
    """A shard's probe set of ``kind`` if it is there and its tag checks; else None (read
    the shard)."""
    if not isinstance(tag, str) or (kind == TAILS and not fingerprints_ok()):
        return None
    try:
        data = probe_path(root, shard_name, kind).read_bytes()
    except OSError:
        return None
    dtype = np.dtype(_LAYOUT[kind][0])
    if len(data) % dtype.itemsize or not hmac.compare_digest(
            _tag(key, input_sha256, data, kind), tag):
        return None
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))


def ruled_out(rules: list[RuleProbe], hosts: np.ndarray | None,
              tails: np.ndarray | None) -> bool:
    """Whether a shard with these probe sets (None: not recorded, or not trusted) holds no row
    any of ``rules`` can match."""
    return all((rule.hosts is not None and hosts is not None and not may_match(rule.hosts, hosts))
               or (rule.tails is not None and tails is not None
                   and not may_match(rule.tails, tails))
               for rule in rules)


def may_match(probes: np.ndarray, shard: np.ndarray) -> bool:
    """Whether a rule's probe digests meet a shard's probe set (both sorted)."""
    if len(probes) == 0 or len(shard) == 0:
        return False
    at = np.searchsorted(shard, probes).clip(0, len(shard) - 1)
    return bool((shard[at] == probes).any())


#: The input shards a build read, as it found them (size, mtime, sha256), in PROBE_DIR.
INPUTS = "inputs.json"


def write_inputs(root: Folder, found: dict[str, tuple[int, int, str]], key: str) -> None:
    """Record ``name -> (size, mtime_ns, sha256)`` of the input shards, tagged with ``key``,
    so a later ``--from`` build trusts an input shard it finds with the same size and mtime
    (the quick check of rsync and make) and hashes the others."""
    body = {name: list(entry) for name, entry in sorted(found.items())}
    data = json.dumps(body, sort_keys=True).encode()
    record = {"inputs": body, "tag": hmac.new(bytes.fromhex(key), b"inputs\0" + data,
                                              hashlib.sha256).hexdigest()}
    with atomic_path(root / PROBE_DIR / INPUTS, durable=False) as tmp:
        tmp.write_text(json.dumps(record, sort_keys=True) + "\n")


def read_inputs(root: Folder, key: str) -> dict[str, tuple[int, int, str]]:
    """The inputs record under ``root`` if it is there and its tag checks; else empty (every
    input shard is then hashed)."""
    try:
        record = json.loads((root / PROBE_DIR / INPUTS).read_text())
        body = record["inputs"]
        data = json.dumps(body, sort_keys=True).encode()
        expected = hmac.new(bytes.fromhex(key), b"inputs\0" + data, hashlib.sha256).hexdigest()
        if not isinstance(record.get("tag"), str) or not hmac.compare_digest(expected,
                                                                             record["tag"]):
            return {}
        return {str(name): (int(size), int(mtime), str(sha))
                for name, (size, mtime, sha) in body.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
