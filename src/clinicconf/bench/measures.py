"""What the benchmarks share in measuring and reporting: a process's CPU time, its
time waiting for a core and its memory, read from /proc; nearest-rank percentiles;
and their figures written into a section of a document (docs/benchmarks.md,
docs/reliability.md)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Final

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    """The smallest of `ordered` (sorted) with at least `fraction` of them at or below it."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def percentiles(values: list[float]) -> dict[str, float]:
    """The p50 and p95 of `values` (seconds) in milliseconds; {} without values."""
    if not values:
        return {}
    ordered = sorted(values)
    return {
        name: round(nearest_rank(ordered, fraction) * 1000, 2)
        for name, fraction in (("p50", 0.5), ("p95", 0.95))
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


def cpu_wait_seconds(pid: int) -> float:
    """How long the process's threads were ready to run but waited for a core."""
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(FileNotFoundError):  # a thread that has just ended
            waited += int((task / "schedstat").read_text().split()[1])
    return waited / 1e9


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def own_cpu_seconds() -> float:
    """This process's CPU time, every thread of it (not the server's: a child)."""
    times = os.times()
    return times.user + times.system


def write_doc(path: Path, text: str, begin: str, end: str, introduction: str = "") -> None:
    """Replace the section of the document at `path` between `begin` and `end`; when it
    is not there yet, add it at the end, after `introduction`."""
    document = path.read_text(encoding="utf-8")
    if begin in document and end in document:
        before, rest = document.split(begin, 1)
        after = rest.split(end, 1)[1]
        document = before + text + after
    else:
        document = document.rstrip("\n") + "\n\n" + introduction + text + "\n"
    path.write_text(document, encoding="utf-8")
