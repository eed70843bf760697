"""Admin pages: staff accounts (list, add, unlock) and the full ledger check."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from scrub.errors import ScrubError
from scrub.ledger.staff import StaffMember
from scrub.ledger.vocabulary import STAFF_ROLES
from scrub.web.console import _known, posted, staff_only
from scrub.web.forms import text_of
from scrub.web.site import Site, redirect


async def _users(request: Request, site: Site, member: StaffMember, *,
                 error: str | None = None, status: int = 200) -> Response:
    users = await run_in_threadpool(site.staff.users)
    return site.page(request, "users.html.j2", status=status, member=member, users=users,
                     roles=STAFF_ROLES, error=error,
                     done=_known(request.query_params.get("done"), ("added", "unlocked")))


async def _add_user(request: Request, site: Site, member: StaffMember) -> Response:
    form = await posted(request, site, member)
    if isinstance(form, Response):
        return form
    limits = site.config.limits
    name, role = text_of(form, "name", limits), text_of(form, "role", limits)
    password = text_of(form, "password", limits)
    try:
        await run_in_threadpool(site.staff.add_user, name, role, password, member.name)
    except ScrubError as exc:
        return await _users(request, site, member, error=exc.message, status=400)
    return redirect("/console/users?done=added")


async def _unlock(request: Request, site: Site, member: StaffMember) -> Response:
    form = await posted(request, site, member)
    if isinstance(form, Response):
        return form
    name = request.path_params.get("name", "")
    try:
        await run_in_threadpool(site.staff.unlock, name, member.name)
    except ScrubError as exc:
        return await _users(request, site, member, error=exc.message, status=404)
    return redirect("/console/users?done=unlocked")


async def _ledger(request: Request, site: Site, member: StaffMember) -> Response:
    report = await run_in_threadpool(site.config.ledger.verify)
    return site.page(request, "ledger.html.j2", member=member, report=report)


async def _activity(request: Request, site: Site, member: StaffMember) -> Response:
    from sqlalchemy.orm import Session

    from scrub.ledger.review import account_events

    def read() -> list[dict[str, object]]:
        with Session(site.config.ledger.engine) as session:
            return account_events(session)

    events = await run_in_threadpool(read)
    return site.page(request, "activity.html.j2", member=member, events=events)


users_page = staff_only(_users, admin=True)
activity_page = staff_only(_activity, admin=True)
add_user = staff_only(_add_user, admin=True)
unlock = staff_only(_unlock, admin=True)
ledger_page = staff_only(_ledger, admin=True)
