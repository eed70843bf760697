"""Stable reason codes. Each has a fixed bit in the per-row reason bitmask; never renumber."""

from __future__ import annotations

from enum import Enum


class Reason(Enum):
    """Why a row was dropped. The value is ``(code, bit)``; codes appear in reports."""

    CONTENT_HASH = ("content_hash", 0)
    URL_HASH = ("url_hash", 1)
    OPTOUT_URL = ("optout_url", 2)
    OPTOUT_PREFIX = ("optout_prefix", 3)
    OPTOUT_HOST = ("optout_host", 4)
    OPTOUT_DOMAIN = ("optout_domain", 5)
    PERCEPTUAL_HASH = ("perceptual_hash", 6)
    LAION_HASH = ("laion_hash", 7)
    SAMPLE_KEY = ("sample_key", 8)
    CAPTION_TERM = ("caption_term", 9)
    NSFW = ("nsfw", 10)
    # bit 11 ("watermark") was never set by any rule and is retired: never reuse it
    GDPR_ERASURE = ("gdpr_erasure", 12)
    COPYRIGHT = ("copyright", 13)
    SAFETY = ("safety", 14)
    OTHER_REQUEST = ("other_request", 15)
    RELEASE_REMOVAL = ("release_removal", 16)

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def bit(self) -> int:
        return self.value[1]

    @property
    def mask(self) -> int:
        return 1 << self.bit

    @classmethod
    def from_mask(cls, mask: int) -> list[Reason]:
        """The reasons whose bits are set in ``mask``."""
        return [r for r in cls if mask & r.mask]
