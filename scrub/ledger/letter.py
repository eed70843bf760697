"""The data subject's letter (``scrub requests export ID --format html|text|json``).

Built from :meth:`scrub.ledger.service.Ledger.export` alone: what was asked, when the request was
received, verified and applied, per item the rows each release variant removed, and what the
published removal list lets holders of other copies do. Plain words, short sentences (GDPR Art. 12).
The requester's identity is in the letter only when the caller passes it (``--identity``); item
values are shown, since the letter is for the person who gave them. HTML is rendered with Jinja2
(autoescaped), self-contained: no external resource, print CSS for filing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scrub.errors import UserInputError

#: The formats ``--format`` takes; json is the export's own shape (scripts read it).
FORMATS = ("html", "json", "text")

#: What each request kind is, in words.
KIND_WORDS = {
    "gdpr_erasure": "a request to erase personal data (GDPR Article 17)",
    "copyright": "a copyright takedown request",
    "safety": "a safety report",
    "other": "a takedown request",
}

#: What each item type is, in words a requester understands.
ITEM_WORDS = {
    "url": "web address of an image",
    "url_prefix": "web addresses that start with",
    "host": "every image on the website host",
    "domain": "every image on the website domain",
    "md5": "image file fingerprint (MD5)",
    "sha1": "image file fingerprint (SHA-1)",
    "sha256": "image file fingerprint (SHA-256)",
    "pdq": "image likeness fingerprint (PDQ)",
    "phash": "image likeness fingerprint (pHash)",
    "sample_key": "dataset sample key",
    "caption_term": "words in image captions",
}

#: The state a request ended in other than applied, in words.
_ENDED = {"rejected": "was rejected", "withdrawn": "was withdrawn", "closed": "was closed"}
#: Where an open request stands, in words.
_WAITING = {"received": "We have received it and are checking it. ",
            "verified": "It has been verified and waits for the next release. ",
            "scheduled": "It is scheduled for the next release. "}


@dataclass(frozen=True)
class Removal:
    """The rows one release variant removed that one item matches."""

    release: str
    variant: str
    rows: int


@dataclass(frozen=True)
class LetterItem:
    """One item as recorded (canonical form) and where its rows were removed."""

    number: int
    type: str
    words: str
    value: str
    removals: list[Removal]

    @property
    def matched(self) -> bool:
        return any(r.rows for r in self.removals)


@dataclass(frozen=True)
class Step:
    """A dated step of the request's history, in words."""

    at: str
    action: str
    words: str
    release: str | None = None

    @property
    def when(self) -> str:
        return day(self.at)


@dataclass
class Letter:
    """What the letter says, ready for a template. ``requester`` is None unless asked for."""

    request: int
    kind: str
    kind_words: str
    status: str
    received_at: str
    verified_at: str | None
    applied: list[Step]
    steps: list[Step]
    items: list[LetterItem]
    uncounted: list[str]
    variants: list[str]
    outcome: str
    written_at: str
    requester: dict[str, str] | None = None
    scrub_version: str = ""

    @property
    def received_words(self) -> str:
        return day(self.received_at)

    @property
    def written_words(self) -> str:
        return day(self.written_at)


def check_format(name: str) -> str:
    """``name`` if it is one of :data:`FORMATS`, else a one-line error listing them."""
    if name not in FORMATS:
        raise UserInputError(f"--format must be one of {', '.join(FORMATS)} (got {name!r})")
    return name


def build_letter(export: Mapping[str, Any], *, identity: bool = False,
                 now: dt.datetime | None = None) -> Letter:
    """The letter of one request's export; the requester only with ``identity``."""
    from scrub import __version__

    history = list(export.get("history", []))
    steps = [_step(event) for event in history]
    applied = [s for s in steps if s.action == "apply"]
    verified = next((e["at"] for e in history if e.get("action") == "verify"), None)
    items = [LetterItem(number, printable(item["type"]),
                        ITEM_WORDS.get(str(item["type"]), printable(item["type"])),
                        printable(item["value"]),
                        [Removal(printable(r["release"]), printable(r["variant"]), int(r["rows"]))
                         for r in item.get("rows_removed", [])])
             for number, item in enumerate(export["items"], start=1)]
    counted = {r.release for item in items for r in item.removals}
    variants = sorted({r.variant for item in items for r in item.removals})
    releases = [printable(r) for r in export.get("removed_in_releases", [])]
    requester = export.get("requester") if identity else None
    letter = Letter(
        request=int(export["request"]), kind=printable(export["kind"]),
        kind_words=KIND_WORDS.get(str(export["kind"]), "a request"),
        status=printable(export["status"]), received_at=printable(export["received_at"]),
        verified_at=verified, applied=applied, steps=steps, items=items,
        uncounted=[r for r in releases if r not in counted], variants=variants,
        outcome=_outcome(str(export["status"]), releases),
        written_at=(now or dt.datetime.now(dt.UTC)).isoformat(),
        requester={k: printable(v) for k, v in requester.items()} if requester else None,
        scrub_version=__version__)
    return letter


def _step(event: Mapping[str, Any]) -> Step:
    """One history event in words (its release, for an 'apply')."""
    action = printable(event.get("action"))
    release = printable(event["release"]) if action == "apply" and event.get("release") \
        else None
    words = {
        "created": "Your request was recorded.",
        "duplicate_received": "You asked again; the new items joined this request.",
        "verify": "Your request was verified.",
        "reject": "Your request was rejected.",
        "schedule": "Your request was scheduled for the next release.",
        "apply": f"Release {release} applied your request." if release
                 else "Your request was applied.",
        "close": "Your request was closed.",
        "withdraw": "Your request was withdrawn.",
        "extend": "The deadline to answer your request was extended.",
    }.get(action, f"Recorded: {action}.")
    return Step(printable(event.get("at", "")), action, words,
                printable(release) if release else None)


def _outcome(status: str, releases: Sequence[str]) -> str:
    """One sentence: where the request stands."""
    if releases:
        count = len(releases)
        return (f"Your request has been applied to {count} release"
                f"{'s' if count != 1 else ''}: {', '.join(releases)}.")
    if status in _ENDED:
        return f"Your request {_ENDED[status]} before it was applied to any release."
    return ("Your request has not been applied to any release yet. "
            f"{_WAITING.get(status, '')}We will write again when a release applies it.")


def json_report(export: Mapping[str, Any]) -> dict[str, Any]:
    """The export as ``--format json`` prints it: the export unchanged (scripts read it),
    plus ``verified_at`` and ``applied`` (each release with the time it was recorded)."""
    history = list(export.get("history", []))
    return {**export,
            "verified_at": next((e["at"] for e in history if e.get("action") == "verify"),
                                None),
            "applied": [{"release": e["release"], "at": e["at"]} for e in history
                        if e.get("action") == "apply" and e.get("release")]}


def render(letter: Letter, fmt: str) -> str:
    """The letter as HTML or plain text (``fmt`` ``html`` or ``text``), through the
    templates every document shares (:mod:`scrub.templates`, autoescaped)."""
    from scrub.templates import render as render_template

    return render_template("letter.html.j2" if fmt == "html" else "letter.txt.j2",
                           letter=letter)


def day(iso: str | None) -> str:
    """``2026-11-01T10:00:00+00:00`` as ``1 November 2026, 10:00 UTC``."""
    if not iso:
        return "not recorded"
    try:
        moment = dt.datetime.fromisoformat(iso).astimezone(dt.UTC)
    except ValueError:
        return iso
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


def printable(text: object) -> str:
    """``text`` with control characters replaced: a terminal showing the text letter must
    not act on them (line breaks kept)."""
    return "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in str(text))
