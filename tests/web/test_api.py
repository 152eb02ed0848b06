"""The JSON API under /api/v1, through the real app: every route, its
authentication, bad input answered with the documented error and nothing
half-written, and the OpenAPI document against the routes and the answers."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from clinicconf import keys
from clinicconf.web.views.api import document

from ..support.accounts import Account
from ..support.api import api, call, conforms, response_schema

Client = TestClient[web.Request, web.Application]

PREFIX = "/api/v1"
# <base>/j/<token> or <base>/p/<token>: a token is 43 URL-safe characters.
LINK = re.compile(r"^http://127\.0\.0\.1:\d+/([jp])/[A-Za-z0-9_-]{43}$")


# --- helpers ------------------------------------------------------------------------


async def count(app: web.Application, table: str) -> int:
    row = await app[keys.DATABASE].fetchone(f"SELECT count(*) AS n FROM {table}")  # noqa: S608
    assert row is not None
    return int(row["n"])


async def row_counts(app: web.Application) -> dict[str, int]:
    """Every table an API call may write, to show that a refused one wrote nothing."""
    tables = ("staff", "patients", "event_types", "events", "event_staff", "event_patients")
    return {t: await count(app, t) for t in (*tables, "join_links", "outbox")}


def error(answer: Any) -> tuple[str, str | None]:
    return answer["error"]["code"], answer["error"]["field"]


def soon(minutes: int) -> str:
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=minutes)
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Clinic:
    """What most tests need: two event types and two patients."""

    video_type: int
    public_type: int
    phone_patient: int
    quiet_patient: int  # neither phone nor email


@pytest.fixture
async def clinic(client: Client, admin: Account) -> Clinic:
    video = await call(
        client,
        admin,
        "POST",
        "/event-types",
        {"name": "Telehealth", "video_conferencing": True, "public_conference": False},
        expect=201,
    )
    public = await call(
        client,
        admin,
        "POST",
        "/event-types",
        {
            "name": "Public talk",
            "video_conferencing": True,
            "public_conference": True,
            "colour": "#aa3300",
        },
        expect=201,
    )
    phone_patient = await call(
        client,
        admin,
        "POST",
        "/patients",
        {
            "name": "Pat Patient",
            "email": "pat@example.test",
            "phone": "+12025550187",
            "record_number": "MRN-1",
        },
        expect=201,
    )
    quiet_patient = await call(
        client,
        admin,
        "POST",
        "/patients",
        {"name": "Quinn Quiet", "record_number": "MRN-2"},
        expect=201,
    )
    return Clinic(video["id"], public["id"], phone_patient["id"], quiet_patient["id"])


def event_body(clinic: Clinic, staff_ids: list[int], **changes: Any) -> dict[str, Any]:
    return {
        "title": "Follow-up",
        "event_type_id": clinic.video_type,
        "start": soon(5),
        "end": soon(35),
        "staff_ids": staff_ids,
        "patient_ids": [clinic.phone_patient, clinic.quiet_patient],
    } | changes


# --- the document -------------------------------------------------------------------


async def test_openapi_document_describes_exactly_the_registered_routes(client: Client) -> None:
    async with client.get(PREFIX + "/openapi.json") as resp:  # no token needed
        assert resp.status == 200
        served = await resp.json()
    assert served == document()
    assert served["openapi"].startswith("3.1")

    registered = {}
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        # aiohttp adds a HEAD route beside every GET.
        if path.startswith(PREFIX + "/") and route.method != "HEAD":
            registered[(route.method.lower(), path.removeprefix(PREFIX))] = route.handler
    documented = {
        (method, path): operation
        for path, item in served["paths"].items()
        for method, operation in item.items()
    }
    assert set(documented) == set(registered)
    for key, operation in documented.items():
        assert operation["operationId"] == registered[key].__name__
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", key[1]))


def test_every_reference_in_the_document_resolves() -> None:
    served = document()
    for name in re.findall(r"#/components/schemas/(\w+)", repr(served)):
        assert name in served["components"]["schemas"]


# --- authentication -----------------------------------------------------------------

PROTECTED = [
    (method.upper(), path)
    for path, item in document()["paths"].items()
    for method, operation in item.items()
    if operation.get("security") != []
]


async def test_every_route_but_the_document_needs_a_valid_token(
    client: Client, admin: Account
) -> None:
    before = await row_counts(client.app)
    for method, path in PROTECTED:
        url = PREFIX + path.format(
            event_id=1, kind="staff", person_id=1, patient_id=1, recording_id=1, name="x"
        )
        for authorization in [None, "Bearer not-a-token", "Basic YWRhOng="]:
            headers = {"Authorization": authorization} if authorization else {}
            async with client.request(method, url, json={}, headers=headers) as resp:
                assert resp.status == 401, (method, path, authorization)
                answer = await resp.json()
            conforms(answer, response_schema(method, path, 401))
            assert error(answer) == ("unauthenticated", None)
    assert await row_counts(client.app) == before


async def test_only_an_administrator_adds_staff_and_event_types(
    client: Client, staff: Account
) -> None:
    before = await row_counts(client.app)
    answer = await call(
        client,
        staff,
        "POST",
        "/staff",
        {"name": "Mal Ory", "email": "mal@clinic.test", "is_admin": True},
        expect=403,
    )
    assert error(answer) == ("forbidden", None)
    body = {"name": "Sneaky", "video_conferencing": True, "public_conference": False}
    await call(client, staff, "POST", "/event-types", body, expect=403)
    assert await row_counts(client.app) == before


# --- directories --------------------------------------------------------------------


async def test_an_administrator_adds_staff_who_then_appear_in_the_list(
    client: Client, admin: Account
) -> None:
    created = await call(
        client,
        admin,
        "POST",
        "/staff",
        {"name": "Dr Grace Hopper", "email": "grace@clinic.test", "phone": "(202) 555-0142"},
        expect=201,
    )
    assert created == {
        "id": created["id"],
        "name": "Dr Grace Hopper",
        "email": "grace@clinic.test",
        "phone": "+12025550142",
        "is_admin": False,
    }
    listed = await call(client, admin, "GET", "/staff")
    assert created in listed
    assert {s["name"] for s in listed} == {"Ada Admin", "Dr Grace Hopper"}

    again = {"name": "Grace Again", "email": "grace@clinic.test"}
    answer = await call(client, admin, "POST", "/staff", again, expect=409)
    assert error(answer) == ("conflict", "email")
    assert len(await call(client, admin, "GET", "/staff")) == 2


async def test_staff_add_patients_and_list_them(client: Client, staff: Account) -> None:
    body = {"name": "Pat", "email": "pat@example.test", "phone": None, "record_number": "R7"}
    created = await call(client, staff, "POST", "/patients", body, expect=201)
    assert created == body | {"id": created["id"]}
    assert await call(client, staff, "GET", "/patients") == [created]

    duplicate = {"name": "Other", "record_number": "R7"}
    answer = await call(client, staff, "POST", "/patients", duplicate, expect=409)
    assert error(answer) == ("conflict", "record_number")


async def test_event_types_are_created_and_listed(client: Client, admin: Account) -> None:
    body = {"name": "Group therapy", "video_conferencing": True, "public_conference": True}
    created = await call(client, admin, "POST", "/event-types", body, expect=201)
    assert created == body | {"id": created["id"], "colour": "#3a7bd5"}
    assert await call(client, admin, "GET", "/event-types") == [created]


async def test_public_conference_without_video_is_refused_and_nothing_written(
    client: Client, admin: Account
) -> None:
    body = {"name": "Webinar", "video_conferencing": False, "public_conference": True}
    answer = await call(client, admin, "POST", "/event-types", body, expect=422)
    assert error(answer) == ("invalid", "public_conference")
    assert "Video Conferencing" in answer["error"]["message"]
    assert await call(client, admin, "GET", "/event-types") == []


# --- events -------------------------------------------------------------------------


async def test_an_event_is_created_read_listed_and_cancelled(
    client: Client, admin: Account, staff: Account, clinic: Clinic
) -> None:
    body = event_body(clinic, [staff.id], start="2031-05-06T09:00:00+02:00")
    body["end"] = "2031-05-06T09:30:00+02:00"
    created = await call(client, staff, "POST", "/events", body, expect=201)
    assert created["title"] == "Follow-up"
    assert (created["start"], created["end"]) == ("2031-05-06T07:00:00Z", "2031-05-06T07:30:00Z")
    assert created["status"] == "scheduled"
    assert created["event_type"]["id"] == clinic.video_type
    assert [p["name"] for p in created["patients"]] == ["Pat Patient", "Quinn Quiet"]
    assert created["staff"] == [{"id": staff.id, "name": "Sam Staff"}]
    # Quinn has no email address: the answer says so, as the page does.
    assert created["invitations"] == {
        "emailed": ["Sam Staff", "Pat Patient"],
        "not_emailed": ["Quinn Quiet"],
    }
    assert await count(client.app, "outbox") == 2

    event = await call(client, admin, "GET", "/events/{event_id}", event_id=created["id"])
    assert event == {k: v for k, v in created.items() if k != "invitations"}

    in_range = "/events?from=2031-05-06T00:00:00Z&to=2031-05-07T00:00:00%2B02:00"
    assert await call(client, admin, "GET", in_range) == [event]
    outside = "/events?from=2031-05-07T00:00:00Z&to=2031-05-08T00:00:00Z"
    assert await call(client, admin, "GET", outside) == []

    path = "/events/{event_id}/cancel"
    cancelled = await call(client, admin, "POST", path, event_id=event["id"])
    assert cancelled == event | {"status": "cancelled"}
    # The participants are told; cancelled events stay in the list, marked so.
    assert await count(client.app, "outbox") == 4
    assert await call(client, admin, "GET", in_range) == [cancelled]

    before = await row_counts(client.app)
    answer = await call(client, admin, "POST", path, event_id=event["id"], expect=409)
    assert error(answer) == ("conflict", None)
    assert await row_counts(client.app) == before


async def test_a_public_conference_names_its_patient_record(
    client: Client, staff: Account, clinic: Clinic
) -> None:
    body = event_body(clinic, [], event_type_id=clinic.public_type, patient_ids=[])
    created = await call(
        client,
        staff,
        "POST",
        "/events",
        body | {"record_patient_id": clinic.quiet_patient},
        expect=201,
    )
    assert created["record_patient_id"] == clinic.quiet_patient
    assert created["event_type"]["public_conference"] is True
    assert created["invitations"] == {"emailed": [], "not_emailed": []}


WRONG_EVENTS: list[tuple[dict[str, Any], str]] = [
    ({"end": "2031-05-06T08:00:00Z", "start": "2031-05-06T09:00:00Z"}, "end"),
    ({"start": "2031-05-06T09:00:00"}, "start"),  # no offset
    ({"end": "2031-05-06T09:30:00"}, "end"),
    ({"start": "2031-05-06"}, "start"),
    ({"start": "next Tuesday"}, "start"),
    ({"start": "0001-01-01T00:00:00+05:00"}, "start"),
    ({"end": "2031-05-07T09:30:00Z"}, "end"),  # 24 h 30 min
    ({"event_type_id": 999}, "event_type_id"),
    ({"staff_ids": [999]}, "staff_ids"),
    ({"patient_ids": [999]}, "patient_ids"),
    ({"patient_ids": [1, 1]}, "patient_ids"),
    ({"record_patient_id": 1}, "record_patient_id"),  # not a Public Conference
    ({"title": "   "}, "title"),
    # Wrong JSON types: in Python a bool is an int, but true is not an id.
    ({"event_type_id": True}, "event_type_id"),
    ({"event_type_id": "1"}, "event_type_id"),
    ({"event_type_id": 1.0}, "event_type_id"),
    ({"event_type_id": 0}, "event_type_id"),
    ({"event_type_id": 2**63}, "event_type_id"),
    ({"staff_ids": [True]}, "staff_ids"),
    ({"staff_ids": "1"}, "staff_ids"),
    ({"patient_ids": None}, "patient_ids"),
    ({"title": 42}, "title"),
    ({"start": 1700000000}, "start"),
    ({"titel": "typo"}, "titel"),
]


async def test_a_wrong_event_is_refused_naming_the_field_and_nothing_written(
    client: Client, staff: Account, clinic: Clinic
) -> None:
    body = event_body(clinic, [staff.id], start="2031-05-06T09:00:00Z", end="2031-05-06T09:30:00Z")
    before = await row_counts(client.app)
    for changes, field in WRONG_EVENTS:
        answer = await call(client, staff, "POST", "/events", body | changes, expect=422)
        assert error(answer) == ("invalid", field), changes
    for missing in ["title", "event_type_id", "start", "end", "staff_ids", "patient_ids"]:
        without = {k: v for k, v in body.items() if k != missing}
        answer = await call(client, staff, "POST", "/events", without, expect=422)
        assert error(answer) == ("invalid", missing)
    assert await row_counts(client.app) == before


async def test_a_refusal_says_in_words_what_is_wrong(
    client: Client, staff: Account, clinic: Clinic
) -> None:
    body = event_body(clinic, [staff.id])
    untitled = {k: v for k, v in body.items() if k != "title"}
    for sent, message in [
        (body | {"titel": "typo"}, "Unknown field 'titel'."),
        (untitled, "This field is required."),
        (body | {"start": "next Tuesday"}, "Must be an ISO 8601 time with a time zone offset"),
        (body | {"event_type_id": "1"}, "Input should be a valid integer"),
    ]:
        answer = await call(client, staff, "POST", "/events", sent, expect=422)
        assert answer["error"]["message"].startswith(message), answer


WRONG_EVENT_TYPES: list[tuple[dict[str, Any], str]] = [
    ({"name": "X", "video_conferencing": 1, "public_conference": False}, "video_conferencing"),
    ({"name": "X", "video_conferencing": True, "public_conference": "no"}, "public_conference"),
    ({"name": "X", "video_conferencing": True}, "public_conference"),
    (
        {"name": "X", "video_conferencing": True, "public_conference": False, "colour": "red"},
        "colour",
    ),
    (
        {"name": "X", "video_conferencing": True, "public_conference": False, "color": "#fff"},
        "color",
    ),
    ({"name": ["X"], "video_conferencing": True, "public_conference": False}, "name"),
]


async def test_a_wrong_event_type_is_refused_naming_the_field(
    client: Client, admin: Account
) -> None:
    for body, field in WRONG_EVENT_TYPES:
        answer = await call(client, admin, "POST", "/event-types", body, expect=422)
        assert error(answer) == ("invalid", field), body
    assert await call(client, admin, "GET", "/event-types") == []


WRONG_STAFF: list[tuple[dict[str, Any], str]] = [
    ({"name": "Al", "email": "not-an-address"}, "email"),
    ({"name": "Al", "email": "al@clinic.test", "phone": "12"}, "phone"),
    ({"name": "Al", "email": "al@clinic.test", "is_admin": "yes"}, "is_admin"),
    ({"name": "Al", "email": "al@clinic.test", "password": "hunter2hunter2"}, "password"),
    ({"email": "al@clinic.test"}, "name"),
]


async def test_a_wrong_staff_member_is_refused_naming_the_field(
    client: Client, admin: Account
) -> None:
    for body, field in WRONG_STAFF:
        answer = await call(client, admin, "POST", "/staff", body, expect=422)
        assert error(answer) == ("invalid", field), body
    assert len(await call(client, admin, "GET", "/staff")) == 1


WRONG_RANGES: list[tuple[str, str]] = [
    ("to=2031-05-07T00:00:00Z", "from"),
    ("from=2031-05-06T00:00:00Z", "to"),
    ("from=2031-05-06T00:00:00&to=2031-05-07T00:00:00Z", "from"),
    # An unencoded + arrives as a space: refused, not misread.
    ("from=2031-05-06T00:00:00+02:00&to=2031-05-07T00:00:00Z", "from"),
    ("from=2031-05-06T00:00:00Z&to=2031-05-06T00:00:00Z", "to"),
    ("from=2031-05-06T00:00:00Z&to=2032-05-07T00:00:00Z", "to"),
]


async def test_a_wrong_time_range_is_refused_naming_the_parameter(
    client: Client, staff: Account
) -> None:
    for query, field in WRONG_RANGES:
        answer = await call(client, staff, "GET", "/events?" + query, expect=422)
        assert error(answer) == ("invalid", field), query


async def test_an_unknown_event_is_not_found(client: Client, staff: Account) -> None:
    for event_id in ["999", "0", "-1", "abc", "1.5", "9" * 30]:
        for method, path in [("GET", ""), ("GET", "/links"), ("POST", "/cancel")]:
            status, answer = await api(client, staff, method, f"/events/{event_id}{path}")
            assert status == 404, (method, event_id, path)
            assert error(answer) == ("not_found", None)


async def test_an_unknown_api_route_answers_json(client: Client, staff: Account) -> None:
    assert await api(client, staff, "GET", "/appointments") == (
        404,
        {"error": {"code": "not_found", "message": "Not Found", "field": None}},
    )
    status, answer = await api(client, staff, "DELETE", "/staff")
    assert (status, error(answer)) == (405, ("method_not_allowed", None))


# --- the body itself ----------------------------------------------------------------


UNREADABLE_BODIES: list[tuple[bytes, str, int, str]] = [
    (b'{"name": "Pat", "record_number": "R1"', "application/json", 400, "bad_json"),
    (b"", "application/json", 400, "bad_json"),
    (b"\xff\xfe{}", "application/json", 400, "bad_json"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "bad_json"),
    (b'["Pat", "R1"]', "application/json", 400, "bad_json"),
    (b'"Pat"', "application/json", 400, "bad_json"),
    (
        b"name=Pat&record_number=R1",
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
    ),
    (b'{"name": "Pat", "record_number": "R1"}', "text/plain", 415, "unsupported_media_type"),
    # The app reads at most 256 KiB of a body.
    (
        b'{"name": "' + b"a" * 2**20 + b'", "record_number": "R1"}',
        "application/json",
        413,
        "request_entity_too_large",
    ),
]


async def test_an_unreadable_body_is_refused_and_nothing_written(
    client: Client, staff: Account
) -> None:
    for data, content_type, status, code in UNREADABLE_BODIES:
        headers = staff.auth | {"Content-Type": content_type}
        # A stream: aiohttp warns about sending a large body from bytes.
        body = io.BytesIO(data)
        async with client.post(PREFIX + "/patients", data=body, headers=headers) as resp:
            assert resp.status == status, data[:50]
            answer = await resp.json()
        conforms(answer, response_schema("POST", "/patients", status))
        assert error(answer) == (code, None)
    assert await count(client.app, "patients") == 0


# --- join links ---------------------------------------------------------------------


async def test_links_are_one_per_person_and_open_their_landing_pages(
    client: Client, admin: Account, staff: Account, clinic: Clinic
) -> None:
    body = event_body(clinic, [admin.id, staff.id])
    event = await call(client, staff, "POST", "/events", body, expect=201)
    links = await call(client, staff, "GET", "/events/{event_id}/links", event_id=event["id"])
    assert [(p["id"], p["name"]) for p in links["staff"]] == [
        (admin.id, "Ada Admin"),
        (staff.id, "Sam Staff"),
    ]
    assert [p["id"] for p in links["patients"]] == [clinic.phone_patient, clinic.quiet_patient]
    assert links["public"] is None  # not a Public Conference
    urls = [p["url"] for p in links["staff"] + links["patients"]]
    assert len(set(urls)) == 4
    for person, url in zip(links["staff"] + links["patients"], urls, strict=True):
        match = LINK.match(url)
        assert match and match.group(1) == "j", url
        async with client.get(URL(url).path) as resp:
            assert resp.status == 200
            page = await resp.text()
        assert "Follow-up" in page
        assert person["name"] in page

    # Asking again hands out the same links.
    again = await call(client, staff, "GET", "/events/{event_id}/links", event_id=event["id"])
    assert again == links

    await call(client, staff, "POST", "/events/{event_id}/cancel", event_id=event["id"])
    async with client.get(URL(urls[0]).path) as resp:
        assert resp.status == 410


async def test_a_public_conference_also_has_one_shared_link(
    client: Client, staff: Account, clinic: Clinic
) -> None:
    body = event_body(clinic, [staff.id], event_type_id=clinic.public_type, title="Open day")
    event = await call(client, staff, "POST", "/events", body, expect=201)
    links = await call(client, staff, "GET", "/events/{event_id}/links", event_id=event["id"])
    match = LINK.match(links["public"])
    assert match and match.group(1) == "p"
    personal = {p["url"] for p in links["staff"] + links["patients"]}
    assert len(personal) == 3
    assert links["public"] not in personal
    async with client.get(URL(links["public"]).path) as resp:
        assert resp.status == 200
        assert "Open day" in await resp.text()


async def test_sending_a_link_queues_one_message(
    client: Client, staff: Account, clinic: Clinic
) -> None:
    event = await call(client, staff, "POST", "/events", event_body(clinic, [staff.id]), expect=201)
    db = client.app[keys.DATABASE]
    path = "/events/{event_id}/participants/{kind}/{person_id}/send"
    for kind, person_id, channel in [
        ("patients", clinic.phone_patient, "sms"),
        ("patients", clinic.phone_patient, "email"),
        ("staff", staff.id, "sms"),
    ]:
        before = await count(client.app, "outbox")
        answer = await call(
            client,
            staff,
            "POST",
            path,
            {"channel": channel},
            expect=202,
            event_id=event["id"],
            kind=kind,
            person_id=person_id,
        )
        assert answer == {"status": "queued", "channel": channel}
        assert await count(client.app, "outbox") == before + 1
        row = await db.fetchone("SELECT * FROM outbox ORDER BY id DESC LIMIT 1")
        assert row is not None
        assert (row["kind"], row["channel"], row["event_id"], row["recipient_id"]) == (
            "join_link",
            channel,
            event["id"],
            person_id,
        )
        assert row["recipient_kind"] == ("staff" if kind == "staff" else "patient")


UNSENDABLE: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("patients", "quiet", {"channel": "sms"}, 422, "channel"),  # no phone number
    ("patients", "quiet", {"channel": "email"}, 422, "channel"),  # no email address
    ("patients", "quiet", {"channel": "pigeon"}, 422, "channel"),
    ("patients", "quiet", {}, 422, "channel"),
    ("patients", "quiet", {"channel": "sms", "to": "+12025550111"}, 422, "to"),
    ("staff", "quiet", {"channel": "sms"}, 404, None),  # a patient's id in the staff list
    ("patients", "999", {"channel": "sms"}, 404, None),
    ("nurses", "quiet", {"channel": "sms"}, 404, None),
]


async def test_a_link_that_cannot_be_sent_is_refused_and_nothing_queued(
    client: Client, staff: Account, clinic: Clinic
) -> None:
    event = await call(client, staff, "POST", "/events", event_body(clinic, [staff.id]), expect=201)
    before = await row_counts(client.app)
    for kind, person, body, status, field in UNSENDABLE:
        person_id = clinic.quiet_patient if person == "quiet" else person
        path = f"/events/{event['id']}/participants/{kind}/{person_id}/send"
        answer = await api(client, staff, "POST", path, json=body)
        assert (answer[0], answer[1]["error"]["field"]) == (status, field), answer
    assert await row_counts(client.app) == before


async def test_a_cancelled_event_sends_no_more_links(
    client: Client, staff: Account, clinic: Clinic
) -> None:
    event = await call(client, staff, "POST", "/events", event_body(clinic, [staff.id]), expect=201)
    await call(client, staff, "POST", "/events/{event_id}/cancel", event_id=event["id"])
    before = await row_counts(client.app)
    answer = await call(
        client,
        staff,
        "POST",
        "/events/{event_id}/participants/{kind}/{person_id}/send",
        {"channel": "email"},
        expect=409,
        event_id=event["id"],
        kind="patients",
        person_id=clinic.phone_patient,
    )
    assert error(answer) == ("conflict", None)
    assert await row_counts(client.app) == before
