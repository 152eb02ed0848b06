"""Staff accounts to act as: made through the real scheduler, with a password to sign
in with and an API token."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from clinicconf import accounts, keys
from clinicconf.schedule import StaffInput
from clinicconf.scheduling import Scheduler
from clinicconf.security import hash_password

ADMIN_PASSWORD = "correct horse battery"
STAFF_PASSWORD = "staple battery horse"


@dataclass
class Account:
    id: int
    email: str
    password: str
    api_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}


async def make_account(
    app: web.Application, name: str, email: str, password: str, *, admin: bool
) -> Account:
    scheduler: Scheduler = app[keys.SCHEDULER]
    staff = await scheduler.create_staff(
        None, StaffInput(name, email, "+12025550123", admin), await hash_password(password)
    )
    token = await accounts.create_api_token(app[keys.DATABASE], staff.id)
    return Account(staff.id, email, password, token)
