"""Images: hashing downloaded images and scrubbing webdataset copies (tars + parquet sidecars).

The names below are the public face of the image hashing and tar reading, loaded on first use
(Pillow is not imported by tar readers). The webdataset job lives in ``scrub.images.job`` and
``scrub.images.webdataset``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrub.images.hashing import DEFAULT_MAX_PIXELS, HASH_TYPES, hash_image, parse_types
    from scrub.images.perceptual import dhash_hex, phash_hex
    from scrub.images.tars import (
        IMAGE_EXTENSIONS,
        Member,
        Sample,
        TarMembers,
        group_samples,
        iter_image_bytes,
        read_members,
        rewrite_tar,
    )

_EXPORTS = {
    **dict.fromkeys(["DEFAULT_MAX_PIXELS", "HASH_TYPES", "hash_image", "parse_types"],
                    "scrub.images.hashing"),
    **dict.fromkeys(["dhash_hex", "phash_hex"], "scrub.images.perceptual"),
    **dict.fromkeys(["IMAGE_EXTENSIONS", "Member", "Sample", "TarMembers", "group_samples",
                     "iter_image_bytes", "read_members", "rewrite_tar"], "scrub.images.tars"),
}

__all__ = ["DEFAULT_MAX_PIXELS", "HASH_TYPES", "IMAGE_EXTENSIONS", "Member", "Sample",
           "TarMembers", "dhash_hex", "group_samples", "hash_image", "iter_image_bytes",
           "parse_types", "phash_hex", "read_members", "rewrite_tar"]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
