"""The clinicconf command run as a clinic's administrator runs it, on the test's event
loop, and what its `check` reports, by subject."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Mapping

_LINE = re.compile(r"(ok|warning|problem) +([^:]+): (.*)")


async def clinicconf(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """`python -m clinicconf ARGS` as an administrator runs it; its exit code, output
    and errors. Not subprocess.run: the stand-ins answer on this event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clinicconf", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def findings(output: str) -> dict[str, tuple[str, str]]:
    """What check printed, by subject: (verdict, text)."""
    lines = [match.groups() for match in map(_LINE.fullmatch, output.splitlines()) if match]
    return {subject: (verdict, text) for verdict, subject, text in lines}
