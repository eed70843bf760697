"""Settings for worker processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def worker_threads(threads: int) -> Iterator[None]:
    """Thread counts for worker processes spawned inside the block (read by polars and
    OpenBLAS as each worker starts): ``threads`` each, so workers x threads = cores."""
    names = ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(threads) for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
