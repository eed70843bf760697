"""What a release needs of the ledger, as protocols, and the ledger's side of a release: the
items of requests a previous release did not apply, and marking applied the requests a
published release's signed manifests name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scrub.release.signed import Location, read_signed_manifest
from scrub.release.stats import rows_per_item

if TYPE_CHECKING:
    from scrub.release.publish import BuildResult

#: A ledger item: (request id, request kind, item type, canonical value).
Item = tuple[int, str, str, str]


class ItemSeal(Protocol):
    """Keys the ledger's item digests (:class:`scrub.ledger.sealing.IdentitySeal`)."""

    def item_digest(self, type_name: str, value: str) -> str: ...


class ReleaseLedger(Protocol):
    """The ledger as a release plan reads it: the enforced items, the watermark the manifest
    anchors, and the seal that labels items (None: items are not counted)."""

    @property
    def seal(self) -> ItemSeal | None: ...

    def enforced_items(self) -> Iterable[Item]: ...

    def watermark(self) -> tuple[int, str]: ...


class AppliesReleases(ReleaseLedger, Protocol):
    """A ledger that records which release applied its requests."""

    def mark_applied(self, request_ids: Sequence[int], release: str, actor: str, *,
                     reason: str | None = None,
                     rows: Mapping[int, Mapping[str, Mapping[str, int]]] | None = None
                     ) -> list[int]: ...


class NewItems:
    """A ledger view offering only the items of requests a previous release did not apply."""

    def __init__(self, ledger: ReleaseLedger, items: list[Item],
                 watermark: tuple[int, str]) -> None:
        self.items, self._watermark = items, watermark
        self._seal = ledger.seal  # labels the items (see scrub.release.plan)

    @property
    def seal(self) -> ItemSeal | None:
        return self._seal

    def enforced_items(self) -> list[Item]:
        return self.items

    def watermark(self) -> tuple[int, str]:
        return self._watermark


def manifest_requests(folders: Mapping[str, Location],
                      public_key: Ed25519PublicKey) -> dict[int, set[str]]:
    """The ledger requests the signed manifests of a release's variants (name -> folder) say
    it applied, each with the variants that name it."""
    requests: dict[int, set[str]] = {}
    for name, folder in folders.items():
        record = read_signed_manifest(folder, public_key).get("ledger") or {}
        for request in record.get("requests", []):
            requests.setdefault(int(request), set()).add(name)
    return requests


def mark_release_applied(ledger: AppliesReleases, published: BuildResult,
                         public_key: Ed25519PublicKey) -> list[int]:
    """Mark applied, by ``published``, the requests its signed manifests name; each one's
    event records, per variant naming it, the rows removed per item. Idempotent: a rerun after
    a kill records nothing twice. The ids that moved."""
    named = manifest_requests(published.variants, public_key)
    counted = rows_per_item(published.stats)
    rows = {request: {variant: counted.get(request, {}).get(variant, {})
                      for variant in sorted(variants)}
            for request, variants in named.items()}
    return ledger.mark_applied(sorted(named), published.release_id, "release-builder",
                               rows=rows)
