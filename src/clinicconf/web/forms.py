"""Reading posted HTML forms, and showing their errors beside the fields."""

from __future__ import annotations

from aiohttp import web

from ..errors import ClinicConfError

# A form's text fields as typed; a ticked checkbox is present (value "on"), an unticked one absent.
FormData = dict[str, str]
# A field's name -> its message; "form" for a message about the form as a whole.
FormErrors = dict[str, str]

# Never sent back into a re-rendered page: the browser keeps no copy, and neither do we.
_SECRET_FIELDS = frozenset({"password", "password_repeat", "csrf_token"})


async def read_form(request: web.Request) -> FormData:
    posted = await request.post()
    return {name: value for name, value in posted.items() if isinstance(value, str)}


def kept_input(form: FormData) -> FormData:
    """What to show again in a form that comes back with an error."""
    return {name: value for name, value in form.items() if name not in _SECRET_FIELDS}


def field_errors(exc: ClinicConfError) -> FormErrors:
    return {exc.field or "form": exc.message}
