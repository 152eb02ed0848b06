"""Who reaches what (issue 7, "Access"): every route and every websocket message
against every role, in two tables with the answer each cell should get.

The roles: an administrator, a staff member of the event and one who is not on it
(each signed in, with an API token for /api/v1; only the first two change the event or
hand out its links, issue 13), a patient holding only their join
link, a public guest holding only the public link, and someone signed out. A join
link's routes are asked by the holder of a link in each state: usable, not open yet,
over, cancelled, withdrawn (the event no longer has it), unknown, or of the other kind
(a public token on /j/, a personal one on /p/).

Unsafe requests carry a valid CSRF token whenever the browser has the cookie: what is
tested is who may, not CSRF (one row shows a missing token refused). A request that
would create something is sent incomplete: only a caller past the role check gets the
form's own complaint (422), and nothing is made. One that uses up what it acts on
(cancelling, deleting) gets a thing of its own (NEW); one that ends the visitor's
session, a browser of its own (`fresh`).

A route or a message type without rows fails test_every_route_and_message_has_rows.
Every cell asks the same server: accounts cost argon2 time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from clinicconf import keys
from clinicconf.accounts import StaffUser
from clinicconf.app import create_app
from clinicconf.bench import clip
from clinicconf.config import Settings
from clinicconf.db import utc_now
from clinicconf.links import LinkKind
from clinicconf.recording.files import COMPOSED
from clinicconf.schedule import Event, EventInput, EventType, EventTypeInput, PatientInput
from clinicconf.security import new_token
from clinicconf.web.middleware import CSRF_HEADER
from clinicconf.web.views import lobby

from ..support.accounts import ADMIN_PASSWORD, STAFF_PASSWORD, Account, make_account
from ..support.clinic import csrf_token, sign_in
from ..support.lobby import RECEIVE_TIMEOUT, Page
from ..support.recordings import Media, compose, recording_of
from ..support.servers import LOOPBACK_ICE

pytestmark = pytest.mark.asyncio(loop_scope="module")

Client = TestClient[web.Request, web.Application]
LinkRoute = Literal["personal", "public"]

STAFF: Final = ("admin", "event_staff", "other_staff")
OUTSIDERS: Final = ("patient", "guest", "signed_out")
ROLES: Final = STAFF + OUTSIDERS
# Who holds a usable link of the event, by kind of link; the states of one that is not.
LINK_HOLDERS: Final[dict[LinkRoute, tuple[str, ...]]] = {
    "personal": ("patient", "event_staff", "admin"),
    "public": ("guest",),
}
CLOSED_LINKS: Final = ("early", "expired", "cancelled", "withdrawn", "unknown", "wrong_kind")
# A path parameter's value in a cell that uses up what it acts on: made for it alone.
NEW: Final = "new"
SETUP_TOKEN: Final = new_token()  # whichever: setup is over once an account exists


@dataclass(frozen=True)
class Answer:
    """What a cell should get: a status and, where it matters, where a redirect leads,
    a phrase of the body (of a websocket: the first message's type), or the code a
    websocket is closed with. `{name}` is filled in as in the path (World.values)."""

    status: int
    to: str | None = None
    says: str = ""
    closes: int | None = None


OK: Final = Answer(200)
INCOMPLETE: Final = Answer(422)
SIGN_IN: Final = Answer(303, to="/signin?next={path}")
UNAUTHENTICATED: Final = Answer(401, says='"code": "unauthenticated"')
ONLY_ADMIN: Final = Answer(403, says="Only an administrator can do this.")
NO_RECORDING: Final = Answer(404, says="No such recording.")
SETUP_DONE: Final = Answer(410, says="Setup is already done")
LISTS_RECORDING: Final = Answer(200, says='href="/recordings/{recording_id}?')
HIDES_RECORDING: Final = Answer(200, says="not shown to you")
NOT_ON_EVENT_PAGE: Final = Answer(
    403, says="Only the event&#39;s staff and administrators can do this."
)
NOT_ON_EVENT_JSON: Final = Answer(403, says='"code": "forbidden"')
NOT_VALID: Final = Answer(404, says="This link is not valid")
CLOSED_PAGE: Final = {
    "early": Answer(403, says="This link is not open yet"),
    "expired": Answer(410, says="This conference has ended"),
    "cancelled": Answer(410, says="This conference was cancelled"),
    "withdrawn": NOT_VALID,
    "unknown": NOT_VALID,
    "wrong_kind": NOT_VALID,
}
# docs/lobby-protocol.md, "Connecting": the socket opens, and is closed with a code.
CLOSED_SOCKET: Final = {
    state: Answer(101, closes=code)
    for state, code in {
        "early": 4403,
        "expired": 4411,
        "cancelled": 4410,
        "withdrawn": 4404,
        "unknown": 4404,
        "wrong_kind": 4404,
    }.items()
}
WELCOMED: Final = Answer(101, says="welcome")


def joins_as(name: str) -> Answer:
    return Answer(200, says=f"You are joining as <strong>{name}</strong>")


def by_role(
    admin: Answer, event_staff: Answer, other_staff: Answer, outsiders: Answer
) -> dict[str, Answer]:
    staff = {"admin": admin, "event_staff": event_staff, "other_staff": other_staff}
    return staff | dict.fromkeys(OUTSIDERS, outsiders)


def any_staff(answer: Answer, outsiders: Answer) -> dict[str, Answer]:
    return by_role(answer, answer, answer, outsiders)


def staff_page(answer: Answer = OK) -> dict[str, Answer]:
    """Any staff member; everyone else is sent to sign in, and back here after."""
    return any_staff(answer, SIGN_IN)


def staff_json(answer: Answer = OK) -> dict[str, Answer]:
    """The API, and the pages' fetch() calls: any staff member; a 401 for the rest."""
    return any_staff(answer, UNAUTHENTICATED)


def event_staff_page(answer: Answer = OK) -> dict[str, Answer]:
    """Changing an event, through its pages: its staff and the administrators."""
    return by_role(answer, answer, NOT_ON_EVENT_PAGE, SIGN_IN)


def event_staff_json(answer: Answer = OK) -> dict[str, Answer]:
    """Changing an event or handing out its links, from the pages' scripts or the API."""
    return by_role(answer, answer, NOT_ON_EVENT_JSON, UNAUTHENTICATED)


def admin_only(answer: Answer, refused: Answer, outsiders: Answer) -> dict[str, Answer]:
    return by_role(answer, refused, refused, outsiders)


def recording(answer: Answer = OK, outsiders: Answer = SIGN_IN) -> dict[str, Answer]:
    """The event's staff and the administrators; to other staff it does not exist."""
    return by_role(answer, answer, NO_RECORDING, outsiders)


def anyone(answer: Answer) -> dict[str, Answer]:
    return dict.fromkeys(ROLES, answer)


@dataclass(frozen=True)
class Route:
    """A route as aiohttp names it ("METHOD /canonical/path"), each role's answer, and
    what the request sends."""

    name: str
    answers: Mapping[str, Answer]
    args: Mapping[str, str] = field(default_factory=dict)  # path parameters; else defaults
    form: Mapping[str, str] | None = None
    json: Any = None
    query: str = ""
    fresh: bool = False  # the request ends the visitor's session

    @property
    def method(self) -> str:
        return self.name.split(" ")[0]

    @property
    def path(self) -> str:
        return self.name.split(" ")[1]

    @property
    def link(self) -> LinkRoute | None:
        """For a join link's routes, the kind of link that opens them."""
        if self.path.startswith("/j/"):
            return "personal"
        if self.path.startswith("/p/"):
            return "public"
        return None

    @property
    def socket(self) -> bool:
        return self.path.endswith("/ws")


ROUTES: Final = [
    # Signing in and out, and first-run setup: the same for everyone.
    Route("GET /signin", any_staff(Answer(303, to="/"), Answer(200, says="Sign in"))),
    Route(
        "POST /signin",
        anyone(Answer(400, says="Email or password is incorrect.")),
        # An address of each role's own: five failures lock an account out.
        form={"email": "{role}@nowhere.test", "password": "not the password"},
    ),
    Route("POST /signout", anyone(Answer(303, to="/signin")), form={}, fresh=True),
    Route("GET /setup/{token}", anyone(SETUP_DONE), args={"token": SETUP_TOKEN}),
    Route("POST /setup/{token}", anyone(SETUP_DONE), args={"token": SETUP_TOKEN}, form={}),
    # The staff's pages: any staff member. Only administrators add staff and event types.
    Route("GET /", staff_page()),
    Route("GET /staff", staff_page()),
    Route(
        "POST /staff",
        admin_only(
            INCOMPLETE, Answer(403, says="Only an administrator can add staff members."), SIGN_IN
        ),
        form={},
    ),
    Route("GET /patients", staff_page()),
    Route("POST /patients", staff_page(INCOMPLETE), form={}),
    Route(
        "GET /patients/{patient_id}",
        by_role(LISTS_RECORDING, LISTS_RECORDING, HIDES_RECORDING, SIGN_IN),
    ),
    Route("GET /event-types", staff_page()),
    Route("POST /event-types", admin_only(INCOMPLETE, ONLY_ADMIN, SIGN_IN), form={}),
    Route("GET /events/new", staff_page()),
    Route("POST /events", staff_page(INCOMPLETE), form={}),
    Route(
        "GET /events/{event_id}",
        by_role(LISTS_RECORDING, LISTS_RECORDING, HIDES_RECORDING, SIGN_IN),
    ),
    Route("GET /events/{event_id}/edit", event_staff_page()),
    Route("POST /events/{event_id}/edit", event_staff_page(INCOMPLETE), form={}),
    Route("GET /events/{event_id}/cancel", event_staff_page()),
    Route(
        "POST /events/{event_id}/cancel",
        event_staff_page(Answer(303, to="/events/{event_id}?cancelled=1")),
        args={"event_id": NEW},
        form={},
    ),
    # The event page's scripts.
    Route(
        "POST /events/{event_id}/people/{kind}/{person_id}/link",
        event_staff_json(Answer(200, says="/j/")),
        json={},
    ),
    Route(
        "POST /events/{event_id}/people/{kind}/{person_id}/send",
        event_staff_json(Answer(202, says='"channel": "email"')),
        json={"channel": "email"},
    ),
    # A staff member's own link: a host's, so only for those who may change the event
    # (Ada, an administrator not on it, gets one of her own).
    Route("POST /events/{event_id}/my-link", event_staff_json(Answer(200, says="/j/")), json={}),
    Route(
        "POST /events/{event_id}/public-link", event_staff_json(Answer(200, says="/p/")), json={}
    ),
    # Recordings.
    Route("GET /recordings/{recording_id}", recording()),
    Route("GET /recordings/{recording_id}/status", recording(Answer(200, says='"ready"'))),
    Route("GET /recordings/{recording_id}/files/{name}", recording()),
    Route("GET /recordings/{recording_id}/delete", recording()),
    Route(
        "POST /recordings/{recording_id}/delete",
        recording(Answer(303, to="/patients/{patient_id}?recording_deleted=1")),
        args={"recording_id": NEW},
        form={},
    ),
    # Join links: the link is the credential, whoever holds it.
    Route(
        "GET /j/{token}",
        {
            "patient": joins_as("Pat Patel"),
            "event_staff": joins_as("Sam Staff"),
            "admin": joins_as("Ada Admin"),  # a link of her own: she is not on the event
        }
        | CLOSED_PAGE,
    ),
    Route("GET /j/{token}/ws", dict.fromkeys(LINK_HOLDERS["personal"], WELCOMED) | CLOSED_SOCKET),
    Route("GET /p/{token}", {"guest": Answer(200, says="data-public")} | CLOSED_PAGE),
    Route(
        "POST /p/{token}",
        {"guest": Answer(200, says="You will join as <strong>Gail Guest</strong>")} | CLOSED_PAGE,
        form={"display_name": "Gail Guest"},
    ),
    Route("GET /p/{token}/ws", {"guest": WELCOMED} | CLOSED_SOCKET),
    # The JSON API (docs/api.md): any staff member's token.
    Route("GET /api/v1/openapi.json", anyone(Answer(200, says='"openapi"'))),
    Route("GET /api/v1/staff", staff_json()),
    Route(
        "POST /api/v1/staff",
        admin_only(INCOMPLETE, ONLY_ADMIN, UNAUTHENTICATED),
        json={"name": "Nora New", "email": "not an address"},
    ),
    Route("GET /api/v1/patients", staff_json()),
    Route(
        "POST /api/v1/patients", staff_json(INCOMPLETE), json={"name": " ", "record_number": "R-9"}
    ),
    Route("GET /api/v1/event-types", staff_json()),
    Route(
        "POST /api/v1/event-types",
        admin_only(INCOMPLETE, ONLY_ADMIN, UNAUTHENTICATED),
        json={"name": "Yoga", "video_conferencing": False, "public_conference": True},
    ),
    Route(
        "GET /api/v1/events",
        staff_json(),
        query="from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
    ),
    Route(
        "POST /api/v1/events",
        staff_json(INCOMPLETE),
        json={
            "title": "Check-up",
            "event_type_id": 999_999,
            "start": "2030-01-01T10:00:00Z",
            "end": "2030-01-01T11:00:00Z",
            "staff_ids": [],
            "patient_ids": [],
        },
    ),
    Route("GET /api/v1/events/{event_id}", staff_json()),
    Route("GET /api/v1/events/{event_id}/links", event_staff_json(Answer(200, says="/j/"))),
    Route(
        "POST /api/v1/events/{event_id}/cancel",
        event_staff_json(Answer(200, says='"status": "cancelled"')),
        args={"event_id": NEW},
    ),
    Route(
        "POST /api/v1/events/{event_id}/participants/{kind}/{person_id}/send",
        event_staff_json(Answer(202, says='"status": "queued"')),
        args={"kind": "patients"},
        json={"channel": "email"},
    ),
    Route(
        "GET /api/v1/patients/{patient_id}/recordings",
        by_role(
            Answer(200, says='"not_shown": 0'),
            Answer(200, says='"not_shown": 0'),
            Answer(200, says='"recordings": []'),
            UNAUTHENTICATED,
        ),
    ),
    Route("GET /api/v1/recordings/{recording_id}", recording(outsiders=UNAUTHENTICATED)),
    Route(
        "GET /api/v1/recordings/{recording_id}/files/{name}", recording(outsiders=UNAUTHENTICATED)
    ),
    Route(
        "DELETE /api/v1/recordings/{recording_id}",
        recording(Answer(204), UNAUTHENTICATED),
        args={"recording_id": NEW},
    ),
    # Credentials in the wrong place: a form without its CSRF token, and a session
    # cookie without a token on the API.
    Route(
        "POST /patients",
        {"event_staff_without_csrf": Answer(403, says="This form has expired")},
        form={"name": "Pat Example", "record_number": "R-7"},
    ),
    Route("GET /api/v1/patients", {"admin_cookie_only": UNAUTHENTICATED}),
]


# --- websocket messages (docs/lobby-protocol.md) ----------------------------------------

SPEAKERS: Final = ("event_staff", "admin", "patient", "guest")
# In a message's fields: the id of the event's patient, as the sending page knows it.
PATIENT: Final = "{patient}"


@dataclass(frozen=True)
class Said:
    """A message with fields a page could send, and the answer each role's page gets:
    "result", an error's code, "welcome" (to hello), or "closed <code>"."""

    type: str
    answers: Mapping[str, str]
    fields: Mapping[str, Any] = field(default_factory=dict)
    started: bool = False  # sent once a host has started the conference
    before_hello: bool = False

    @property
    def name(self) -> str:
        when = " (started)" if self.started else " (before hello)" if self.before_hello else ""
        return self.type + when


def everyone(answer: str) -> dict[str, str]:
    return dict.fromkeys(SPEAKERS, answer)


def hosts_only(answer: str) -> dict[str, str]:
    """Any staff member with a link of the event is a host, an administrator's own too."""
    return everyone("not_host") | {"event_staff": answer, "admin": answer}


MESSAGES: Final = [
    Said("hello", everyone("welcome")),
    Said("ping", everyone("result")),
    Said("start", everyone("not_ready"), before_hello=True),
    Said("ping", everyone("not_ready"), before_hello=True),
    Said("set_options", hosts_only("result"), {"moderator": True, "recording": False}),
    Said("set_access", hosts_only("result"), {"locked": True, "waiting_room": True}),
    Said("let_in", hosts_only("unknown_guest"), {"guest": "nobody"}),
    Said("let_in_all", hosts_only("result")),
    Said("turn_away", hosts_only("unknown_guest"), {"guest": "nobody"}),
    Said("turn_away_all", hosts_only("result")),
    Said("remove", hosts_only("result"), {"participant": PATIENT}),
    Said("start", hosts_only("result")),
    Said("set_shown", hosts_only("result"), {"participant": PATIENT, "shown": False}),
    Said("set_permission", hosts_only("result"), {"participant": PATIENT, "permission": "audio"}),
    Said("reopen", hosts_only("not_ended")),
    Said("end", hosts_only("closed 4411")),  # after an "ended" message, like every page
    Said("join_media", everyone("not_started")),
    Said("join_media", everyone("result"), started=True),
    Said("answer", everyone("no_media"), {"connection": "none", "sdp": "v=0"}, started=True),
    Said("leave", everyone("closed 1000")),
]


def cells(rows: list[Route] | list[Said]) -> list[Any]:
    """A test case per row and role, named after both."""
    return [
        pytest.param(row, role, id=f"{row.name} as {role}") for row in rows for role in row.answers
    ]


def served_routes(app: web.Application) -> set[str]:
    """Every route the application serves, as "METHOD /canonical/path", but its static
    files and the HEAD twin aiohttp adds to each GET."""
    served = set()
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        if route.method != "HEAD" and not isinstance(resource, web.StaticResource):
            served.add(f"{route.method} {resource.canonical}")
    return served


def required_roles(route: Route) -> set[str]:
    if route.link is None:
        return set(ROLES)
    return {*LINK_HOLDERS[route.link], *CLOSED_LINKS}


async def test_every_route_and_message_has_rows(tmp_path: Path) -> None:
    served = served_routes(create_app(Settings(data_dir=tmp_path)))
    in_table = {route.name for route in ROUTES}
    assert served - in_table == set(), "routes without rows: add them to ROUTES"
    assert in_table - served == set(), "rows for routes the server does not have"
    for name in in_table:
        rows = [route for route in ROUTES if route.name == name]
        asked = {role for route in rows for role in route.answers}
        missing = required_roles(rows[0]) - asked
        assert not missing, f"{name}: no answer for {sorted(missing)}"

    # The websocket's message types are the handlers it registers.
    assert set(lobby._HANDLERS) == {said.type for said in MESSAGES}, "message types without rows"
    for said in MESSAGES:
        assert set(said.answers) == set(SPEAKERS), f"{said.name}: not every role answered"


# --- the clinic they are asked of ----------------------------------------------------


@dataclass
class Visitor:
    """A browser (its own cookies) or a program, as one role."""

    client: Client
    csrf: str | None  # sent with unsafe requests
    api_token: str | None = None


@dataclass
class World:
    """One server with Ada (administrator), Sam (on every event) and Olive (on none);
    Pat on `event`, a Public Conference under way, and a ready recording of it."""

    server: TestServer
    accounts: dict[str, Account]
    users: dict[str, StaffUser]
    public_type: EventType
    private_type: EventType
    pat_id: int
    quinn_id: int
    media: Media
    event: Event = field(init=False)
    recording_id: int = field(init=False)
    visitors: dict[str, Visitor] = field(default_factory=dict)
    # By kind of link, and holder or link state: the token to ask with.
    tokens: dict[LinkRoute, dict[str, str]] = field(default_factory=dict)

    @property
    def app(self) -> web.Application:
        return self.server.app

    async def new_event(
        self, start_in: timedelta = timedelta(minutes=-5), *, patients: list[int] | None = None
    ) -> Event:
        """A Public Conference with Sam and (unless told) Pat, lasting an hour."""
        start = utc_now() + start_in
        saved = await self.app[keys.SCHEDULER].create_event(
            self.users["admin"],
            EventInput(
                "Group session", self.public_type.id, start, start + timedelta(hours=1),
                [self.users["event_staff"].id], patients or [self.pat_id],
            ),
        )  # fmt: skip
        return saved.event

    async def new_recording(self) -> int:
        recording_id = await recording_of(self.app, self.media, self.event.id)
        await compose(self.app, self.media, recording_id)
        return recording_id

    async def token(self, event_id: int, kind: LinkKind, person_id: int | None = None) -> str:
        url = await self.app[keys.SCHEDULER].links.url_for(
            self.app[keys.DATABASE], event_id, kind, person_id
        )
        assert url is not None, (event_id, kind, person_id)
        return URL(url).name

    async def holders(self, event: Event) -> dict[str, str]:
        """The token of each usable link to `event`: Sam's, Ada's own ("Get My
        Conference Link", as an administrator not on it), Pat's, and the public one."""
        own_link = await self.app[keys.SCHEDULER].my_link(self.users["admin"], event.id)
        return {
            "event_staff": await self.token(event.id, "staff", self.users["event_staff"].id),
            "admin": URL(own_link).name,
            "patient": await self.token(event.id, "patient", self.pat_id),
            "guest": await self.token(event.id, "public"),
        }

    async def arrive(self, role: str) -> Visitor:
        """A browser of `role`: signed in, or having opened its link or the sign-in page."""
        client = TestClient(self.server)
        if role in STAFF:
            return Visitor(client, await sign_in(client, self.accounts[role]))
        first_page = {
            "patient": f"/j/{self.tokens['personal']['patient']}",
            "guest": f"/p/{self.tokens['public']['guest']}",
        }.get(role, "/signin")
        async with client.get(first_page) as page:
            assert page.status == 200, (role, page.status)
        return Visitor(client, csrf_token(client))

    @contextlib.asynccontextmanager
    async def visitor(self, role: str, route: Route) -> AsyncIterator[Visitor]:
        if route.fresh:
            fresh = await self.arrive(role)
            try:
                yield fresh
            finally:
                await fresh.client.session.close()  # not client.close(): it stops the server
        elif role in self.visitors:
            yield self.visitors[role]
        else:  # a link in some state: the browser of whoever would hold it
            yield self.visitors["guest" if route.link == "public" else "patient"]

    async def values(self, route: Route, role: str) -> dict[str, str]:
        """What each `{name}` stands for in this cell: path parameters, the role, the path."""
        values = {
            "event_id": str(self.event.id),
            "kind": "patient",
            "person_id": str(self.pat_id),
            "patient_id": str(self.pat_id),
            "recording_id": str(self.recording_id),
            "name": COMPOSED,
            "role": role,
        }
        if route.link is not None:
            values["token"] = self.tokens[route.link][role]
        values |= route.args
        if values["event_id"] == NEW:
            values["event_id"] = str((await self.new_event()).id)
        if values["recording_id"] == NEW:
            values["recording_id"] = str(await self.new_recording())
        values["path"] = fill(route.path, values)
        return values


def fill(text: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(f"{{{name}}}", value)
    return text


async def build_world(server: TestServer, media: Media) -> World:
    app = server.app
    scheduler = app[keys.SCHEDULER]
    admin, sam, olive = await asyncio.gather(
        make_account(app, "Ada Admin", "ada@clinic.test", ADMIN_PASSWORD, admin=True),
        make_account(app, "Sam Staff", "sam@clinic.test", STAFF_PASSWORD, admin=False),
        make_account(app, "Olive Other", "olive@clinic.test", STAFF_PASSWORD, admin=False),
    )
    accounts = {"admin": admin, "event_staff": sam, "other_staff": olive}
    names = {"admin": "Ada Admin", "event_staff": "Sam Staff", "other_staff": "Olive Other"}
    users = {
        role: StaffUser(account.id, names[role], account.email, role == "admin")
        for role, account in accounts.items()
    }
    ada = users["admin"]
    pat = await scheduler.create_patient(
        ada, PatientInput("Pat Patel", "R-1", "pat@example.test", "+12025550144")
    )
    world = World(
        server,
        accounts,
        users,
        public_type=await scheduler.create_event_type(ada, EventTypeInput("Group", True, True)),
        private_type=await scheduler.create_event_type(ada, EventTypeInput("Video", True, False)),
        pat_id=pat.id,
        quinn_id=(await scheduler.create_patient(ada, PatientInput("Quinn Quist", "R-2"))).id,
        media=media,
    )
    world.event = await world.new_event()
    world.recording_id = await world.new_recording()
    await make_links(world)
    arrived = await asyncio.gather(*(world.arrive(role) for role in ROLES))
    world.visitors = dict(zip(ROLES, arrived, strict=True))
    for role in STAFF:
        world.visitors[role].api_token = accounts[role].api_token
    world.visitors["event_staff_without_csrf"] = Visitor(world.visitors["event_staff"].client, None)
    world.visitors["admin_cookie_only"] = Visitor(world.visitors["admin"].client, None)
    return world


async def make_links(world: World) -> None:
    """A link of each kind in each state."""
    scheduler = world.app[keys.SCHEDULER]
    ada, pat = world.users["admin"], world.pat_id
    early = await world.new_event(timedelta(days=2))
    expired = await world.new_event(timedelta(hours=-3))
    cancelled = await world.new_event()
    await scheduler.cancel_event(ada, cancelled.id)
    # Quinn taken off, and no longer a Public Conference: their link and the public
    # one are withdrawn.
    withdrawn = await world.new_event(patients=[pat, world.quinn_id])
    withdrawn_tokens = {
        "personal": await world.token(withdrawn.id, "patient", world.quinn_id),
        "public": await world.token(withdrawn.id, "public"),
    }
    await scheduler.update_event(
        ada,
        withdrawn.id,
        EventInput(
            withdrawn.title, world.private_type.id, withdrawn.start, withdrawn.end,
            [world.users["event_staff"].id], [pat],
        ),
    )  # fmt: skip
    usable = await world.holders(world.event)
    kinds: tuple[tuple[LinkRoute, LinkKind, int | None], ...] = (
        ("personal", "patient", pat),
        ("public", "public", None),
    )
    for route, kind, person in kinds:
        world.tokens[route] = {
            "early": await world.token(early.id, kind, person),
            "expired": await world.token(expired.id, kind, person),
            "cancelled": await world.token(cancelled.id, kind, person),
            "withdrawn": withdrawn_tokens[route],
            "unknown": new_token(),
            "wrong_kind": usable["guest" if route == "personal" else "patient"],
        } | {holder: usable[holder] for holder in LINK_HOLDERS[route]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("access") / "data",
        ice_addresses=LOOPBACK_ICE,
        presence_grace_seconds=0,  # a cell's pages are gone once it closes them
    )
    media: Media = {"video": clip.encode_video(0.4), "audio": clip.encode_audio(0.4)}
    server = TestServer(create_app(settings))
    await server.start_server()
    try:
        world = await build_world(server, media)
        yield world
        for visitor in world.visitors.values():
            await visitor.client.session.close()
    finally:
        await server.close()


# --- asking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Got:
    status: int
    location: str | None = None
    body: str = ""
    closes: int | None = None

    def differences(self, expected: Answer, values: Mapping[str, str]) -> list[str]:
        """What of `expected` this is not, in words."""
        to = None if expected.to is None else fill(expected.to, values)
        says = fill(expected.says, values)
        checks = {
            f"status {expected.status}": self.status == expected.status,
            f"a redirect to {to}": to in (None, self.location),
            f"saying {says!r}": says in self.body,
            f"closed with {expected.closes}": expected.closes in (None, self.closes),
        }
        return [what for what, right in checks.items() if not right]

    def __str__(self) -> str:
        """Status, redirect, close code and the body's words without markup."""
        words = " ".join(re.sub(r"<head>.*?</head>|<[^>]+>", " ", self.body, flags=re.S).split())
        parts = [str(part) for part in (self.status, self.location, self.closes) if part]
        return " ".join([*parts, repr(words[:300])])


async def request(visitor: Visitor, route: Route, values: Mapping[str, str]) -> Got:
    url = values["path"] + (f"?{route.query}" if route.query else "")
    headers = {}
    if route.path.startswith("/api/"):
        if visitor.api_token is not None:
            headers["Authorization"] = f"Bearer {visitor.api_token}"
    elif route.method != "GET" and visitor.csrf is not None:
        headers[CSRF_HEADER] = visitor.csrf
    body: dict[str, Any] = {}
    if route.form is not None:
        body["data"] = {name: fill(value, values) for name, value in route.form.items()}
    if route.json is not None:
        body["json"] = route.json
        headers["Accept"] = "application/json"  # as the pages' scripts ask
    async with visitor.client.request(
        route.method, url, headers=headers, allow_redirects=False, **body
    ) as resp:
        text = (await resp.read()).decode(errors="replace")  # a recording's file is no text
        return Got(resp.status, resp.headers.get("Location"), text)


async def greet(page: Page, public: bool) -> dict[str, Any] | None:
    """Say hello as the page does: the first message back, or None when the socket is
    closed instead (page.ws.close_code says how)."""
    hello = {"client_key": secrets.token_urlsafe(16)}
    if public:
        hello["display_name"] = "Gail Guest"
    await page.send("hello", **hello)
    frame = await page.ws.receive(timeout=RECEIVE_TIMEOUT)
    return dict(frame.json()) if frame.type is WSMsgType.TEXT else None


async def knock(visitor: Visitor, route: Route, values: Mapping[str, str]) -> Got:
    """Open a join link's websocket: the code it is closed with, or its first word."""
    page = Page(await visitor.client.ws_connect(values["path"]))
    try:
        first = await greet(page, route.link == "public")
    finally:
        await page.ws.close()
    if first is None:
        return Got(101, closes=page.ws.close_code)
    return Got(101, body=first["type"])


@pytest.mark.parametrize(("route", "role"), cells(ROUTES))
async def test_route(world: World, route: Route, role: str) -> None:
    values = await world.values(route, role)
    async with world.visitor(role, route) as visitor:
        got = await (knock if route.socket else request)(visitor, route, values)
    differences = got.differences(route.answers[role], values)
    assert not differences, f"{route.name} as {role}: not {', '.join(differences)}; got {got}"


async def reply(page: Page, type_: str, fields: Mapping[str, Any]) -> str:
    """The answer to one message: "result", the error's code, or "closed <code>" when
    the server closes the socket instead."""
    message_id = await page.send(type_, **fields)
    while True:
        frame = await page.ws.receive(timeout=RECEIVE_TIMEOUT)
        if frame.type is not WSMsgType.TEXT:
            return f"closed {page.ws.close_code}"
        message = frame.json()
        if message["type"] in ("result", "error") and message["id"] == message_id:
            return str(message.get("code", "result"))


def patient_id(welcome: Mapping[str, Any]) -> str:
    """The event's patient as this page knows them (a patient sees only themselves)."""
    return next(str(p["id"]) for p in welcome["participants"] if p["kind"] == "patient")


@pytest.mark.parametrize(("said", "role"), cells(MESSAGES))
async def test_message(world: World, said: Said, role: str) -> None:
    # A conference of its own: the messages change it.
    tokens = await world.holders(await world.new_event())
    client = world.visitors[role].client
    pages: list[Page] = []

    async def open_page(speaker: str) -> Page:
        prefix = "p" if speaker == "guest" else "j"
        pages.append(Page(await client.ws_connect(f"/{prefix}/{tokens[speaker]}/ws")))
        return pages[-1]

    try:
        if said.started:
            host = await open_page("event_staff")
            assert await greet(host, public=False) is not None
            assert await reply(host, "start", {}) == "result"
        page = await open_page(role)
        if said.before_hello:
            got = await reply(page, said.type, said.fields)
        elif (welcome := await greet(page, public=role == "guest")) is None:
            got = f"closed {page.ws.close_code}"
        elif said.type == "hello":
            got = welcome["type"]
        else:
            assert welcome["type"] == "welcome", f"{role}'s page was not let in: {welcome}"
            fields = {
                name: patient_id(welcome) if value == PATIENT else value
                for name, value in said.fields.items()
            }
            got = await reply(page, said.type, fields)
    finally:
        for page in pages:
            await page.ws.close()
    expected = said.answers[role]
    assert got == expected, f"{said.name} from {role}: expected {expected}, got {got}"
