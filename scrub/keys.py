"""Fixed-width binary keys: hex decoding of whole Arrow columns and a sorted key set.

Hashes are lowercase hex at the edges and fixed-width binary inside the engine (DESIGN.md). The
functions here turn an Arrow string column into an ``(n, width)`` uint8 matrix plus a validity mask
without a Python loop per row, and :class:`KeySet` answers membership for a whole matrix at once
with a binary search on the first eight bytes, then a check of the full key.
"""

from __future__ import annotations

import functools

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

# Hex digit value per byte; 255 marks a byte that is not a hex digit. Upper case is accepted.
_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _ch in enumerate(b"0123456789abcdef"):
    _NIBBLE[_ch] = _i
for _i, _ch in enumerate(b"ABCDEF"):
    _NIBBLE[_ch] = 10 + _i

# Byte value of each pair of hex digits, indexed by the pair read as a little-endian uint16
# (first digit in the low byte); 0xFFFF marks a pair with a non-hex character. One lookup per
# output byte beats decoding nibbles and combining them (figure: docs/design/keys.md).
_LOW, _HIGH = np.arange(65536) & 255, np.arange(65536) >> 8
_PAIR = np.where((_NIBBLE[_LOW] == 255) | (_NIBBLE[_HIGH] == 255), 0xFFFF,
                 (_NIBBLE[_LOW].astype(np.uint16) << 4) | _NIBBLE[_HIGH]).astype(np.uint16)
del _LOW, _HIGH

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

# Rows decoded per step when a column needs gathering, to keep the index arrays small.
_GATHER_ROWS = 1 << 16


#: Python's whitespace under Unicode :data:`_SPACES_VERSION` (what :func:`scan_spaces` finds
#: there); another ``unicodedata`` version scans instead.
_SPACES = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
           "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_SPACES_VERSION = "14.0.0"


@functools.cache
def hex_spaces() -> str:
    """What may surround a hex digest, on either side (list entries and dataset values): Python's
    whitespace (``str.isspace``: Unicode White_Space plus U+001C-U+001F), so that the scalar
    ``str.strip()`` of the list parser and this column form strip the same characters. Shipped
    for the Unicode version of today's Pythons; under another one, scanned on first use (every
    code point: ~0.1-0.3 CPU-s in each worker that cleans a digest column)."""
    import unicodedata

    return _SPACES if unicodedata.unidata_version == _SPACES_VERSION else scan_spaces()


def scan_spaces() -> str:
    """Every character ``str.isspace`` calls whitespace, in code point order."""
    return "".join(chr(code) for code in range(0x110000) if chr(code).isspace())


def clean_hex_text(values: pl.Series) -> pl.Series:
    """Hex digests as both sides spell them before decoding: surrounding whitespace stripped,
    lower-cased, one ``0x`` prefix dropped. What is still not hex after this stays malformed."""
    return (values.cast(pl.String).str.strip_chars(hex_spaces()).str.to_lowercase()
            .str.strip_prefix("0x"))


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets as int64, data bytes, null mask) of a string or binary array, zero-copy where
    the array allows."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string_view(arr.type) or pa.types.is_binary_view(arr.type):
        arr = pc.cast(arr, pa.large_binary())
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.view(pa.large_binary() if pa.types.is_large_string(arr.type) else pa.binary())
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        raise TypeError(f"expected a string or binary column, got {arr.type}")
    _, offsets_buf, data_buf = arr.buffers()
    offset_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[arr.offset: arr.offset + len(arr) + 1]
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
            else np.zeros(0, dtype=np.uint8))
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    return offsets.astype(np.int64, copy=False), data, nulls


