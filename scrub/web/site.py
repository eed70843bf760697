"""What every handler shares: the ledger's services, the cookies, the rate limits, and
rendering a page with its CSRF token (setting the csrf cookie the first time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from scrub.ledger.receipts import Intake
from scrub.ledger.staff import Staff, StaffMember
from scrub.templates import render
from scrub.web.config import ServeConfig
from scrub.web.guards import CSRF_COOKIE, Cookies, RateLimit, set_cookie


@dataclass
class Site:
    config: ServeConfig
    staff: Staff
    intake: Intake
    cookies: Cookies
    intake_rate: RateLimit
    intake_posts_rate: RateLimit
    status_rate: RateLimit
    sign_in_rate: RateLimit

    @classmethod
    def build(cls, config: ServeConfig) -> Site:
        seal = config.ledger.require_seal()
        limits = config.limits
        return cls(config, Staff(config.ledger), Intake(config.ledger),
                   Cookies(seal.derived("web-session-cookie"), seal.derived("web-csrf")),
                   RateLimit(limits.intake_per_hour, 3600),
                   RateLimit(limits.intake_posts_per_hour, 3600),
                   RateLimit(limits.status_per_10_minutes, 600),
                   RateLimit(limits.sign_in_per_10_minutes, 600))

    async def member(self, request: Request) -> StaffMember | None:
        """The signed-in staff member, or None."""
        token = self.cookies.session_token(request)
        if token is None:
            return None
        return await run_in_threadpool(self.staff.member, token)

    def page(self, request: Request, template: str, *, status: int = 200,
             member: StaffMember | None = None, **context: Any) -> HTMLResponse:
        """A page rendered with the form token its forms carry."""
        seed, fresh = self.cookies.csrf_seed(request)
        token = self.cookies.csrf_token(seed, self.cookies.session_token(request))
        html = render(f"web/{template}", csrf=token, member=member, **context)
        response = HTMLResponse(html, status_code=status)
        if fresh:
            set_cookie(response, request, CSRF_COOKIE, seed)
        return response

    def refused(self, request: Request, message: str, *, status: int,
                member: StaffMember | None = None) -> HTMLResponse:
        return self.page(request, "message.html.j2", status=status, member=member,
                         title="Not possible", message=message)

    def csrf_refused(self, request: Request, member: StaffMember | None = None) -> HTMLResponse:
        return self.refused(request, "This form expired or did not come from this site. Go "
                            "back, reload the page and send it again.", status=403,
                            member=member)


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def too_many(site: Site, request: Request) -> Response:
    response = site.refused(request, "Too many attempts from your address. Please wait a "
                            "while and try again.", status=429)
    response.headers["retry-after"] = "600"
    return response
