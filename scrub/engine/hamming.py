"""Exact Hamming-radius search over perceptual hashes (PDQ: 256 bits; pHash/dHash: 64 bits).

:class:`HammingIndex` is a multi-index hash (Norouzi et al.): one table per 16-bit substring, laid
out contiguously. By the pigeonhole principle, probing every table within ``r // m`` bits of the
query's substring (``m`` substrings) finds every code within ``r``, so results are exactly those
of :func:`brute_force` (tests check it at every radius). Inner loops are compiled with numba once
per process: numba's disk cache is pickle-based, so it is not used. Design and measurements:
docs/design/hamming.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np

SUBSTRING_BITS = 16


@dataclass
class Matches:
    """Pairs within the radius: ``query[i]`` matched index entry ``entry[i]`` at ``distance[i]``."""

    query: np.ndarray
    entry: np.ndarray
    distance: np.ndarray


def pack_codes(keys: np.ndarray) -> np.ndarray:
    """(n, bytes) uint8 codes as (n, bytes / 8) big-endian uint64 words (native order)."""
    n, width = keys.shape
    return np.ascontiguousarray(keys).view(">u8").reshape(n, width // 8).astype(np.uint64)


def _substrings(words: np.ndarray) -> np.ndarray:
    """(n, words) uint64 codes -> (n, 4 * words) uint16 substrings, most significant first."""
    n, count = words.shape
    out = np.empty((n, count * 4), dtype=np.uint16)
    for w in range(count):
        for part in range(4):
            shift = np.uint64(48 - 16 * part)
            out[:, 4 * w + part] = ((words[:, w] >> shift) & np.uint64(0xFFFF)).astype(np.uint16)
    return out


def _probe_masks(max_flips: int) -> np.ndarray:
    """Every 16-bit mask with at most ``max_flips`` bits set, fewest bits first."""
    masks = [0]
    for flips in range(1, max_flips + 1):
        for bits in combinations(range(SUBSTRING_BITS), flips):
            masks.append(sum(1 << b for b in bits))
    return np.array(masks, dtype=np.uint16)


class HammingIndex:
    """An immutable index of fixed-width binary codes for exact radius queries."""

    def __init__(self, keys: np.ndarray) -> None:
        if keys.ndim != 2 or keys.dtype != np.uint8 or keys.shape[1] % 8:
            raise TypeError("HammingIndex wants an (n, 8k) uint8 matrix")
        self.bits = keys.shape[1] * 8
        self.codes = pack_codes(keys)
        subs = _substrings(self.codes)
        self.tables = subs.shape[1]
        self.offsets = np.empty((self.tables, 65537), dtype=np.int64)
        self.ids = np.empty((self.tables, len(keys)), dtype=np.int32)
        head = min(2, self.codes.shape[1])
        self.near = np.empty((self.tables, len(keys), head), dtype=np.uint64)
        for t in range(self.tables):
            order = np.argsort(subs[:, t], kind="stable").astype(np.int32)
            self.ids[t] = order
            self.near[t] = self.codes[order, :head]
            counts = np.bincount(subs[:, t], minlength=65536)
            self.offsets[t, 0] = 0
            np.cumsum(counts, out=self.offsets[t, 1:])

    def __len__(self) -> int:
        return len(self.codes)

    def search(self, queries: np.ndarray, radius: int,
               valid: np.ndarray | None = None) -> Matches:
        """Every (query, entry) pair within ``radius`` bits; rows not ``valid`` match nothing."""
        if queries.shape[1] * 8 != self.bits:
            raise ValueError(f"queries of {queries.shape[1] * 8} bits for a {self.bits}-bit index")
        words = pack_codes(queries)
        if valid is None:
            valid = np.ones(len(queries), dtype=np.bool_)
        masks = _probe_masks(radius // self.tables)
        q, e, d = _compiled()(self.offsets, self.ids, self.near, self.codes, words,
                          _substrings(words), valid.astype(np.bool_), masks, radius)
        return Matches(query=q, entry=e, distance=d)


def brute_force(keys: np.ndarray, queries: np.ndarray, radius: int) -> Matches:
    """The reference: every pair's distance by popcount. O(n * q); for tests and small lists."""
    codes, words = pack_codes(keys), pack_codes(queries)
    q_all, e_all, d_all = [], [], []
    for start in range(0, len(words), 256):
        block = words[start: start + 256]
        distance = np.bitwise_count(block[:, None, :] ^ codes[None, :, :]).sum(axis=2)
        qi, ei = np.nonzero(distance <= radius)
        q_all.append(qi + start)
        e_all.append(ei)
        d_all.append(distance[qi, ei])
    if not q_all:
        empty = np.zeros(0, dtype=np.int64)
        return Matches(empty, empty, empty)
    return Matches(np.concatenate(q_all).astype(np.int64), np.concatenate(e_all).astype(np.int64),
                   np.concatenate(d_all).astype(np.int64))


def _search_py(offsets: np.ndarray, ids: np.ndarray, near: np.ndarray, codes: np.ndarray,
               words: np.ndarray, subs: np.ndarray, valid: np.ndarray, masks: np.ndarray,
               radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = codes.shape[0]
    width = codes.shape[1]
    head = near.shape[2]
    tables = subs.shape[1]
    seen = np.full(n, -1, dtype=np.int64)
    capacity = 1024
    out_q = np.empty(capacity, dtype=np.int64)
    out_e = np.empty(capacity, dtype=np.int64)
    out_d = np.empty(capacity, dtype=np.int64)
    found = 0
    for qi in range(words.shape[0]):
        if not valid[qi]:
            continue
        for t in range(tables):
            base = subs[qi, t]
            for m in range(masks.shape[0]):
                value = base ^ masks[m]
                start = offsets[t, value]
                stop = offsets[t, value + 1]
                for k in range(start, stop):
                    distance: int | np.int64 = 0  # numba types it int64 throughout
                    for w in range(head):
                        distance += _popcount(near[t, k, w] ^ words[qi, w])
                    if distance > radius:
                        continue
                    entry = ids[t, k]
                    if seen[entry] == qi:
                        continue
                    seen[entry] = qi
                    for w in range(head, width):
                        distance += _popcount(codes[entry, w] ^ words[qi, w])
                    if distance <= radius:
                        if found == capacity:
                            capacity *= 2
                            grown_q = np.empty(capacity, dtype=np.int64)
                            grown_e = np.empty(capacity, dtype=np.int64)
                            grown_d = np.empty(capacity, dtype=np.int64)
                            grown_q[:found] = out_q[:found]
                            grown_e[:found] = out_e[:found]
                            grown_d[:found] = out_d[:found]
                            out_q, out_e, out_d = grown_q, grown_e, grown_d
                        out_q[found] = qi
                        out_e[found] = entry
                        out_d[found] = distance
                        found += 1
    return out_q[:found], out_e[:found], out_d[:found]


def _popcount_py(x: np.uint64) -> np.int64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


_popcount = _popcount_py
_SEARCH: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None


def _compiled() -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The numba-compiled search, built on first use (numba is imported only then)."""
    global _SEARCH, _popcount
    if _SEARCH is None:
        import numba

        _popcount = numba.njit(nogil=True)(_popcount_py)
        _SEARCH = numba.njit(nogil=True)(_search_py)
    return _SEARCH
