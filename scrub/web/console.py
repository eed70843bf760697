"""The staff console: sign-in and sign-out, the request list (overdue first, filters by status
and kind), a request's page (items, statement, history, chain check) and the lifecycle
actions, recorded with the signed-in member as actor. Identities are opened for admins only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from scrub.errors import ScrubError
from scrub.ledger._lifecycle import TRANSITIONS
from scrub.ledger.review import PAGE, check_request_history, page, same_requester
from scrub.ledger.specs import OPEN
from scrub.ledger.staff import SESSION_FOR, SignInError, StaffMember
from scrub.ledger.vocabulary import KINDS, STATUSES
from scrub.web.forms import FormError, read_form, text_of
from scrub.web.guards import SESSION_COOKIE, client_address, set_cookie
from scrub.web.site import Site, redirect, too_many

#: The actions a request's page offers ('apply' is the release builder's), in words.
ACTION_WORDS = {
    "verify": "the requester and the items are checked: releases remove them from now on",
    "reject": "the request is not valid (say why)",
    "schedule": "planned for the next release",
    "extend": "more time to answer (at most 90 days after receipt, with a reason)",
    "withdraw": "the requester withdrew the request",
    "close": "the request is done",
}
ACTIONS = tuple(ACTION_WORDS)
Handler = Callable[[Request, Site, StaffMember], Awaitable[Response]]
Route = Callable[[Request], Awaitable[Response]]


def staff_only(handler: Handler, *, admin: bool = False) -> Route:
    """A route for signed-in staff (``admin``: admins only); others go to the sign-in page
    (a signed-in reviewer asking for an admin page gets 403)."""

    async def route(request: Request) -> Response:
        site: Site = request.app.state.site
        member = await site.member(request)
        if member is None:
            return redirect("/login")
        if admin and not member.is_admin:
            return site.refused(request, "This page is for admins.", status=403, member=member)
        return await handler(request, site, member)

    return route


async def posted(request: Request, site: Site, member: StaffMember | None
                 ) -> FormData | Response:
    """The posted form once its CSRF token checks; else the response refusing it."""
    try:
        form = await read_form(request, site.config.limits)
    except FormError:
        return site.refused(request, "The form could not be read.", status=400, member=member)
    if not site.cookies.csrf_ok(request, form.get("csrf")):
        return site.csrf_refused(request, member)
    return form


async def login(request: Request) -> Response:
    site: Site = request.app.state.site
    if request.method == "GET":
        return site.page(request, "login.html.j2", error=None, user_name="")
    form = await posted(request, site, None)
    if isinstance(form, Response):
        return form
    if not site.sign_in_rate.allow(client_address(request)):
        return too_many(site, request)
    name = text_of(form, "name", site.config.limits)
    password = text_of(form, "password", site.config.limits)
    try:
        _member, token = await run_in_threadpool(site.staff.sign_in, name, password)
    except SignInError as exc:
        return site.page(request, "login.html.j2", status=401, error=str(exc), user_name=name)
    response = redirect("/console")
    set_cookie(response, request, SESSION_COOKIE, site.cookies.session_value(token),
               max_age=int(SESSION_FOR.total_seconds()))
    return response


async def _logout(request: Request, site: Site, member: StaffMember) -> Response:
    form = await posted(request, site, member)
    if isinstance(form, Response):
        return form
    token = site.cookies.session_token(request)
    if token:
        await run_in_threadpool(site.staff.sign_out, token, member)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def _requests(request: Request, site: Site, member: StaffMember) -> Response:
    status = request.query_params.get("status") or None
    kind = request.query_params.get("kind") or None
    status = status if status in STATUSES else None
    kind = kind if kind in KINDS else None
    number = _int(request.query_params.get("page"), 1)
    overdue = request.query_params.get("overdue") == "1"

    def read() -> tuple[list[Any], int]:
        with Session(site.config.ledger.engine) as session:
            return page(session, status=status, kind=kind, overdue_only=overdue, number=number)

    rows, total = await run_in_threadpool(read)
    return site.page(request, "console.html.j2", member=member, rows=rows, total=total,
                     status_filter=status or "", kind_filter=kind or "", statuses=STATUSES,
                     kinds=KINDS, overdue=overdue, number=number, not_found=False,
                     pages=max(1, -(-total // PAGE)))


async def _find(request: Request, site: Site, member: StaffMember) -> Response:
    """A request by the reference code its requester quotes (the code's digest, as stored)."""
    form = await posted(request, site, member)
    if isinstance(form, Response):
        return form
    request_id = await run_in_threadpool(site.intake.find, text_of(form, "code",
                                                                    site.config.limits))
    if request_id is None:
        return site.page(request, "console.html.j2", status=404, member=member, rows=[],
                         total=0, status_filter="", kind_filter="", statuses=STATUSES,
                         kinds=KINDS, overdue=False, number=1, pages=1, not_found=True)
    return redirect(f"/console/requests/{request_id}")


async def _request(request: Request, site: Site, member: StaffMember, *,
                   error: str | None = None, status: int = 200) -> Response:
    request_id = _int(request.path_params.get("request_id"), 0)
    ledger = site.config.ledger

    def read() -> dict[str, Any]:
        view = ledger.show(request_id, items=True, identity=member.is_admin)
        with Session(ledger.engine) as session:
            chain = check_request_history(session, ledger.require_seal(), request_id)
            repeats = same_requester(session, request_id)
        return {"view": view, "chain": chain, "repeats": repeats,
                "history": [_event(e) for e in view.history],
                "statements": site.intake.statements(request_id)}

    try:
        found = await run_in_threadpool(read)
    except ScrubError as exc:
        return site.refused(request, exc.message, status=404, member=member)
    allowed = [a for a in ACTIONS if a == "extend" and found["view"].status in OPEN
               or a in TRANSITIONS and found["view"].status in TRANSITIONS[a][0]]
    return site.page(request, "request_detail.html.j2", status=status, member=member,
                     actions=allowed, action_words=ACTION_WORDS, error=error,
                     done=_known(request.query_params.get("done"), ACTIONS), **found)


async def _act(request: Request, site: Site, member: StaffMember) -> Response:
    form = await posted(request, site, member)
    if isinstance(form, Response):
        return form
    request_id = _int(request.path_params.get("request_id"), 0)
    action = request.path_params.get("action", "")
    if action not in ACTIONS:
        return site.refused(request, "No such action.", status=404, member=member)
    limits = site.config.limits
    reason = text_of(form, "reason", limits).strip() or None
    ledger = site.config.ledger

    def act() -> None:
        if action == "extend":
            ledger.extend(request_id, member.name, reason=reason or "",
                          days=_int(text_of(form, "days", limits), 0))
        else:
            ledger.transition(request_id, action, member.name, reason=reason)

    try:
        await run_in_threadpool(act)
    except ScrubError as exc:
        return await _request(request, site, member, error=exc.message, status=409)
    return redirect(f"/console/requests/{request_id}?done={action}")


async def _letter(request: Request, site: Site, member: StaffMember) -> Response:
    from scrub.ledger import letter

    request_id = _int(request.path_params.get("request_id"), 0)
    fmt = request.query_params.get("format", "html")
    identity = request.query_params.get("identity") == "1"
    if fmt not in ("html", "text"):
        return site.refused(request, "The letter is html or text.", status=400, member=member)
    if identity and not member.is_admin:
        return site.refused(request, "Only admins see identities.", status=403, member=member)

    def build() -> str:
        export = site.config.ledger.export(request_id, identity=identity)
        return letter.render(letter.build_letter(export, identity=identity), fmt)

    try:
        text = await run_in_threadpool(build)
    except ScrubError as exc:
        return site.refused(request, exc.message, status=404, member=member)
    suffix, media = ("html", "text/html") if fmt == "html" else ("txt", "text/plain")
    return Response(text, media_type=f"{media}; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="request-{request_id}-letter.{suffix}"'})


def _event(event: dict[str, Any]) -> dict[str, Any]:
    """An event as the history table shows it: what changed, in a few words (digests of
    items and requesters stay out)."""
    before, after = event.get("before") or {}, event.get("after") or {}
    parts = []
    if after.get("status"):
        parts.append(f"{before.get('status') or 'new'} -> {after['status']}")
    if "due_at" in after:
        parts.append(f"due {str(after['due_at'])[:10]}")
    for key, label in (("reason", "reason"), ("release", "release")):
        if event.get(key):
            parts.append(f"{label}: {event[key]}")
    if event.get("items") or event.get("items_added"):
        parts.append(f"{len(event.get('items') or event.get('items_added') or [])} item(s)")
    return {"seq": event.get("seq"), "at": event.get("at"), "actor": event.get("actor"),
            "action": event.get("action"), "detail": "; ".join(parts)}


def _known(value: str | None, known: tuple[str, ...]) -> str | None:
    """``value`` when it is one of ``known`` (a ``?done=`` never echoes other text)."""
    return value if value in known else None


def _int(text: object, default: int) -> int:
    try:
        value = int(str(text))
    except ValueError:
        return default
    return value if 0 < value < 2**31 else default


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


logout = staff_only(_logout)
requests_page = staff_only(_requests)
request_page = staff_only(_request)
act = staff_only(_act)
letter_download = staff_only(_letter)
find = staff_only(_find)
