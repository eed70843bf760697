"""The ASGI application of ``scrub serve``: routes, and the guard around them."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from scrub.templates import FOLDER
from scrub.web import admin, console, public
from scrub.web.config import ServeConfig
from scrub.web.guards import ASGIApp, Guard
from scrub.web.site import Site

#: The one stylesheet (served by us: pages load nothing from elsewhere).
STYLE = (FOLDER / "web" / "style.css").read_text(encoding="utf-8")


async def _home(_request: Request) -> Response:
    return RedirectResponse("/request", status_code=303)


async def _health(_request: Request) -> Response:
    """For a proxy's or orchestrator's health check: the process answers (no database work)."""
    return Response("ok\n", media_type="text/plain")


async def _style(_request: Request) -> Response:
    return Response(STYLE, media_type="text/css; charset=utf-8")


def routes() -> list[Route]:
    both = ["GET", "POST"]
    base = "/console/requests/{request_id:int}"
    return [
        Route("/", _home),
        Route("/style.css", _style),
        Route("/healthz", _health),
        Route("/request", public.request_form, methods=both),
        Route("/status", public.status_page, methods=both),
        Route("/login", console.login, methods=both),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/console", console.requests_page),
        Route("/console/find", console.find, methods=["POST"]),
        Route(base, console.request_page),
        Route(base + "/letter", console.letter_download),
        Route(base + "/{action}", console.act, methods=["POST"]),
        Route("/console/users", admin.users_page),
        Route("/console/users", admin.add_user, methods=["POST"]),
        Route("/console/users/{name}/unlock", admin.unlock, methods=["POST"]),
        Route("/console/ledger", admin.ledger_page),
        Route("/console/activity", admin.activity_page),
    ]


def create_app(config: ServeConfig) -> ASGIApp:
    """The application for one ledger (which must hold its key: intake seals, console opens)."""
    config.ledger.check_key()
    app = Starlette(routes=routes())
    app.state.site = Site.build(config)
    return Guard(app, big=config.limits.body, small=config.limits.small_body,
                 big_paths=frozenset({"/request"}))
