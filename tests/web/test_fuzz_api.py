"""The JSON API fuzzed from its OpenAPI document with schemathesis, as an
administrator's real API token: every operation, with bodies and parameters that fit
the document and ones that do not. No answer is a 5xx, every refusal has the
documented error shape (docs/api.md), every success fits the document, and the
server logs no error. Then the operations chained as a client chains them: what one
creates (an event type, a patient, an event) is what the next reads, sends or
cancels.

schemathesis sends real HTTP requests (with `requests`), so the server runs on
127.0.0.1 on an event loop of its own, in a thread. The document is loaded from the
code that serves it (schemathesis's lazy loading from a fixture does not run under
pytest 9); test_api.py checks that the served one is the same."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from clinicconf.app import create_app
from clinicconf.bench import clip
from clinicconf.config import Settings
from clinicconf.recording.files import COMPOSED, track_path
from clinicconf.web.views.api import document

from ..support.accounts import ADMIN_PASSWORD, Account, make_account
from ..support.clinic import build_clinic
from ..support.fuzzing import REPEATABLE
from ..support.recordings import PAT, SAM, Media, compose, recording_of
from ..support.servers import HOST, LOOPBACK_ICE, free_port

T = TypeVar("T")
Case = schemathesis.Case[Any]
SETUP_SECONDS = 30.0

# The server's thread draws from the global `random` (email.utils.make_msgid, for an
# invitation) while Hypothesis draws an example, which Hypothesis takes for a strategy
# using `random`.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

# What the served fixture makes first in a fresh database, which numbers rows from 1
# (it checks): Sam (the token's holder) and Ada; Telehealth, a Public Conference and
# an in-person type; Pat and Quinn; an event of each type and another Telehealth one,
# which is never cancelled (see fitted_parts); a recording of the first event that is
# ready, and one still being recorded.
STAFF_IDS: Final = (1, 2)
EVENT_TYPE_IDS: Final = (1, 2, 3)
PATIENT_IDS: Final = (1, 2)
EVENT_IDS: Final = (1, 2, 3, 4)
RECORDING_IDS: Final = (1, 2)
SEEDED_PATH_VALUES: Final = {
    "event_id": EVENT_IDS,
    "person_id": STAFF_IDS + PATIENT_IDS,
    "patient_id": PATIENT_IDS,
    "recording_id": RECORDING_IDS,
    "name": (
        COMPOSED,
        *(track_path(Path(), who, kind).name for who in (SAM, PAT) for kind in ("audio", "video")),
    ),
}

# Every 4xx body's code, by status (docs/api.md, "Errors").
ERROR_CODES: Final = {
    400: "bad_json",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_entity_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "busy",
}
FUZZ: Final = settings(
    REPEATABLE,
    max_examples=25,
    # One server for every example, on purpose: what an example changes stays.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)


class ServerThread:
    """An event loop in a thread of its own; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="api-server")
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(SETUP_SECONDS)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


@dataclass
class ServedApi:
    url: str  # .../api/v1
    sam: Account  # an administrator


async def seed(app: web.Application, sam: Account) -> None:
    """The rows that the hooks below name."""
    clinic = await build_clinic(app, sam)
    events = [
        await clinic.event(
            "Follow-up", clinic.telehealth, "2030-05-06T10:00", "2030-05-06T10:30",
            patients=[clinic.pat, clinic.quinn],
        ),
        await clinic.event(
            "Group", clinic.group, "2030-05-07T10:00", "2030-05-07T11:00", patients=[clinic.pat]
        ),
        await clinic.event(
            "Check-up", clinic.in_person, "2030-05-08T10:00", "2030-05-08T10:30", patients=[]
        ),
        await clinic.event(
            "Review", clinic.telehealth, "2030-05-09T10:00", "2030-05-09T10:30",
            patients=[clinic.pat, clinic.quinn],
        ),
    ]  # fmt: skip
    media: Media = {"video": clip.encode_video(0.4), "audio": clip.encode_audio(0.4)}
    recordings = [await recording_of(app, media, events[0].event.id) for _ in RECORDING_IDS]
    await compose(app, media, recordings[0])
    made = {
        "staff": sorted(staff.id for staff in await clinic.scheduler.list_staff()),
        "event types": [clinic.telehealth.id, clinic.group.id, clinic.in_person.id],
        "patients": [clinic.pat.id, clinic.quinn.id],
        "events": [saved.event.id for saved in events],
        "recordings": recordings,
    }
    assert made == {
        "staff": list(STAFF_IDS),
        "event types": list(EVENT_TYPE_IDS),
        "patients": list(PATIENT_IDS),
        "events": list(EVENT_IDS),
        "recordings": list(RECORDING_IDS),
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    port = free_port()
    data_dir = tmp_path_factory.mktemp("fuzz-api") / "data"
    app = create_app(Settings(host=HOST, port=port, data_dir=data_dir, ice_addresses=LOOPBACK_ICE))
    runner = web.AppRunner(app)
    server = ServerThread()
    try:
        server.run(runner.setup())
        server.run(web.TCPSite(runner, HOST, port).start())
        sam = server.run(
            make_account(app, "Sam Staff", "sam@clinic.test", ADMIN_PASSWORD, admin=True)
        )
        server.run(seed(app, sam))
        yield ServedApi(f"http://{HOST}:{port}/api/v1", sam)
    finally:
        server.run(runner.cleanup())
        server.stop()


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever is sent, nothing the server logs is an error."""
    caplog.set_level(logging.ERROR)
    yield
    assert [r.getMessage() for r in caplog.get_records("call")] == []


@schemathesis.check
def documented_error_shape(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    """A refusal is {"error": {"code", "message", "field"}}, with the code its status
    stands for."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not an error body: {body!r}"
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "field"}, body
    assert error["code"] == ERROR_CODES.get(response.status_code), (
        f"{response.status_code} with code {error['code']!r}"
    )
    assert isinstance(error["message"], str) and error["message"], body
    assert error["field"] is None or isinstance(error["field"], str), body
    return True


schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(modes=list(schemathesis.GenerationMode))
# Not positive_data_acceptance: the server checks more than a JSON schema says (a name
# that is not blank, a real email address, an end after the start) and refuses the
# rest with a documented 422. Not ignored_auth: wrong tokens from one address lock
# that address out, the right token included (test_api.py covers tokens). Not
# unsupported_method: see test_a_refused_method_names_the_allowed_ones.
schema.config.checks.update(
    excluded_check_names=["positive_data_acceptance", "ignored_auth", "unsupported_method"]
)


def utc_text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def time_ranges(longest: timedelta) -> st.SearchStrategy[tuple[datetime, datetime]]:
    """A start in 2030 and an end after it, up to `longest` later."""
    starts = st.datetimes(datetime(2030, 1, 1), datetime(2031, 1, 1), timezones=st.just(UTC))
    lengths = st.integers(1, int(longest.total_seconds()) // 60).map(
        lambda minutes: timedelta(minutes=minutes)
    )
    return st.tuples(starts, lengths).map(lambda pair: (pair[0], pair[0] + pair[1]))


def fitted_parts(case: Case) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """For what in `case` must name a seeded row or agree with another field, values
    that do: by container (path_parameters, query, body), the fields to replace."""
    operation = (case.operation.method, case.operation.path)
    seeded = {name: st.sampled_from(values) for name, values in SEEDED_PATH_VALUES.items()}
    if operation == ("post", "/events/{event_id}/cancel"):
        seeded["event_id"] = st.sampled_from(EVENT_IDS[:-1])
    parts = {
        "path_parameters": st.fixed_dictionaries(
            {name: seeded[name] for name in case.path_parameters if name in seeded}
        )
    }
    if operation == ("get", "/events"):
        # `to` after `from`, at most 366 days later (or a day more, which is refused).
        parts["query"] = time_ranges(timedelta(days=367)).map(
            lambda span: {"from": utc_text(span[0]), "to": utc_text(span[1])}
        )
    if operation == ("post", "/staff"):
        parts["body"] = st.fixed_dictionaries({"name": st.text(min_size=1), "email": st.emails()})
    if operation == ("post", "/events"):
        # An event lasts a day at most (or a little more, which is refused).
        parts["body"] = st.builds(
            lambda span, **ids: {"start": span[0].isoformat(), "end": utc_text(span[1]), **ids},
            time_ranges(timedelta(days=1, minutes=30)),
            title=st.text(min_size=1),
            event_type_id=st.sampled_from(EVENT_TYPE_IDS),
            staff_ids=st.lists(st.sampled_from(STAFF_IDS), min_size=1, unique=True),
            patient_ids=st.lists(st.sampled_from(PATIENT_IDS), unique=True),
            record_patient_id=st.none() | st.sampled_from(PATIENT_IDS),
        )
    return parts


def refit(case: Case, replaced: dict[str, dict[str, Any]]) -> Case:
    fitted = case.derive(keep_auth=True)
    for container, fields in replaced.items():
        setattr(fitted, container, {**getattr(case, container), **fields})
    return fitted


@schema.hook
def flatmap_case(context: schemathesis.HookContext, case: Case) -> st.SearchStrategy[Case]:
    """What fits the document rarely fits the server's rows: an id almost never names
    one, an event's times rarely agree. Often a case that fits the document is made to
    fit the seeded rows too (a case that does not fit it stays as it is: it is sent to
    be refused)."""
    if case.meta is None or case.meta.generation.mode is not schemathesis.GenerationMode.POSITIVE:
        return st.just(case)
    fitted = st.fixed_dictionaries(fitted_parts(case)).map(lambda parts: refit(case, parts))
    return st.one_of(st.just(case), fitted)


@schema.parametrize()
@FUZZ
def test_every_operation_answers_as_documented(case: Case, served: ServedApi) -> None:
    case.call_and_validate(base_url=served.url, headers=served.sam.auth)


def test_chained_operations_answer_as_documented(served: ServedApi) -> None:
    class Chained(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": served.url, "headers": served.sam.auth}

    Chained.run(settings=settings(FUZZ, max_examples=20, stateful_step_count=6))


def test_a_refused_method_names_the_allowed_ones(served: ServedApi) -> None:
    """Found by schemathesis's unsupported_method check."""
    answer = requests.put(served.url + "/staff", headers=served.sam.auth, timeout=SETUP_SECONDS)
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"
    allowed = set(answer.headers.get("Allow", "").replace(" ", "").split(","))
    assert allowed == {"GET", "HEAD", "POST"}  # HEAD comes with every GET
