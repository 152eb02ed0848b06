"""Join link landing pages: `/j/<token>` (one person's link) and `/p/<token>` (a Public
Conference's shared link).

The token is the only credential, so it is never logged (web/logging.py redacts
these paths) nor sent to other sites (Referrer-Policy: no-referrer), and a page
shows a visitor only what their link entitles them to: a patient never sees
another patient's name. A token that opens nothing gets one page whatever the
reason, and counts against the visitor's address (web/middleware.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web

from ... import audit, keys, names
from ...conference.identity import Identity
from ...conference.visibility import seen_by
from ...links import JoinLink, JoinState, LinkWindow
from ...schedule import Event, Patient, Staff
from ..forms import FormData, FormErrors, read_form
from ..rendering import render

routes = web.RouteTableDef()

# The page and HTTP status for a link that cannot be used now.
_CLOSED_STATUS: Final[dict[JoinState, int]] = {
    "cancelled": 410,
    # Not 425 Too Early: that status is about replayable TLS early data (RFC 8470),
    # and some clients retry it by themselves. 403 says "not allowed now"; the page
    # says when it will be.
    "early": 403,
    "ended": 410,
}


@dataclass(frozen=True)
class OpenedLink:
    """A join link, its event and whether it can be used at this moment."""

    link: JoinLink
    event: Event
    window: LinkWindow
    state: JoinState
    # Whose link it is; None for a public link.
    person: Staff | Patient | None


async def open_join_link(
    app: web.Application, token: str, kind: Literal["personal", "public"]
) -> OpenedLink | None:
    """What a token opens, or None when it opens nothing."""
    scheduler = app[keys.SCHEDULER]
    link = await scheduler.links.resolve(app[keys.DATABASE], token, kind)
    if link is None:
        return None
    event = await scheduler.get_event(link.event_id)
    window = event.window(app[keys.SETTINGS].join_window_minutes)
    state: JoinState = "cancelled" if event.cancelled else window.state_now()
    person: Staff | Patient | None = None
    if link.kind != "public" and link.person_id is not None:
        person = event.person(link.kind, link.person_id)
        if person is None and link.kind == "staff":
            # An administrator's own link ("Get My Conference Link") to an event they
            # are not on. Whoever is no longer an administrator has no place there.
            staff = await scheduler.get_staff(link.person_id)
            person = staff if staff.is_admin else None
        if person is None:
            return None
    return OpenedLink(link, event, window, state, person)


@dataclass(frozen=True)
class Invitee:
    name: str
    is_you: bool = False


def invitees_seen_by(opened: OpenedLink) -> tuple[list[Invitee], list[Invitee]]:
    """The staff and the patients of the event as this link's holder may see them,
    by the conference's one rule (conference/visibility.py)."""
    holder = _holder(opened)
    staff = [Identity("staff", s.name, s.id) for s in opened.event.staff]
    patients = [Identity("patient", p.name, p.id) for p in opened.event.patients]
    return _seen(holder, staff), _seen(holder, patients)


def _holder(opened: OpenedLink) -> Identity:
    """Whom the link is for: a linked person, or (the public link) some guest."""
    link = opened.link
    if link.kind == "public" or opened.person is None:
        return Identity("guest", "")
    return Identity(link.kind, opened.person.name, opened.person.id)


def _seen(holder: Identity, people: list[Identity]) -> list[Invitee]:
    return [
        Invitee(seen.name, person.key == holder.key)
        for person in people
        if (seen := seen_by(holder, person)) is not None
    ]


async def _record_opening(app: web.Application, opened: OpenedLink) -> None:
    """Audited as the link's holder. Anyone may open the public link again and again:
    audit.write bounds a guest's rows."""
    holder = _holder(opened)
    subject = None if holder.person_id is None else (holder.kind, holder.person_id)
    await audit.write(
        app[keys.DATABASE],
        holder.actor,
        "link_opened",
        event_id=opened.link.event_id,
        subject=subject,
        state=opened.state,
    )


def _landing_page(
    request: web.Request,
    opened: OpenedLink,
    *,
    display_name: str | None = None,
    form: FormData | None = None,
    errors: FormErrors | None = None,
    status: int = 200,
) -> web.Response:
    staff, patients = invitees_seen_by(opened)
    return render(
        request,
        "join.html",
        status=status,
        event=opened.event,
        person=opened.person,
        is_public=opened.link.kind == "public",
        is_host=opened.link.kind == "staff",
        staff=staff,
        patients=patients,
        display_name=display_name,
        form=form or {},
        errors=errors or {},
        max_display_name=names.MAX_DISPLAY_NAME,
        ws_path=request.path + "/ws",
    )


def _closed_page(request: web.Request, opened: OpenedLink | None) -> web.Response:
    if opened is None:
        return render(request, "join_closed.html", status=404, state="unknown", event=None)
    return render(
        request,
        "join_closed.html",
        status=_CLOSED_STATUS[opened.state],
        state=opened.state,
        event=opened.event,
        opens_at=opened.window.opens_at,
    )


async def _show(request: web.Request, kind: Literal["personal", "public"]) -> web.Response:
    opened = await open_join_link(request.app, request.match_info["token"], kind)
    if opened is not None:
        await _record_opening(request.app, opened)
    if opened is None or opened.state != "open":
        return _closed_page(request, opened)
    return _landing_page(request, opened)


@routes.get("/j/{token}")
async def personal_link(request: web.Request) -> web.Response:
    return await _show(request, "personal")


@routes.get("/p/{token}")
async def public_link(request: web.Request) -> web.Response:
    return await _show(request, "public")


@routes.post("/p/{token}")
async def choose_display_name(request: web.Request) -> web.Response:
    """A public guest says what name to join under. Nothing is stored: the lobby,
    a later step, takes the name from here."""
    opened = await open_join_link(request.app, request.match_info["token"], "public")
    if opened is None or opened.state != "open":
        return _closed_page(request, opened)
    form = await read_form(request)
    name = names.clean(form.get("display_name", ""))
    if not name:
        error = "Please type the name the others will see."
    elif len(name) > names.MAX_DISPLAY_NAME:
        error = f"Use at most {names.MAX_DISPLAY_NAME} characters."
    else:
        return _landing_page(request, opened, display_name=name, form={"display_name": name})
    return _landing_page(
        request,
        opened,
        form={"display_name": form.get("display_name", "")},
        errors={"display_name": error},
        status=422,
    )
