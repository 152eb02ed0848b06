"""What every request passes through: security headers, who is asking, CSRF, and
the mapping of domain errors to HTML pages or JSON."""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from .. import accounts, keys
from ..accounts import StaffUser
from ..errors import AuthenticationRequired, ClinicConfError, PermissionDenied
from ..scheduling import Scheduler
from ..security import new_token, tokens_equal
from .rendering import render

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "clinicconf_session"
CSRF_COOKIE: Final = "clinicconf_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
API_PREFIX: Final = "/api/"
_UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    # A join link's token is in the URL: never send it on to another site.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Pages hold health information and links: no shared or back-button cache.
    "Cache-Control": "no-store",
    # The conference pages will need the camera and microphone; nothing else does.
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(), payment=()",
}
HSTS: Final = "max-age=31536000"


def is_api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX)


def wants_json(request: web.Request) -> bool:
    """The API, and the pages' own fetch() calls, get errors as JSON."""
    return is_api(request) or request.headers.get("Accept", "").startswith("application/json")


def scheduler_of(request: web.Request) -> Scheduler:
    """The door every view goes through to read or change the clinic's schedule."""
    return request.app[keys.SCHEDULER]


def current_user(request: web.Request) -> StaffUser:
    """The signed-in staff member (or API token holder); raises when there is none."""
    user: StaffUser | None = request.get(keys.USER)
    if user is None:
        raise AuthenticationRequired("Please sign in.")
    return user


def json_error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "field": field}}, status=status
    )


def secure_cookies(request: web.Request) -> bool:
    return request.app[keys.SETTINGS].public_base_url.startswith("https://")


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(request),
    )


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, redirects, errors and static files included (an
    on_response_prepare signal, which no handler or exception can bypass)."""
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if secure_cookies(request):
        response.headers.setdefault("Strict-Transport-Security", HSTS)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AuthenticationRequired as exc:
        if wants_json(request):
            return json_error(exc.status, exc.code, exc.message, exc.field)
        raise web.HTTPSeeOther(URL("/signin").with_query(next=request.path_qs)) from exc
    except ClinicConfError as exc:
        if wants_json(request):
            return json_error(exc.status, exc.code, exc.message, exc.field)
        return render(request, "error.html", status=exc.status, message=exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if wants_json(request):
            code = exc.reason.lower().replace(" ", "_")
            return json_error(exc.status, code, exc.reason)
        return render(request, "error.html", status=exc.status, message=exc.reason)


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    db = request.app[keys.DATABASE]
    user: StaffUser | None = None
    if is_api(request):
        # The API takes bearer tokens only, never the browser's cookie: no CSRF there.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            user = await accounts.api_token_user(db, token.strip())
        if user is None and request.path != "/api/v1/openapi.json":
            raise AuthenticationRequired("A valid API token is required (Authorization: Bearer).")
    elif session_token := request.cookies.get(SESSION_COOKIE):
        user = await accounts.session_user(db, session_token)
    if user is not None:
        request[keys.USER] = user
    return await handler(request)


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Double-submit: a state-changing form or fetch must echo the cookie's value,
    which another site can neither read nor set."""
    if is_api(request):
        return await handler(request)
    cookie = request.cookies.get(CSRF_COOKIE)
    if request.method in _UNSAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            sent = str((await request.post()).get(CSRF_FIELD, ""))
        if not cookie or not sent or not tokens_equal(cookie, sent):
            raise PermissionDenied(
                "This form has expired. Please go back, reload the page and try again."
            )
    request[keys.CSRF_TOKEN] = cookie or new_token()
    response = await handler(request)
    if cookie is None:
        response.set_cookie(
            CSRF_COOKIE,
            request[keys.CSRF_TOKEN],
            httponly=True,
            samesite="Strict",
            secure=secure_cookies(request),
        )
    return response
