"""What stands between a client and the handlers: body limits checked before a body is read,
security headers on every response, rate limits per client address, signed cookies and CSRF
tokens, and a last handler that answers 500 without logging an exception's message (it can
quote a value).

Cookies: the session cookie is ``token.mac`` (HMAC under a key derived from the ledger key);
the anonymous ``scrub_csrf`` cookie is a random value. Both are HttpOnly, SameSite=Strict, Path=/
and Secure when the request came over TLS. A form's CSRF token is the HMAC of the csrf cookie
and the session token: a form from another site, or from another session, does not carry it.
"""

from __future__ import annotations

import collections
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("scrub.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "scrub_session"
CSRF_COOKIE = "scrub_csrf"
#: Pages load nothing from elsewhere: one stylesheet of our own, no script, no frame.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class _TooLarge(Exception):
    pass


class Guard:
    """The outermost ASGI layer: body limits (``big_paths`` get ``big``, others ``small``),
    security headers, and a plain 500 for anything a handler let through."""

    def __init__(self, app: ASGIApp, *, big: int, small: int, big_paths: frozenset[str]
                 ) -> None:
        self.app, self.big, self.small, self.big_paths = app, big, small, big_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.big if scope["path"] in self.big_paths else self.small
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            await _plain(send, 413, "The request is too large.")
            return
        exchange = _Exchange(scope, receive, send, limit)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except _TooLarge:
            pass
        except Exception as exc:  # noqa: BLE001 - never a message: it may quote a value
            log.error("internal error (%s) on %s %s", type(exc).__name__, scope.get("method"),
                      scope.get("path"))
            if not exchange.started and not exchange.too_large:
                await _plain(send, 500, "Something went wrong on our side; please try "
                             "again later.")
        if exchange.too_large and not exchange.started:
            await _plain(send, 413, "The request is too large.")


class _Exchange:
    """One request's messages: the body counted against ``limit`` (past it, the app's own
    answer, such as Starlette's 500 for the exception, is dropped for a 413), the response
    given the security headers."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        self.scope, self._receive, self._send, self.limit = scope, receive, send, limit
        self.seen, self.started, self.too_large = 0, False, False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.too_large = True
                raise _TooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.too_large:
            return
        if message["type"] == "http.response.start":
            self.started = True
            message["headers"] = _secured(message.get("headers") or [], self.scope)
        await self._send(message)


def _secured(headers: list[Any], scope: Scope) -> list[Any]:
    out = [h for h in headers if h[0].lower() not in {k for k, _ in HEADERS}]
    out.extend(HEADERS)
    if scope.get("scheme") == "https":
        out.append((b"strict-transport-security", b"max-age=31536000"))
    return out


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()), (b"connection", b"close"), *HEADERS]})
    await send({"type": "http.response.body", "body": body})


class RateLimit:
    """At most ``count`` events per ``window`` seconds per key (a client address), in this
    process's memory (one server process; behind several, limit at the proxy too). Memory is
    bounded: past ``keys`` addresses the oldest are forgotten."""

    def __init__(self, count: int, window: float, *, keys: int = 100_000) -> None:
        self.count, self.window, self.keys = count, window, keys
        self._seen: collections.OrderedDict[str, collections.deque[float]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            times = self._seen.pop(key, None) or collections.deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            allowed = len(times) < self.count
            if allowed:
                times.append(now)
            self._seen[key] = times
            while len(self._seen) > self.keys:
                self._seen.popitem(last=False)
            return allowed


def client_address(request: Request) -> str:
    """What rate limits count: the client's address as the server sees it (the proxy's, unless
    ``scrub serve`` is told to trust its forwarded headers: ``--forwarded-allow-ips``); an IPv6
    address by its /64, which one client holds whole."""
    host = request.client.host if request.client else "unknown"
    if ":" in host:
        import ipaddress

        try:
            return str(ipaddress.ip_network(f"{host}/64", strict=False))
        except ValueError:
            return host
    return host


class Cookies:
    """Signing and checking the session cookie, and CSRF tokens (keys derived from the
    ledger key, so every server process of one ledger agrees)."""

    def __init__(self, session_key: bytes, csrf_key: bytes) -> None:
        self._session_key, self._csrf_key = session_key, csrf_key

    def session_value(self, token: str) -> str:
        return f"{token}.{self._mac(self._session_key, token)}"

    def session_token(self, request: Request) -> str | None:
        """The session token of a request's cookie when its signature checks."""
        value = request.cookies.get(SESSION_COOKIE, "")
        token, _, mac = value.rpartition(".")
        if not token or not hmac.compare_digest(mac, self._mac(self._session_key, token)):
            return None
        return token

    def csrf_seed(self, request: Request) -> tuple[str, bool]:
        """(the csrf cookie's value, whether it must be set on the response)."""
        value = request.cookies.get(CSRF_COOKIE, "")
        if len(value) == 43 and value.replace("-", "").replace("_", "").isalnum():
            return value, False
        return secrets.token_urlsafe(32), True

    def csrf_token(self, seed: str, session_token: str | None) -> str:
        return self._mac(self._csrf_key, f"{seed}\x00{session_token or ''}")

    def csrf_ok(self, request: Request, sent: object) -> bool:
        seed = request.cookies.get(CSRF_COOKIE, "")
        if not seed or not isinstance(sent, str):
            return False
        expected = self.csrf_token(seed, self.session_token(request))
        return hmac.compare_digest(sent.encode(), expected.encode())

    @staticmethod
    def _mac(key: bytes, text: str) -> str:
        return hmac.new(key, text.encode(), "sha256").hexdigest()


def set_cookie(response: Response, request: Request, name: str, value: str, *,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