def hex_to_keys(arr: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a column of hex strings into ``(keys, valid)``.

    ``keys`` is an ``(n, width)`` uint8 matrix; ``valid[i]`` is False where row ``i`` is null or
    is not ``2 * width`` hex digits once spelt as :func:`clean_hex_text` spells it (surrounding
    whitespace, case and a ``0x`` prefix forgiven, as in list entries); its key row is zero.
    Clean values take the vectorised fast path; only the others are cleaned and decoded again.
    """
    keys, valid = _hex_to_keys_exact(arr, width)
    retry = np.flatnonzero(~valid)
    if len(retry):
        retry = retry[~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)[retry]]
    if len(retry):
        again, ok = _hex_to_keys_exact(_cleaned_rows(arr, retry), width)
        keys[retry[ok]] = again[ok]
        valid[retry[ok]] = True
    return keys, valid


def _cleaned_rows(arr: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """:func:`clean_hex_text` of some rows of a string or binary column, as a string array.

    A binary value that is not UTF-8 cannot be hex text with spaces around it: when a binary
    column holds some, only its ASCII rows are cleaned (the others come back null)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string_view(arr.type) or pa.types.is_binary_view(arr.type):  # no take kernel
        arr = pc.cast(arr, pa.large_string() if pa.types.is_string_view(arr.type)
                      else pa.large_binary())
    part = arr.take(pa.array(rows, pa.int64()))
    if pa.types.is_dictionary(part.type):
        part = pc.cast(part, part.type.value_type)
    if not (pa.types.is_string(part.type) or pa.types.is_large_string(part.type)
            or pa.types.is_string_view(part.type)):
        try:
            part = pc.cast(part, pa.large_string())
        except pa.ArrowInvalid:
            offsets, data, _ = string_buffers(part)
            high = np.zeros(len(data) + 1, dtype=np.int64)
            np.cumsum(data >= 0x80, out=high[1:])
            ascii_only = pa.array(high[offsets[1:]] == high[offsets[:-1]])
            part = pc.cast(pc.if_else(ascii_only, part, pa.scalar(None, part.type)),
                           pa.large_string())
    return clean_hex_text(pl.Series(part)).to_arrow()


def _hex_to_keys_exact(arr: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hex_to_keys` without cleaning: exactly ``2 * width`` hex digits (either case)."""
    offsets, data, nulls = string_buffers(arr)
    n = len(offsets) - 1
    chars = 2 * width
    lengths = np.diff(offsets)
    valid = (lengths == chars) & ~nulls
    keys = np.zeros((n, width), dtype=np.uint8)
    if n == 0:
        return keys, valid
    if valid.all() and offsets[-1] - offsets[0] == n * chars:
        # Fast path: every value has the right length, so the bytes are one contiguous matrix.
        text = data[offsets[0]: offsets[-1]].reshape(n, chars)
        bad = _decode_into(text, keys)
        valid &= ~bad
        return keys, valid
    rows = np.flatnonzero(valid)
    positions = np.arange(chars, dtype=np.int64)
    for start in range(0, len(rows), _GATHER_ROWS):
        part = rows[start: start + _GATHER_ROWS]
        text = data[offsets[part][:, None] + positions]
        decoded = np.zeros((len(part), width), dtype=np.uint8)
        bad = _decode_into(text, decoded)
        keys[part] = decoded
        valid[part[bad]] = False
    keys[~valid] = 0
    return keys, valid


def digest_keys(column: pa.Array | pa.ChunkedArray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, valid)`` of a digest column of ``width`` bytes, in whichever form it is stored.

    Hex text (string types, dictionaries of them, or bytes of ``2 * width`` ASCII digits) is
    decoded as :func:`hex_to_keys` does; raw digests (bytes of exactly ``width``, or
    ``fixed_size_binary(width)``) are taken as they are; 64-bit integers, for 8-byte digests,
    as their big-endian bit patterns. Null and malformed rows are not ``valid``. Raises
    ``TypeError`` for any other Arrow type (:func:`scrub.dataset.role_type_problem` names
    those to the user first).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    kind = column.type
    n = len(column)
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_binary(kind) and kind.byte_width in (width, 2 * width):
        data = column.buffers()[1]
        size = kind.byte_width
        raw = (np.frombuffer(data, dtype=np.uint8)[column.offset * size:
                                                   (column.offset + n) * size]
               if data is not None else np.zeros(n * size, dtype=np.uint8)).reshape(n, size)
        if size == width:
            keys = raw.copy()
            valid = ~nulls
        else:
            keys = np.zeros((n, width), dtype=np.uint8)
            valid = ~nulls & ~_decode_into(raw, keys)
        keys[~valid] = 0
        return keys, valid
    if pa.types.is_integer(kind) and kind.bit_width == 64 and width == 8:
        values = column.fill_null(0).to_numpy(zero_copy_only=False)
        keys = values.astype(">u8" if pa.types.is_unsigned_integer(kind) else ">i8")
        keys = keys.view(np.uint8).reshape(n, 8).copy()
        keys[nulls] = 0
        return keys, ~nulls
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) \
            or pa.types.is_string_view(kind):
        return hex_to_keys(column, width)
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            or pa.types.is_binary_view(kind)):
        raise TypeError(f"a digest column cannot be of type {kind}")
    keys, valid = hex_to_keys(column, width)  # values of 2 * width bytes: hex digits
    offsets, data, _ = string_buffers(column)
    raw_rows = np.flatnonzero((np.diff(offsets) == width) & ~nulls)
    if len(raw_rows):  # values of exactly width bytes: raw digests
        keys[raw_rows] = data[offsets[raw_rows][:, None] + np.arange(width, dtype=np.int64)]
        valid[raw_rows] = True
    return keys, valid


def _decode_into(text: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Decode an (n, 2w) matrix of hex characters into ``out``; returns the rows with bad digits."""
    values = _PAIR[np.ascontiguousarray(text).view("<u2")]
    bad = (values > 255).any(axis=1)
    out[:] = values
    return bad


def keys_to_hex(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hex_to_keys` for valid rows: a numpy array of ``S{2w}`` lowercase hex."""
    n, width = keys.shape
    text = np.empty((n, 2 * width), dtype=np.uint8)
    text[:, 0::2] = _HEX_DIGITS[keys >> 4]
    text[:, 1::2] = _HEX_DIGITS[keys & 15]
    return text.view(f"S{2 * width}").ravel()


def digest_hex(column: pa.Array | pa.ChunkedArray, width: int) -> pa.Array:
    """A digest column of ``width`` bytes as lowercase hex text, whatever its stored form (see
    :func:`digest_keys`): text as :func:`clean_hex_text` spells it, bytes and integers
    written out in hex; null where null (and, for bytes and integers, where malformed)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return clean_hex_text(pl.Series(column)).to_arrow()
    keys, valid = digest_keys(column, width)
    return pa.array(keys_to_hex(keys).astype(str), pa.string(), mask=~valid)


def int64_to_keys(values: np.ndarray) -> np.ndarray:
    """Signed 64-bit integers as 8-byte big-endian keys (their two's-complement bit patterns)."""
    return values.astype(">i8").view(np.uint8).reshape(-1, 8)


class KeySet:
    """An immutable set of fixed-width binary keys with vectorised membership.

    Keys are kept unique and in byte order. Membership first tests a bitmap over the top bits of
    the first eight bytes (about 64 bits per key, so ~1.5% of misses get past it), then looks the
    survivors up with ``np.searchsorted`` on those eight bytes as a big-endian integer and compares
    whole keys. No hash table is built per call; random probes into a large sorted array, the
    cost that dominates a plain binary search, are paid only by the few candidates.
    """

    def __init__(self, keys: np.ndarray) -> None:
        if keys.ndim != 2 or keys.dtype != np.uint8:
            raise TypeError("KeySet wants an (n, width) uint8 matrix")
        self.width = keys.shape[1]
        prefix = _prefix64(keys)
        if len(prefix) < 2 or bool((prefix[1:] > prefix[:-1]).all()):
            self.keys, self._prefix = np.ascontiguousarray(keys), prefix  # already unique, sorted
        else:
            self.keys = unique_keys(keys)
            self._prefix = _prefix64(self.keys)
        # Longest run of keys sharing their first 8 bytes: bounds the verification loop below.
        if len(self._prefix) > 1 and self.width > 8:
            change = np.flatnonzero(np.diff(self._prefix) != 0)
            bounds = np.concatenate(([0], change + 1, [len(self._prefix)]))
            self._max_run = int(np.diff(bounds).max())
        else:
            self._max_run = 1
        self._shift = np.uint64(64 - _bitmap_bits(len(self.keys)))
        slots = self._prefix >> self._shift
        self._bitmap = np.zeros(1 << (_bitmap_bits(len(self.keys)) - 3), dtype=np.uint8)
        np.bitwise_or.at(self._bitmap, (slots >> np.uint64(3)).astype(np.int64),
                         np.left_shift(1, (slots & np.uint64(7)).astype(np.uint8)).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, queries: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask: which rows of ``queries`` (an (m, width) matrix) are in the set."""
        m = len(queries)
        found = np.zeros(m, dtype=bool)
        if m == 0 or len(self.keys) == 0:
            return found
        q_prefix = _prefix64(queries)
        slots = q_prefix >> self._shift
        maybe = (self._bitmap[(slots >> np.uint64(3)).astype(np.int64)]
                 >> (slots & np.uint64(7)).astype(np.uint8)) & 1
        if valid is not None:
            maybe &= valid
        rows = np.flatnonzero(maybe)
        if len(rows) == 0:
            return found
        pos = np.searchsorted(self._prefix, q_prefix[rows], side="left")
        n = len(self._prefix)
        for step in range(self._max_run):
            at = pos + step
            candidate_rows = np.flatnonzero(at < n)
            if len(candidate_rows) == 0:
                break
            at_rows = at[candidate_rows]
            query_rows = rows[candidate_rows]
            same_prefix = self._prefix[at_rows] == q_prefix[query_rows]
            at_rows, query_rows = at_rows[same_prefix], query_rows[same_prefix]
            if len(query_rows) == 0:
                break
            if self.width > 8:
                equal = (self.keys[at_rows] == queries[query_rows]).all(axis=1)
                found[query_rows[equal]] = True
            else:
                found[query_rows] = True
        return found


    def index_of(self, queries: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """The position in :attr:`keys` of each row of ``queries`` (-1 where it is not in the
        set): which entries matched, for the rows a rule hit (few, so a plain binary search)."""
        at = np.full(len(queries), -1, dtype=np.int64)
        rows = np.flatnonzero(self.contains(queries, valid))
        if len(rows) == 0:
            return at
        q_prefix = _prefix64(queries[rows])
        pos = np.searchsorted(self._prefix, q_prefix, side="left")
        for step in range(self._max_run):
            at_rows = pos + step
            inside = at_rows < len(self._prefix)
            same = np.zeros(len(rows), dtype=bool)
            same[inside] = (self.keys[at_rows[inside]] == queries[rows[inside]]).all(axis=1)
            found = same & (at[rows] < 0)
            at[rows[found]] = at_rows[found]
        return at


def _bitmap_bits(n: int) -> int:
    """log2 of the bitmap's size in bits: ~64 bits per key, from 64 KiB up to 128 MiB."""
    return int(min(max(int(np.ceil(np.log2(max(n, 1)))) + 6, 19), 30))


def unique_values(keys: np.ndarray) -> np.ndarray:
    """:func:`unique_keys` for key matrices; sorted unique strings for object arrays (text keys)."""
    return np.unique(keys) if keys.dtype == object else unique_keys(keys)


def unique_keys(keys: np.ndarray) -> np.ndarray:
    """Unique rows of an (n, width) uint8 matrix, in byte order.

    Sorts on the first eight bytes as an integer (much faster than comparing whole rows); only
    rows whose first eight bytes tie, duplicates mostly, get a full row-wise sort.
    """
    if len(keys) == 0:
        return np.ascontiguousarray(keys)
    if len(keys) > _PARTITION_ROWS:
        return _unique_partitioned(keys)
    return _unique_sorted(keys)


def _unique_sorted(keys: np.ndarray) -> np.ndarray:
    order = np.argsort(_prefix64(keys), kind="stable")
    keys = keys[order]
    del order
    prefix = _prefix64(keys)
    tie = prefix[1:] == prefix[:-1]
    del prefix
    if not tie.any():
        return keys
    in_tie = np.zeros(len(keys), dtype=bool)
    in_tie[1:] |= tie
    in_tie[:-1] |= tie
    resolved = _unique_rows(keys[in_tie])
    merged = np.concatenate([keys[~in_tie], resolved])
    # Stable by prefix: rows sharing a prefix all come from ``resolved``, already in byte order.
    return merged[np.argsort(_prefix64(merged), kind="stable")]


# Above this many keys, sort in 16 partitions by the first 4 bits: the transient index and copy
# then cover 1/16 of the keys at a time, which bounds the peak memory (docs/design/keys.md).
_PARTITION_ROWS = 1 << 22


def _unique_partitioned(keys: np.ndarray) -> np.ndarray:
    top = keys[:, 0] >> 4
    out = np.empty_like(keys)
    used = 0
    for part in range(16):
        rows = np.flatnonzero(top == part)
        if len(rows) == 0:
            continue
        chunk = _unique_sorted(keys[rows])
        out[used: used + len(chunk)] = chunk
        used += len(chunk)
    return out[:used]


def _unique_rows(keys: np.ndarray) -> np.ndarray:
    width = keys.shape[1]
    as_void = np.ascontiguousarray(keys).view(np.dtype((np.void, width))).ravel()
    return np.unique(as_void).view(np.uint8).reshape(-1, width)


def _prefix64(keys: np.ndarray) -> np.ndarray:
    """First eight bytes of each key as a big-endian unsigned integer (zero-padded if narrower)."""
    n, width = keys.shape
    if width >= 8:
        head = np.ascontiguousarray(keys[:, :8])
    else:
        head = np.zeros((n, 8), dtype=np.uint8)
        head[:, :width] = keys
    return head.view(">u8").ravel().astype(np.uint64)
