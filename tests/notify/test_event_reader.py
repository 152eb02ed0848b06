"""The outbox composes its messages from what an EventReader gives it: the event as
it is now and its recipient, through notify's own small interface (here a fake)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinicconf.config import Settings
from clinicconf.errors import NotFound
from clinicconf.links import JoinLinks
from clinicconf.notify.delivery import DeliveryError, EmailOut
from clinicconf.notify.messages import compose
from clinicconf.schedule import Event, EventType, Patient, Staff

SAM = Staff(7, "Sam Staff", "sam@clinic.test", None, is_admin=False)
START = datetime(2030, 5, 6, 14, 0, tzinfo=UTC)
EVENT = Event(
    id=3,
    title="Follow-up",
    event_type=EventType(1, "Telehealth", "#3a7bd5", True, False),
    start=START,
    end=START + timedelta(minutes=30),
    status="cancelled",
    record_patient_id=None,
    sequence=2,
)


class Schedule:
    """An EventReader over a few values, for messages that need nothing stored."""

    def __init__(self, *events: Event, staff: tuple[Staff, ...] = ()) -> None:
        self._events = {e.id: e for e in events}
        self._staff = {s.id: s for s in staff}

    async def get_event(self, event_id: int) -> Event:
        if event_id not in self._events:
            raise NotFound("No such event.")
        return self._events[event_id]

    async def get_staff(self, staff_id: int) -> Staff:
        if staff_id not in self._staff:
            raise NotFound("No such staff member.")
        return self._staff[staff_id]

    async def get_patient(self, patient_id: int) -> Patient:
        raise NotFound("No such patient.")


def cancellation_to(recipient_id: int, event_id: int = EVENT.id) -> dict[str, Any]:
    return {
        "id": 11,
        "kind": "cancellation",
        "channel": "email",
        "event_id": event_id,
        "recipient_kind": "staff",
        "recipient_id": recipient_id,
    }


async def write(schedule: Schedule, row: dict[str, Any]) -> EmailOut:
    # A cancellation carries no join link: nothing is read from the database.
    message = await compose(
        None,  # type: ignore[arg-type]
        Settings(),
        JoinLinks(b"k" * 32, "https://clinic.example"),
        schedule,
        row,  # type: ignore[arg-type]
    )
    assert isinstance(message, EmailOut)
    return message


async def test_a_cancellation_reaches_someone_the_reader_finds_off_the_event() -> None:
    message = await write(Schedule(EVENT, staff=(SAM,)), cancellation_to(SAM.id))
    assert message.outbox_id == 11
    assert message.message["To"] == "Sam Staff <sam@clinic.test>"
    assert str(message.message["Subject"]).startswith("Cancelled: Follow-up, ")


@pytest.mark.parametrize("row", [cancellation_to(SAM.id, event_id=99), cancellation_to(8)])
async def test_what_the_reader_no_longer_finds_is_not_sent(row: dict[str, Any]) -> None:
    with pytest.raises(DeliveryError, match="no longer exists") as failure:
        await write(Schedule(EVENT, staff=(SAM,)), row)
    assert failure.value.permanent
