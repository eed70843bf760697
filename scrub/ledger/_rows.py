"""Bulk row work of :class:`scrub.ledger.service.Ledger`'s transactions: requests by id,
the requesters' earlier items, item inserts straight to the driver (figures in
docs/design/ledger.md)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from scrub.ledger.models import Item, Request

_CHUNK = 50_000


def requests_by_id(session: Session, wanted: Sequence[int]) -> dict[int, Request]:
    """The stored requests among ``wanted``, by id (queried 2,000 ids at a time)."""
    found: dict[int, Request] = {}
    for start in range(0, len(wanted), 2_000):
        chunk = wanted[start:start + 2_000]
        found.update((r.id, r) for r in session.scalars(
            select(Request).where(Request.id.in_(chunk))))
    return found


def earlier_items(session: Session, lookups: set[str]
                   ) -> tuple[dict[tuple[str, str], int], dict[int, set[str]]]:
    """For the requesters of a batch: (requester hash, item digest) -> the first request
    (not withdrawn) naming it, and the item digests of each of those requests."""
    owner: dict[tuple[str, str], int] = {}
    members: dict[int, set[str]] = {}
    wanted = sorted(lookups)
    for start in range(0, len(wanted), 2_000):
        query = (select(Request.requester_hash, Item.digest, Request.id)
                 .join(Item, Item.request_id == Request.id)
                 .where(Request.requester_hash.in_(wanted[start:start + 2_000]),
                        Request.status != "withdrawn"))
        for lookup, digest, request_id in session.execute(query):
            key = (lookup, digest)
            owner[key] = min(owner.get(key, request_id), request_id)
            members.setdefault(request_id, set()).add(digest)
    return owner, members


def insert_items(session: Session, items: Sequence[tuple[int, str, str, bytes]]) -> None:
    """Plain rows straight to the driver's executemany (bulk import: docs/design/ledger.md)."""
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = (f"INSERT INTO {Item.__tablename__} (request_id, type, digest, sealed) "
           f"VALUES ({mark}, {mark}, {mark}, {mark})")
    for start in range(0, len(items), _CHUNK):
        connection.exec_driver_sql(sql, list(items[start:start + _CHUNK]))
