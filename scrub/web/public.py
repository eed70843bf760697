"""The data subject's pages: ``/request`` (file a request) and ``/status`` (its status, from
the reference code and the email together)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from scrub.ledger.letter import KIND_WORDS
from scrub.ledger.receipts import CONSENT_VERSION
from scrub.ledger.vocabulary import KINDS
from scrub.web.forms import FIELDS, FormError, parse_intake, read_form, text_of
from scrub.web.guards import client_address
from scrub.web.site import Site, too_many

#: What the consent box says (its version is recorded with each request).
CONSENT_TEXT = (
    "I confirm that the information I give is true, that I am the person named in these "
    "images or may act for them or for the rights holder, and I agree that the maintainers "
    "keep my name, email and statement (encrypted) to process this request and to write to "
    "me about it.")
#: Request kinds in the form, in words.
KIND_CHOICES = [(kind, KIND_WORDS[kind]) for kind in KINDS]


def _form(site: Site, request: Request, *, values: dict[str, str] | None = None,
          errors: dict[str, str] | None = None, status: int = 200) -> Response:
    return site.page(request, "request.html.j2", status=status,
                     values=values or dict.fromkeys(FIELDS, ""), errors=errors or {},
                     kinds=KIND_CHOICES, consent_text=CONSENT_TEXT,
                     consent_version=CONSENT_VERSION, limits=site.config.limits)


async def request_form(request: Request) -> Response:
    site: Site = request.app.state.site
    if request.method == "GET":
        return _form(site, request)
    try:
        form = await read_form(request, site.config.limits)
    except FormError:
        return site.refused(request, "The form could not be read. Reload the page and send it "
                            "again.", status=400)
    if not site.cookies.csrf_ok(request, form.get("csrf")):
        return site.csrf_refused(request)
    address = client_address(request)
    if not site.intake_posts_rate.allow(address):  # bounds the image decoding a client causes
        return too_many(site, request)
    intake = await parse_intake(form, site.config.limits)
    if intake.spec is None:  # a wrong field does not use up the requests allowed
        return _form(site, request, values=intake.values, errors=intake.errors, status=400)
    if not site.intake_rate.allow(address):
        return too_many(site, request)
    receipt = await run_in_threadpool(site.intake.file, intake.spec, intake.statement)
    view = await run_in_threadpool(site.config.ledger.show, receipt.request_id)
    return site.page(request, "receipt.html.j2", code=receipt.code, view=view,
                     notices=intake.notices)


async def status_page(request: Request) -> Response:
    site: Site = request.app.state.site
    if request.method == "GET":
        return site.page(request, "status.html.j2", view=None, code="", email="", unknown=False)
    try:
        form = await read_form(request, site.config.limits)
    except FormError:
        return site.refused(request, "The form could not be read.", status=400)
    if not site.cookies.csrf_ok(request, form.get("csrf")):
        return site.csrf_refused(request)
    if not site.status_rate.allow(client_address(request)):
        return too_many(site, request)
    limits = site.config.limits
    code, email = text_of(form, "code", limits), text_of(form, "email", limits)
    view = await run_in_threadpool(site.intake.status, code, email)
    return site.page(request, "status.html.j2", status=200 if view else 404, view=view,
                     code=code, email=email, unknown=view is None)
