"""The intake form: fields to a :class:`~scrub.ledger.service.RequestSpec`, or a message per
field (naming the line of a bad URL, never echoing it into a log). The image is read from
memory (the body limit bounds it), hashed (MD5, SHA-256 and, when its quality allows, PDQ) and
dropped: it is never written anywhere."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartParser
from starlette.requests import Request

from scrub.errors import ScrubError
from scrub.ledger.service import RequestSpec
from scrub.ledger.specs import check_text, normalize_item
from scrub.ledger.vocabulary import KINDS
from scrub.web.config import Limits

#: The fields the form has (what is kept and shown again when a field is wrong).
FIELDS = ("name", "email", "kind", "urls", "caption_term", "statement", "consent")
#: A PDQ hash below this quality matches too much to be used (ThreatExchange's advice).
PDQ_MIN_QUALITY = 50


class _InMemoryParser(MultiPartParser):
    """Starlette's parser with the file kept in memory up to the body limit (its default
    spools past 1 MiB to a temporary file: the image must never reach a disk)."""

    spool_max_size = 64 * 2**20


class FormError(Exception):
    """The body is not a form this page takes (too many fields or files, a part too large)."""


async def read_form(request: Request, limits: Limits) -> FormData:
    """The posted form (multipart or urlencoded); FormError for one out of bounds."""
    from starlette.formparsers import MultiPartException

    kind = request.headers.get("content-type", "")
    try:
        if kind.startswith("multipart/form-data"):
            parser = _InMemoryParser(request.headers, request.stream(), max_files=1,
                                     max_fields=len(FIELDS) + 4,
                                     max_part_size=limits.field_chars * 4)
            form = await parser.parse()
        else:
            form = await request.form(max_files=0, max_fields=len(FIELDS) + 8,
                                      max_part_size=limits.field_chars * 4)
    except MultiPartException:
        raise FormError("the form is not one this page sends") from None
    for _, value in form.multi_items():
        if isinstance(value, UploadFile) and not isinstance(value.file, SpooledTemporaryFile):
            raise FormError("unexpected upload")
    return form


@dataclass
class Intake:
    """A filled-in form: the request to record, or the messages per field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    spec: RequestSpec | None = None
    statement: str = ""
    notices: list[str] = field(default_factory=list)


def text_of(form: FormData, name: str, limits: Limits) -> str:
    value = form.get(name)
    return value[:limits.field_chars] if isinstance(value, str) else ""


async def parse_intake(form: FormData, limits: Limits) -> Intake:
    """Check every field; hash the image (in a worker thread: it decodes)."""
    from starlette.concurrency import run_in_threadpool

    values = {name: text_of(form, name, limits) for name in FIELDS}
    intake = Intake(values)
    errors = intake.errors
    _check_text_fields(values, errors, form, limits)
    items: list[tuple[str, str]] = []
    lines = [line.strip() for line in values["urls"].splitlines()]
    for number, line in enumerate(lines, start=1):
        if line:
            item = _item("url", line, f"line {number}")
            if isinstance(item, str):
                errors.setdefault("urls", item)
            else:
                items.append(item)
    term = values["caption_term"].strip()
    if term:
        item = _item("caption_term", term, "the caption term")
        if isinstance(item, str):
            errors["caption_term"] = item
        else:
            items.append(item)
    upload = form.get("image")
    if isinstance(upload, UploadFile) and (upload.filename or upload.size):
        found = await run_in_threadpool(_image_items, upload, limits, intake.notices)
        if isinstance(found, str):
            errors["image"] = found
        else:
            items.extend(found)
    if not items and not errors:
        errors["urls"] = "name at least one image: a web address, a caption term or an image"
    if len(items) > limits.items:
        errors["urls"] = f"at most {limits.items} items in one request; send several requests"
    if not errors:
        intake.spec = RequestSpec(values["kind"], dt.datetime.now(dt.UTC), values["name"].strip(),
                                  values["email"].strip(), list(dict.fromkeys(items)),
                                  notes=f"filed through the web intake form (consent "
                                        f"{_consent_version()})")
        intake.statement = values["statement"].strip()
    return intake


def _check_text_fields(values: dict[str, str], errors: dict[str, str], form: FormData,
                       limits: Limits) -> None:
    for name in FIELDS:
        raw = form.get(name)
        if isinstance(raw, str) and len(raw) > limits.field_chars:
            errors[name] = f"at most {limits.field_chars} characters"
        try:
            check_text(values[name], name)
        except ScrubError:
            errors[name] = "holds a control character; remove it"
    if not values["name"].strip():
        errors["name"] = "your name is needed to verify the request"
    email = values["email"].strip()
    if "@" not in email or " " in email or len(email) > 320 or email.startswith("@") \
            or email.endswith("@"):
        errors["email"] = "an email address is needed (we write to it about the request)"
    if values["kind"] not in KINDS:
        errors["kind"] = "choose what kind of request this is"
    if values["consent"] != "yes":
        errors["consent"] = "the request cannot be processed without this consent"


def _item(type_name: str, value: str, where: str) -> tuple[str, str] | str:
    """(type, canonical value), or the message for the field."""
    try:
        return normalize_item({"type": type_name, "value": value}, where)
    except ScrubError:
        what = "a web address (http:// or https://)" if type_name == "url" else "valid text"
        return f"{where} is not {what}"


def _image_items(upload: UploadFile, limits: Limits, notices: list[str]
                 ) -> list[tuple[str, str]] | str:
    """The image's hash items, or the message for the field. The bytes are read from memory
    and dropped."""
    from scrub.images.hashing import OK, TOO_LARGE, hash_image

    data: Any = upload.file.read(limits.image_bytes + 1)
    upload.file.close()
    if len(data) > limits.image_bytes:
        return f"the image is larger than {limits.image_bytes // 2**20} MiB"
    if not data:
        return "the image file is empty"
    hashes = hash_image(bytes(data), ("md5", "sha256", "pdq"), max_pixels=limits.image_pixels)
    del data
    if hashes["status"] == TOO_LARGE:
        return f"the image has more than {limits.image_pixels:,} pixels"
    if hashes["status"] != OK:
        return "the file is not an image we can read (JPEG, PNG, GIF, WebP, ...)"
    items = [("md5", str(hashes["md5"])), ("sha256", str(hashes["sha256"]))]
    quality = hashes.get("pdq_quality")
    if isinstance(quality, int) and quality >= PDQ_MIN_QUALITY:
        items.append(("pdq", str(hashes["pdq"])))
    else:
        notices.append("The image has too little detail for a likeness fingerprint (PDQ); "
                       "only exact copies of the file will be found.")
    return items


def _consent_version() -> str:
    from scrub.ledger.receipts import CONSENT_VERSION

    return CONSENT_VERSION
