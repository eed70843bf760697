"""What ``scrub serve`` is configured with: the ledger, and the limits on what a client may
send (checked before a body is read whole)."""

from __future__ import annotations

from dataclasses import dataclass

from scrub.ledger.service import Ledger


@dataclass(frozen=True)
class Limits:
    """Limits on input. ``body``: the intake form's whole body (the image and the fields);
    ``small_body``: every other form; rates: per client address per window (``intake``:
    requests recorded; ``intake_posts``: forms sent, a wrong field included)."""

    body: int = 11 * 2**20
    small_body: int = 64 * 2**10
    image_bytes: int = 10 * 2**20
    image_pixels: int = 40_000_000
    items: int = 50
    field_chars: int = 5_000
    intake_per_hour: int = 10
    intake_posts_per_hour: int = 60
    status_per_10_minutes: int = 30
    sign_in_per_10_minutes: int = 10


@dataclass(frozen=True)
class ServeConfig:
    ledger: Ledger
    limits: Limits = Limits()
