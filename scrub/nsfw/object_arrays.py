""".npy embedding files in object storage, read by rows with ranged requests.

What rescoring uses of a memory-mapped ``np.load`` (``shape``, ``dtype``, ``ndim``, a slice of
rows as an array): the header is read once, then each batch of rows is one ranged read, so
memory holds a batch, never the file.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.lib.format as npy_format

from scrub.storage import ObjectPath
from scrub.storage.failures import translated


class ObjectArray:
    """A C-ordered .npy array in object storage. Opening reads its header (a missing object is
    :class:`FileNotFoundError`; a header numpy cannot read, an object dtype, Fortran order or
    a file shorter than its header says is :class:`ValueError`, as ``np.load`` says)."""

    def __init__(self, path: ObjectPath) -> None:
        self.path = path
        self._file = path.open("rb")
        self._lock = threading.Lock()
        with translated(path):
            size = self._file.size()
            version = npy_format.read_magic(self._file)
            read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                           else npy_format.read_array_header_2_0)
            shape, fortran, dtype = read_header(self._file)
            self.offset = self._file.tell()
        if dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        if fortran and len(shape) > 1:
            raise ValueError("a Fortran-ordered array (save it in C order to read it from "
                             "object storage)")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype[Any] = dtype
        self.ndim = len(self.shape)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        if self.offset + self._row_bytes * (self.shape[0] if self.shape else 0) > size:
            raise ValueError(f"the file holds {size} bytes, fewer than its header's shape "
                             f"{self.shape} needs")

    def rows(self, start: int, count: int) -> np.ndarray:
        """Rows ``start`` to ``start + count`` (clipped to the array) as a new, writable
        array: one ranged read."""
        start = max(0, min(start, self.shape[0]))
        count = max(0, min(count, self.shape[0] - start))
        out = np.empty((count, *self.shape[1:]), dtype=self.dtype)
        if out.size == 0:
            return out
        view = out.data.cast("B")
        with self._lock, translated(self.path):
            self._file.seek(self.offset + start * self._row_bytes)
            done = 0
            while done < len(view):
                got = self._file.readinto(view[done:])
                if not got:
                    raise ValueError(f"{self.path}: ends early (truncated file)")
                done += got
        return out

    def __getitem__(self, rows: slice) -> np.ndarray:
        """A slice of rows (step 1), as :meth:`rows` reads it."""
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("an ObjectArray is read by slices of rows")
        start, stop, _ = rows.indices(self.shape[0])
        return self.rows(start, max(0, stop - start))

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        self._file.close()
