"""Who gets in, and for how long: automatic logoff, sign-out, limits on guessing join
links, API tokens and passwords, the security headers, and logs without tokens. The
real application on real SQLite; time is moved by moving the stored times back."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from clinicconf import audit, keys
from clinicconf.app import create_app
from clinicconf.config import ConfigError, Settings, load_settings
from clinicconf.db import from_db_time, to_db_time, utc_now
from clinicconf.security import new_token
from clinicconf.throttle import (
    API_TOKEN_FAILURES_PER_ADDRESS,
    FAILURES_PER_ACCOUNT,
    LINK_FAILURES_PER_ADDRESS,
    WINDOW_SECONDS,
)
from clinicconf.web.logging import RedactingAccessLogger, RedactTokens
from clinicconf.web.middleware import SESSION_COOKIE

from ..support.accounts import ADMIN_PASSWORD, STAFF_PASSWORD, Account, make_account
from ..support.api import api
from ..support.pages import Conference, get, schedule, sign_in, submit
from ..support.servers import AiohttpClient, wait_until

Client = TestClient[web.Request, web.Application]

IDLE_MINUTES = 5
CLIENT_ADDRESS = "127.0.0.1"


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # A test may set more: @pytest.mark.parametrize("settings", [{...}], indirect=True).
    return replace(settings, session_idle_minutes=IDLE_MINUTES, **getattr(request, "param", {}))


async def last_used(app: web.Application, moment: datetime) -> None:
    """As if the (only) session had last been used at `moment`."""
    await app[keys.DATABASE].execute("UPDATE sessions SET last_seen_at = ?", (to_db_time(moment),))


async def last_seen(app: web.Application) -> datetime:
    row = await app[keys.DATABASE].fetchone("SELECT last_seen_at FROM sessions")
    assert row is not None
    return from_db_time(row["last_seen_at"])


async def session_count(app: web.Application) -> int:
    row = await app[keys.DATABASE].fetchone("SELECT count(*) AS n FROM sessions")
    assert row is not None
    return int(row["n"])


async def audited(app: web.Application, action: str) -> list[tuple[Any, ...]]:
    """Who did `action` to whom, with the details, oldest first."""
    return [
        (r["actor_kind"], r["actor_id"], r["subject_kind"], r["subject_id"],
         json.loads(r["detail"] or "{}"))
        for r in await audit.entries(app[keys.DATABASE])
        if r["action"] == action
    ]  # fmt: skip


def assert_security_headers(headers: Mapping[str, str]) -> None:
    policy = {
        name: sources.strip()
        for name, _, sources in (
            directive.strip().partition(" ")
            for directive in headers["Content-Security-Policy"].split(";")
        )
    }
    # Scripts only from the site's own files: no inline script, no eval.
    assert policy.get("script-src", policy["default-src"]) == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


# --- automatic logoff and sign-out ------------------------------------------------------


def test_the_idle_time_is_a_setting_within_sane_bounds() -> None:
    assert load_settings().session_idle_minutes == 15
    set_by_env = load_settings(None, {"CLINICCONF_SESSION_IDLE_MINUTES": "30"})
    assert set_by_env.session_idle_minutes == 30
    for bad in ("1", "721", "soon"):
        with pytest.raises(ConfigError, match="session_idle_minutes"):
            load_settings(None, {"CLINICCONF_SESSION_IDLE_MINUTES": bad})


async def test_an_idle_session_ends_and_sign_in_says_why_and_goes_back(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    assert (await get(client, "/patients")).status == 200

    await last_used(app, utc_now() - timedelta(minutes=IDLE_MINUTES))
    sent_away = await get(client, "/patients")
    assert sent_away.location == "/signin?next=/patients&signed_out=idle"
    assert await session_count(app) == 0
    assert await audited(app, "signed_out") == [("staff", admin.id, None, None, {"reason": "idle"})]

    assert sent_away.location is not None
    sign_in_page = await get(client, sent_away.location)
    assert f"You were signed out after {IDLE_MINUTES} minutes without activity." in (
        sign_in_page.text
    )
    assert '<input type="hidden" name="next" value="/patients">' in sign_in_page.text
    # The old cookie opens nothing now, and says nothing more.
    assert (await get(client, "/patients")).location == "/signin?next=/patients"


async def test_a_page_asking_for_json_is_told_it_was_signed_out(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    await last_used(app, utc_now() - timedelta(minutes=IDLE_MINUTES + 1))
    async with client.get("/patients", headers={"Accept": "application/json"}) as resp:
        assert resp.status == 401
        error = (await resp.json())["error"]
    assert error["message"] == f"You were signed out after {IDLE_MINUTES} minutes without activity."


async def test_activity_keeps_a_session_open_and_is_written_at_most_once_a_minute(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    # Three requests, each just within the idle time of the one before: far longer
    # than the idle time in all, and still signed in.
    for _ in range(3):
        await last_used(app, utc_now() - timedelta(minutes=IDLE_MINUTES - 1))
        assert (await get(client, "/patients")).status == 200
        assert utc_now() - await last_seen(app) < timedelta(minutes=1)

    # Used less than a minute ago: a request writes nothing.
    recently = utc_now() - timedelta(seconds=40)
    await last_used(app, recently)
    assert (await get(client, "/patients")).status == 200
    assert await last_seen(app) == recently


async def test_a_recording_page_asking_by_itself_does_not_keep_a_session_open(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    a_while_ago = utc_now() - timedelta(minutes=IDLE_MINUTES - 1)
    await last_used(app, a_while_ago)
    # The page's poll of a recording's state (none has this id) is no sign of anyone.
    as_the_page_does = {"Accept": "application/json"}
    async with client.get("/recordings/999/status", headers=as_the_page_does) as resp:
        assert resp.status == 404
    assert await last_seen(app) == a_while_ago
    await last_used(app, utc_now() - timedelta(minutes=IDLE_MINUTES))
    async with client.get("/recordings/999/status", headers=as_the_page_does) as resp:
        assert resp.status == 401  # the page reloads, onto the sign-in page


async def test_a_session_ends_after_twelve_hours_however_busy(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    await app[keys.DATABASE].execute("UPDATE sessions SET expires_at = ?", (to_db_time(utc_now()),))
    assert (await get(client, "/patients")).location == "/signin?next=/patients"


async def test_sign_out_deletes_the_session_so_its_cookie_opens_nothing(
    client: Client, app: web.Application, admin: Account
) -> None:
    await sign_in(client, admin)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE].value
    signed_out = await submit(client, "/patients", {}, action="/signout")
    assert signed_out.location == "/signin"
    assert await session_count(app) == 0
    assert await audited(app, "signed_out") == [("staff", admin.id, None, None, {})]

    # A copy of the cookie kept from before (another tab, a stolen value) is refused.
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: cookie})
    assert (await get(client, "/patients")).location == "/signin?next=/patients"


# --- limits on guessing -----------------------------------------------------------------


async def test_guessing_join_links_is_stopped_alike_for_every_link(
    client: Client, app: web.Application, conference: Conference
) -> None:
    # A link that exists is no failure, however often it is opened: patients behind
    # one router never use up the allowance.
    for _ in range(LINK_FAILURES_PER_ADDRESS):
        assert (await get(client, conference.patient_path)).status == 200

    for attempt in range(LINK_FAILURES_PER_ADDRESS - 1):
        page = await get(client, f"/{'jp'[attempt % 2]}/{new_token()}")
        assert page.status == 404
        assert "This link is not valid" in page.text
    # The pages' sockets count too: the last failure is an unknown link's socket.
    socket = await client.ws_connect(f"/j/{new_token()}/ws")
    await socket.receive()
    assert socket.close_code == 4404

    # Now every link from this address gets the same refusal, so the answer cannot
    # tell which ones exist.
    expected = "Too many attempts from your network. Try again in 15 minutes."
    answers = []
    for path in (f"/j/{new_token()}", conference.patient_path, conference.public_path):
        async with client.get(path) as resp:
            assert resp.status == 429
            assert 0 < int(resp.headers["Retry-After"]) <= WINDOW_SECONDS
            assert_security_headers(resp.headers)
            answers.append(await resp.text())
    assert expected in answers[0]
    assert answers[0] == answers[1] == answers[2]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(conference.patient_path + "/ws")
    assert refused.value.status == 429
    # No reverse proxy is trusted: an address the guesser writes in is no way out.
    async with client.get(conference.patient_path, headers=forwarded_for("198.51.100.4")) as resp:
        assert resp.status == 429

    assert await audited(app, "locked_out") == [
        ("system", None, None, None,
         {"credential": "join_link", "by": "address", "address": CLIENT_ADDRESS}),
    ]  # fmt: skip
    # Staff can still sign in from there: each limit covers its own way in.
    assert (await get(client, "/signin")).status == 200


def forwarded_for(addresses: str) -> dict[str, str]:
    return {"X-Forwarded-For": addresses}


async def guess_links(client: Client, times: int, address: str) -> None:
    for _ in range(times):
        async with client.get(f"/j/{new_token()}", headers=forwarded_for(address)) as resp:
            assert resp.status == 404


async def opens(client: Client, path: str, addresses: str) -> int:
    async with client.get(path, headers=forwarded_for(addresses)) as resp:
        return resp.status


# The test client plays the clinic's reverse proxy, on this machine.
BEHIND_A_PROXY: Final = {"trusted_proxies": CLIENT_ADDRESS}


@pytest.mark.parametrize("settings", [BEHIND_A_PROXY], indirect=True)
async def test_behind_a_trusted_proxy_each_client_counts_alone(
    client: Client, app: web.Application, conference: Conference
) -> None:
    await guess_links(client, LINK_FAILURES_PER_ADDRESS, "203.0.113.9")
    assert await opens(client, conference.patient_path, "203.0.113.9") == 429
    # What the guesser writes in front of what the proxy appended changes nothing.
    assert await opens(client, conference.patient_path, "198.51.100.4, 203.0.113.9") == 429
    # Everyone else the proxy relays still gets in: the patient at home, the clinic.
    assert await opens(client, conference.patient_path, "198.51.100.4") == 200
    assert await opens(client, conference.public_path, "192.0.2.20") == 200
    assert [detail["address"] for *_, detail in await audited(app, "locked_out")] == ["203.0.113.9"]

    # An IPv6 guesser counts by the /64 it may pick addresses from at will.
    half = LINK_FAILURES_PER_ADDRESS // 2
    await guess_links(client, half, "2001:db8:0:1::a")
    await guess_links(client, LINK_FAILURES_PER_ADDRESS - half, "2001:db8:0:1::b")
    assert await opens(client, conference.patient_path, "2001:db8:0:1::c") == 429
    assert await opens(client, conference.patient_path, "2001:db8:0:2::1") == 200


async def test_guessing_api_tokens_is_stopped_with_retry_after(
    client: Client, app: web.Application, admin: Account
) -> None:
    # Calls without any token are no guesses.
    for _ in range(API_TOKEN_FAILURES_PER_ADDRESS):
        async with client.get("/api/v1/staff") as resp:
            assert resp.status == 401
    wrong = {"Authorization": f"Bearer {new_token()}"}
    for _ in range(API_TOKEN_FAILURES_PER_ADDRESS - 1):
        async with client.get("/api/v1/staff", headers=wrong) as resp:
            assert resp.status == 401
    assert (await api(client, admin, "GET", "/staff"))[0] == 200
    async with client.get("/api/v1/staff", headers=wrong) as resp:
        assert resp.status == 401

    for headers in (wrong, admin.auth):
        async with client.get("/api/v1/staff", headers=headers) as resp:
            assert resp.status == 429
            assert 0 < int(resp.headers["Retry-After"]) <= WINDOW_SECONDS
            assert await resp.json() == {
                "error": {
                    "code": "too_many_requests",
                    "message": "Too many wrong API tokens from this address."
                    " Try again in 15 minutes.",
                    "field": None,
                }
            }
    assert await audited(app, "locked_out") == [
        ("system", None, None, None,
         {"credential": "api_token", "by": "address", "address": CLIENT_ADDRESS}),
    ]  # fmt: skip


async def test_a_locked_account_is_in_the_audit_log_once_without_the_guesses(
    client: Client, app: web.Application, admin: Account
) -> None:
    for attempt in range(FAILURES_PER_ACCOUNT):
        await submit(client, "/signin", {"email": admin.email, "password": f"guess {attempt}"})
    right = await submit(client, "/signin", {"email": admin.email, "password": ADMIN_PASSWORD})
    assert right.status == 429

    lockouts = await audited(app, "locked_out")
    assert lockouts == [
        ("system", None, "staff", admin.id,
         {"credential": "password", "by": "account", "address": CLIENT_ADDRESS}),
    ]  # fmt: skip
    assert "guess" not in str(lockouts) and admin.email not in str(lockouts)


# --- headers and logs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"),
    [("page", 200), ("static file", 200), ("error", 404), ("redirect", 303)],
)
async def test_every_kind_of_answer_carries_the_security_headers(
    client: Client, conference: Conference, kind: str, status: int
) -> None:
    path = {
        "page": conference.public_path,
        "static file": "/static/page.js",
        "error": f"/j/{new_token()}",
        "redirect": "/patients",
    }[kind]
    async with client.get(path, allow_redirects=False) as resp:
        assert resp.status == status
        assert_security_headers(resp.headers)


async def test_the_logs_show_join_links_with_the_token_masked(
    aiohttp_client: AiohttpClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Started here: aiohttp_client's server_kwargs never reach the server's runner.
    server = TestServer(create_app(settings))
    await server.start_server(access_log_class=RedactingAccessLogger)
    client = await aiohttp_client(server)
    admin = await make_account(server.app, "Ada", "ada@clinic.test", ADMIN_PASSWORD, admin=True)
    staff = await make_account(server.app, "Sam", "sam@clinic.test", STAFF_PASSWORD, admin=False)
    conference = await schedule(server.app, admin, staff, timedelta(minutes=-5))
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    tokens = [path.split("/")[-1] for path in (conference.patient_path, conference.public_path)]

    assert (await get(client, conference.patient_path)).status == 200
    assert (await get(client, f"/p/{new_token()}")).status == 404
    socket = await client.ws_connect(conference.public_path + "/ws")
    await socket.close()

    def access_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]

    async def socket_logged() -> bool:
        return any("/ws" in line for line in access_lines())

    await wait_until(socket_logged)  # written once the server has closed its side
    # "127.0.0.1 GET /j/[token] 200 3ms": the method, path and status.
    requests = [line.split(" ")[1:4] for line in access_lines()]
    assert requests == [
        ["GET", "/j/[token]", "200"],
        ["GET", "/p/[token]", "404"],
        ["GET", "/p/[token]/ws", "101"],
    ]

    # A request line aiohttp cannot read: its error log quotes the line, token and
    # all, unless the handler has the filter the server's log handlers get.
    caplog.handler.addFilter(RedactTokens())
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"GET {conference.patient_path}\x01 HTTP/1.1\r\nHost: clinic\r\n\r\n".encode())
    assert (await reader.read()).startswith(b"HTTP/1.0 400")
    writer.close()
    assert "Error handling request" in caplog.text and "/j/[token]" in caplog.text
    assert not any(token in caplog.text for token in tokens)
