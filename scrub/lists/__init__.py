"""Hash and key types (one class each), list-file parsers and the versioned, encrypted store.

The names below are the package's public face, loaded on first use so that importing one
submodule (``scrub.lists.types``) does not load the store and its cryptography.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrub.lists.hashlist import (
        HashList,
        ListArgument,
        ListFormat,
        check_list_file,
        parse_list_argument,
        public_by_default,
        read_hashlist,
    )
    from scrub.lists.store import (
        CatalogSealError,
        ListStore,
        ListVersion,
        StoredList,
        default_home,
        resolve_in,
        stale_url_digests,
    )
    from scrub.lists.types import KeyType, get_type, register, registered_types

_EXPORTS = {
    **dict.fromkeys(["HashList", "ListArgument", "ListFormat", "check_list_file",
                     "parse_list_argument", "public_by_default", "read_hashlist"],
                    "scrub.lists.hashlist"),
    **dict.fromkeys(["CatalogSealError", "ListStore", "ListVersion", "StoredList",
                     "default_home", "resolve_in", "stale_url_digests"], "scrub.lists.store"),
    **dict.fromkeys(["KeyType", "get_type", "register", "registered_types"],
                    "scrub.lists.types"),
}

__all__ = ["CatalogSealError", "HashList", "KeyType", "ListArgument", "ListFormat", "ListStore",
           "ListVersion", "StoredList", "check_list_file", "default_home", "get_type",
           "parse_list_argument", "public_by_default", "read_hashlist", "register",
           "registered_types", "resolve_in", "stale_url_digests"]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
