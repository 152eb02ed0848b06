"""Signing in and out, and the first-run setup link that creates the first administrator."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from ... import accounts, keys
from ...accounts import StaffUser
from ...errors import ValidationError
from ...schedule import StaffInput
from ...security import hash_password
from ...throttle import in_minutes, record_lockout
from ..forms import FormData, FormErrors, field_errors, kept_input, read_form
from ..middleware import SESSION_COOKIE, client_address, idle_sign_out_message, set_session_cookie
from ..protocol import error_answer
from ..rendering import render

routes = web.RouteTableDef()

SIGN_IN_FAILED: Final = "Email or password is incorrect."


def safe_next(target: str | None) -> str:
    r"""Where to go after signing in: only a path on this site. Browsers read "//host",
    "/\host" and "/<tab>/host" (they drop tabs and newlines) as another site."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or not target.isprintable()
    ):
        return "/"
    return target


def _signed_in_redirect(request: web.Request, token: str, to: str) -> web.HTTPSeeOther:
    redirect = web.HTTPSeeOther(to)
    set_session_cookie(request, redirect, token)
    return redirect


def _sign_in_form(
    request: web.Request, email: str, next_path: str, error: str | None = None, status: int = 200
) -> web.Response:
    return render(request, "signin.html", status=status, email=email, next=next_path, error=error)


@routes.get("/signin")
async def sign_in_page(request: web.Request) -> web.Response:
    if request.get(keys.USER) is not None:
        raise web.HTTPSeeOther("/")
    # Automatic logoff sends the person here; they should know why.
    notice = idle_sign_out_message(request) if request.query.get("signed_out") == "idle" else None
    return _sign_in_form(request, "", safe_next(request.query.get("next")), notice)


@routes.post("/signin")
async def sign_in(request: web.Request) -> web.Response:
    form = await read_form(request)
    next_path = safe_next(form.get("next"))
    email, address = form.get("email", ""), client_address(request)
    throttle = request.app[keys.GUESSING_THROTTLE]
    if seconds := throttle.seconds_to_wait(email, address):
        message = f"Too many failed sign-ins. Please wait {in_minutes(seconds)} and try again."
        return _sign_in_form(request, email, next_path, message, 429)
    db = request.app[keys.DATABASE]
    user = await accounts.authenticate(db, email, form.get("password", ""))
    if user is None:
        for locked_by in throttle.failed(email, address):
            staff_id = (
                await accounts.staff_id_for_email(db, email) if locked_by == "account" else None
            )
            await record_lockout(db, "password", locked_by, address, staff_id)
        return _sign_in_form(request, email, next_path, SIGN_IN_FAILED, 400)
    throttle.succeeded(email)
    token = await accounts.start_session(db, user)
    raise _signed_in_redirect(request, token, next_path)


@routes.post("/signout")
async def sign_out(request: web.Request) -> web.Response:
    if token := request.cookies.get(SESSION_COOKIE):
        await accounts.end_session(request.app[keys.DATABASE], token)
    redirect = web.HTTPSeeOther("/signin")
    redirect.del_cookie(SESSION_COOKIE)
    raise redirect


# --- first-run setup -------------------------------------------------------------------


async def _setup_unavailable(request: web.Request) -> web.Response:
    """The page for a setup link that cannot be used, saying why."""
    if await accounts.staff_count(request.app[keys.DATABASE]) > 0:
        return render(
            request,
            "error.html",
            status=410,
            title="Setup is already done",
            message="An administrator account exists already. Please sign in.",
        )
    return render(
        request,
        "error.html",
        status=404,
        title="This setup link is not valid",
        message="Use the most recent link printed when the server started.",
    )


def _setup_form(
    request: web.Request, form: FormData, errors: FormErrors, status: int = 200
) -> web.Response:
    return render(
        request,
        "setup.html",
        status=status,
        form=form,
        errors=errors,
        min_password_length=accounts.MIN_PASSWORD_LENGTH,
    )


def check_new_password(password: str, repeated: str) -> None:
    accounts.check_password_length(password)
    if password != repeated:
        raise ValidationError("The two passwords are not the same.", "password_repeat")


@routes.get("/setup/{token}")
async def setup_page(request: web.Request) -> web.Response:
    if not await accounts.setup_token_valid(
        request.app[keys.DATABASE], request.match_info["token"]
    ):
        return await _setup_unavailable(request)
    return _setup_form(request, {}, {})


@routes.post("/setup/{token}")
async def setup(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    db = request.app[keys.DATABASE]
    if not await accounts.setup_token_valid(db, token):
        return await _setup_unavailable(request)
    form = await read_form(request)
    data = StaffInput(form.get("name", ""), form.get("email", ""), form.get("phone"))
    try:
        check_new_password(form.get("password", ""), form.get("password_repeat", ""))
        # create_first_admin checks the token again inside its transaction: two
        # people racing with the same link cannot both become administrator.
        staff = await request.app[keys.SCHEDULER].create_first_admin(
            token, data, await hash_password(form.get("password", ""))
        )
    except ValidationError as exc:
        return _setup_form(
            request, kept_input(form), field_errors(exc), status=error_answer(exc).status
        )
    user = StaffUser(staff.id, staff.name, staff.email, staff.is_admin)
    raise _signed_in_redirect(request, await accounts.start_session(db, user), "/")
