"""What every request passes through: security headers, who is asking (and how often
they have guessed wrong), CSRF, and domain errors answered as HTML pages or JSON
(web/protocol.py says how)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Final, Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from yarl import URL

from .. import accounts, keys
from ..accounts import StaffUser
from ..config import IPNetwork
from ..errors import AuthenticationRequired, ClinicConfError, PermissionDenied, ServerBusy
from ..scheduling import Scheduler
from ..security import new_token, tokens_equal
from ..throttle import Credential, RecentFailures, TooManyAttempts, record_lockout
from .protocol import error_answer
from .rendering import render

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "clinicconf_session"
CSRF_COOKIE: Final = "clinicconf_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
API_PREFIX: Final = "/api/"
_UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Set on a request whose session has just ended for want of activity.
SIGNED_OUT_IDLE: Final = web.RequestKey("signed_out_idle", bool)
# The routes a join link's token opens, pages and websockets (views/join.py, lobby.py).
_LINK_ROUTES: Final[dict[str, Literal["personal", "public"]]] = {
    "/j/{token}": "personal",
    "/j/{token}/ws": "personal",
    "/p/{token}": "public",
    "/p/{token}/ws": "public",
}
# What a page asks for by itself, every few seconds, with nobody at the screen: no
# activity, or a workstation left on a recording's page would never be signed out.
_ASKED_BY_ITSELF: Final = frozenset({"/recordings/{recording_id}/status"})

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
        raise AuthenticationRequired(
            idle_sign_out_message(request) if request.get(SIGNED_OUT_IDLE) else "Please sign in."
        )
    return user


def idle_sign_out_message(request: web.Request) -> str:
    minutes = request.app[keys.SETTINGS].session_idle_minutes
    return f"You were signed out after {minutes} minutes without activity."


def client_address(request: web.Request) -> str:
    """Who failures are counted against, and who a removed guest was: the client's
    address (see forwarded_client). An IPv6 client counts by its /64, the block a
    household or an office is given to pick its addresses from at will."""
    address = request.remote or ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


@web.middleware
async def forwarded_client(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request relayed by a trusted reverse proxy (settings.trusted_proxies) comes
    from the address the proxy forwarded; anyone else's X-Forwarded-For is ignored, as
    a client may write whatever it likes there."""
    proxies = request.app[keys.SETTINGS].trusted_proxy_networks
    if proxies and _within(request.remote, proxies):
        client = _forwarded_for(request.headers.getall(hdrs.X_FORWARDED_FOR, []), proxies)
        if client is not None:
            request = request.clone(remote=client)
    return await handler(request)


def _forwarded_for(values: Sequence[str], proxies: tuple[IPNetwork, ...]) -> str | None:
    """The nearest address in X-Forwarded-For that is not a trusted proxy: each proxy
    appends the address it was reached from, so those further left are the client's
    own claims. None when there is no such address, or it is not one."""
    hops = [hop.strip() for value in values for hop in value.split(",")]
    for hop in reversed(hops):
        if not _within(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return None
    return None


def _within(address: str | None, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(parsed in network for network in networks)


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
            return _json_error_of(exc)
        query = {"next": request.path_qs}
        if request.get(SIGNED_OUT_IDLE):
            query["signed_out"] = "idle"  # the sign-in page says why
        raise web.HTTPSeeOther(URL("/signin").with_query(query)) from exc
    except TooManyAttempts as exc:
        return _try_later(request, exc, exc.retry_after_seconds, "Too many attempts")
    except ServerBusy as exc:
        return _try_later(request, exc, exc.retry_after_seconds, "The server is busy")
    except ClinicConfError as exc:
        if wants_json(request):
            return _json_error_of(exc)
        answer = error_answer(exc)
        return render(request, "error.html", status=answer.status, message=answer.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if wants_json(request):
            code = exc.reason.lower().replace(" ", "_")
            response = json_error(exc.status, code, exc.reason)
        else:
            response = render(request, "error.html", status=exc.status, message=exc.reason)
        if hdrs.ALLOW in exc.headers:  # a 405 says which methods the route has
            response.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
        return response


def _json_error_of(exc: ClinicConfError) -> web.Response:
    answer = error_answer(exc)
    return json_error(answer.status, answer.code, answer.message, answer.field)


def _try_later(
    request: web.Request, exc: ClinicConfError, seconds: int, title: str
) -> web.Response:
    response = (
        _json_error_of(exc)
        if wants_json(request)
        else render(
            request, "error.html", status=error_answer(exc).status, title=title, message=exc.message
        )
    )
    response.headers["Retry-After"] = str(seconds)
    return response


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    db = request.app[keys.DATABASE]
    user: StaffUser | None = None
    if is_api(request):
        # The API takes bearer tokens only, never the browser's cookie: no CSRF there.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            user = await _api_token_user(request, token.strip())
        if user is None and request.path != "/api/v1/openapi.json":
            raise AuthenticationRequired("A valid API token is required (Authorization: Bearer).")
    elif session_token := request.cookies.get(SESSION_COOKIE):
        try:
            user = await accounts.session_user(
                db,
                session_token,
                request.app[keys.SETTINGS].session_idle,
                activity=_route_of(request) not in _ASKED_BY_ITSELF,
            )
        except accounts.SessionIdle:
            request[SIGNED_OUT_IDLE] = True
    if (link_kind := _link_route_kind(request)) is not None:
        await _count_unknown_link(request, link_kind)
    if user is not None:
        request[keys.USER] = user
    return await handler(request)


def _link_route_kind(request: web.Request) -> Literal["personal", "public"] | None:
    return _LINK_ROUTES.get(_route_of(request) or "")


def _route_of(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


def _refuse_while_locked_out(failures: RecentFailures, address: str, what: str) -> None:
    if seconds := failures.seconds_to_wait(address):
        raise TooManyAttempts(what, seconds)


async def _count_failure(
    request: web.Request, failures: RecentFailures, credential: Credential, address: str
) -> None:
    if failures.failed(address):
        await record_lockout(request.app[keys.DATABASE], credential, "address", address)


async def _api_token_user(request: web.Request, token: str) -> StaffUser | None:
    failures = request.app[keys.GUESSING_THROTTLE].api_tokens
    address = client_address(request)
    _refuse_while_locked_out(failures, address, "Too many wrong API tokens from this address.")
    user = await accounts.api_token_user(request.app[keys.DATABASE], token)
    if user is None:
        await _count_failure(request, failures, "api_token", address)
    return user


async def _count_unknown_link(request: web.Request, kind: Literal["personal", "public"]) -> None:
    """Before a join link's page or socket: refused alike for every token while the
    address is locked out; an unknown token counts against it. The views look the
    token up again themselves (open_join_link takes the application, not the request)."""
    failures = request.app[keys.GUESSING_THROTTLE].join_links
    address = client_address(request)
    _refuse_while_locked_out(failures, address, "Too many attempts from your network.")
    link = await scheduler_of(request).links.resolve(
        request.app[keys.DATABASE], request.match_info["token"], kind
    )
    if link is None:
        await _count_failure(request, failures, "join_link", address)


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
