"""What a plan's rules will need, prepared by the workers before the plan arrives.

Some rule kinds pay a one-off cost in each process on first use: perceptual rules compile their
numba search (seconds; numba's on-disk cache is pickle-based, so scrub does not use it), host
and domain rules load the public suffix list. Workers start while the parent parses lists; as
each list is read, the parent announces the kernels its entry types need and idle workers
prepare them then, instead of on their first batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

#: Entry types whose rules scan URL hosts, and those matched by Hamming distance.
_HOST_TYPES = frozenset({"host", "domain", "url_prefix"})
_PERCEPTUAL_TYPES = frozenset({"pdq", "phash", "dhash"})

_HOOK: ContextVar[Callable[[set[str]], None] | None] = ContextVar("scrub_warm_hook",
                                                                   default=None)


def kernels_for(type_names: Iterable[str]) -> set[str]:
    """The compiled kernels rules of these entry types run."""
    names = set(type_names)
    kernels = set()
    if names & _HOST_TYPES:
        kernels.add("hosts")
    if names & _PERCEPTUAL_TYPES:
        kernels.add("hamming")
    return kernels


def compile_kernel(name: str) -> None:
    """Prepare one kernel in this process by running it once on a tiny input."""
    if name == "hosts":
        import polars as pl

        from scrub.urls import canonical_hosts, registrable_domain

        canonical_hosts(pl.Series(["https://a.example/x"]))
        registrable_domain("a.example.com")
    elif name == "s3":  # the S3 client of an OUTPUT in object storage (~0.2 s to build)
        from scrub.errors import ScrubError
        from scrub.storage.writes import client

        with contextlib.suppress(ScrubError):  # told when used (boto3 not installed)
            client()
    elif name == "hamming":
        from scrub.engine.hamming import HammingIndex

        keys = np.zeros((1, 8), dtype=np.uint8)
        HammingIndex(keys).search(keys, 1)
    else:
        raise ValueError(f"no kernel called {name!r}")


def announce(type_names: Iterable[str]) -> None:
    """Tell the executor building the current plan which entry types are coming (if any)."""
    hook = _HOOK.get()
    if hook is not None:
        kernels = kernels_for(type_names)
        if kernels:
            hook(kernels)


@contextmanager
def announcing_to(hook: Callable[[set[str]], None]) -> Iterator[None]:
    """Route :func:`announce` calls made inside the block to ``hook``."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)
