"""The staff, patient and event type directories: a list and a form to add one.

Every page follows the same course: GET shows the list and an empty form; POST
saves and redirects back to the list (303), which then confirms what was added;
a refused value shows the form again with the message beside its field and what
the user typed kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from ... import accounts
from ...errors import Conflict, PermissionDenied, ValidationError
from ...schedule import (
    EventType,
    EventTypeInput,
    Patient,
    PatientInput,
    Staff,
    StaffInput,
)
from ...security import hash_password
from ..forms import FormData, FormErrors, field_errors, kept_input, read_form
from ..middleware import current_user, scheduler_of
from ..protocol import error_answer
from ..rendering import render

routes = web.RouteTableDef()

Listed = TypeVar("Listed", Staff, Patient, EventType)
# Shows a directory page: the request, the form's input and its errors, the status.
ShowPage = Callable[[web.Request, FormData, FormErrors, int], Awaitable[web.Response]]


def _just_added(request: web.Request, items: list[Listed]) -> Listed | None:
    """The item named by ?added=<id>, which the redirect after saving points at."""
    added = request.query.get("added", "")
    return next((item for item in items if str(item.id) == added), None)


async def _save(
    request: web.Request,
    save: Callable[[FormData], Awaitable[int]],
    show: ShowPage,
    list_path: str,
) -> web.Response:
    form = await read_form(request)
    try:
        new_id = await save(form)
    except (ValidationError, Conflict) as exc:
        return await show(request, kept_input(form), field_errors(exc), error_answer(exc).status)
    raise web.HTTPSeeOther(f"{list_path}?added={new_id}")


def _ticked(form: FormData, name: str) -> bool:
    return name in form


# --- staff -----------------------------------------------------------------------------


async def _staff_page(
    request: web.Request, form: FormData, errors: FormErrors, status: int = 200
) -> web.Response:
    user = current_user(request)
    staff = await scheduler_of(request).list_staff()
    return render(
        request,
        "staff.html",
        status=status,
        staff=staff,
        added=_just_added(request, staff),
        can_add=user.is_admin,
        form=form,
        errors=errors,
        min_password_length=accounts.MIN_PASSWORD_LENGTH,
    )


@routes.get("/staff")
async def staff_list(request: web.Request) -> web.Response:
    return await _staff_page(request, {}, {})


@routes.post("/staff")
async def add_staff(request: web.Request) -> web.Response:
    user = current_user(request)
    # Checked here as well as in the Scheduler, before hashing a password for nothing.
    if not user.is_admin:
        raise PermissionDenied("Only an administrator can add staff members.")

    async def save(form: FormData) -> int:
        password = form.get("password", "")
        if password:  # empty is allowed: see below
            accounts.check_password_length(password)
        data = StaffInput(
            name=form.get("name", ""),
            email=form.get("email", ""),
            phone=form.get("phone"),
            is_admin=_ticked(form, "is_admin"),
        )
        # No password: the account exists (it can be invited to events) but cannot sign in.
        password_hash = await hash_password(password) if password else None
        return (await scheduler_of(request).create_staff(user, data, password_hash)).id

    return await _save(request, save, _staff_page, "/staff")


# --- patients --------------------------------------------------------------------------


async def _patients_page(
    request: web.Request, form: FormData, errors: FormErrors, status: int = 200
) -> web.Response:
    current_user(request)
    patients = await scheduler_of(request).list_patients()
    return render(
        request,
        "patients.html",
        status=status,
        patients=patients,
        added=_just_added(request, patients),
        form=form,
        errors=errors,
    )


@routes.get("/patients")
async def patient_list(request: web.Request) -> web.Response:
    return await _patients_page(request, {}, {})


@routes.post("/patients")
async def add_patient(request: web.Request) -> web.Response:
    user = current_user(request)

    async def save(form: FormData) -> int:
        data = PatientInput(
            name=form.get("name", ""),
            record_number=form.get("record_number", ""),
            email=form.get("email"),
            phone=form.get("phone"),
        )
        return (await scheduler_of(request).create_patient(user, data)).id

    return await _save(request, save, _patients_page, "/patients")


# --- event types -----------------------------------------------------------------------


async def _event_types_page(
    request: web.Request, form: FormData, errors: FormErrors, status: int = 200
) -> web.Response:
    user = current_user(request)
    event_types = await scheduler_of(request).list_event_types()
    return render(
        request,
        "event_types.html",
        status=status,
        event_types=event_types,
        added=_just_added(request, event_types),
        can_add=user.is_admin,
        form=form,
        errors=errors,
    )


@routes.get("/event-types")
async def event_type_list(request: web.Request) -> web.Response:
    return await _event_types_page(request, {}, {})


@routes.post("/event-types")
async def add_event_type(request: web.Request) -> web.Response:
    user = current_user(request)

    async def save(form: FormData) -> int:
        data = EventTypeInput(
            name=form.get("name", ""),
            video_conferencing=_ticked(form, "video_conferencing"),
            public_conference=_ticked(form, "public_conference"),
            colour=form.get("colour", ""),
        )
        return (await scheduler_of(request).create_event_type(user, data)).id

    return await _save(request, save, _event_types_page, "/event-types")
