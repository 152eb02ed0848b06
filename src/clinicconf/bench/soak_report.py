"""What a soak comes to (bench/soak.py says how it is measured): the server's memory
after warm-up (its slope, and whether that is within noise), its CPU, and everything
lost; as Markdown list items under the table, and the section of
docs/reliability.md."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import aiohttp
import aiortc

from .measures import nearest_rank
from .soak_load import HEADER, MIB, STALL_SECONDS, Sample, Soak, row

WARM_UP_SECONDS: Final = 120.0
GROWTH_FLOOR_MIB: Final = 1.0  # per 10 minutes: under 50 MiB over an 8-hour day
DOC_PATH: Final = Path(__file__).resolve().parents[3] / "docs" / "reliability.md"
DOC_BEGIN: Final = "<!-- bench-soak: begin (written by python -m clinicconf.bench.soak --write) -->"
DOC_END: Final = "<!-- bench-soak: end -->"
DOC_INTRODUCTION: Final = (
    "## Load and soak\n\nWritten by `python -m clinicconf.bench.soak --write`"
    " (src/clinicconf/bench/soak.py says how it measures).\n\n"
)


@dataclass
class MemoryTrend:
    samples: int
    slope: float  # MiB per 10 minutes
    standard_error: float  # of the slope, same unit
    spread: float  # max - min, MiB

    @property
    def threshold(self) -> float:
        return max(2 * self.standard_error, GROWTH_FLOOR_MIB)

    @property
    def grows(self) -> bool:
        return self.slope > self.threshold


def memory_trend(samples: list[Sample], warm_up: float) -> MemoryTrend | None:
    """Least squares of memory against time after warm-up; None with fewer than three
    samples (a slope and its error need them)."""
    kept = [s for s in samples if s.at > warm_up]
    if len(kept) < 3:
        return None
    times = [s.at / 600 for s in kept]  # in units of 10 minutes
    mib = [s.rss_bytes / MIB for s in kept]
    fit = statistics.linear_regression(times, mib)
    residuals = [m - (fit.intercept + fit.slope * t) for t, m in zip(times, mib, strict=True)]
    mean_time = statistics.fmean(times)
    spread_of_times = sum((t - mean_time) ** 2 for t in times)
    variance = sum(r * r for r in residuals) / (len(kept) - 2)
    return MemoryTrend(
        len(kept), fit.slope, math.sqrt(variance / spread_of_times), max(mib) - min(mib)
    )


def warm_up_seconds(minutes: float) -> float:
    return min(WARM_UP_SECONDS, minutes * 60 / 2)


def summary(result: Soak) -> list[str]:
    """The figures under the table, as Markdown list items, the verdicts last."""
    options, samples = result.options, result.samples
    warm_up = warm_up_seconds(options.minutes)
    trend = memory_trend(samples, warm_up)
    in_media = len(result.participants) - result.without_media_at_end
    join_failures = Counter(f for c in result.conferences for f in c.failures)
    cpu = [s.cpu_share for s in samples]
    loads = [s.load_average for s in samples]
    lost_pictures = (
        max(0.0, 1 - result.pictures_received / result.pictures_expected)
        if result.pictures_expected
        else 0.0
    )
    pictures_per_second = statistics.fmean(s.pictures_per_second for s in samples)
    lines = [
        f"- Held: {options.conferences} conferences x {options.people} people"
        f" ({len(result.participants)} joined, {in_media} with media at the end) and"
        f" {len(result.pages)} of {options.idle_pages} idle pages, for"
        f" {samples[-1].at / 60:.1f} minutes, sampled every {options.sample_seconds:g} s.",
    ]
    if trend is None:
        lines.append("- Memory after warm-up: too few samples to fit a slope.")
    else:
        lines.append(
            f"- Server memory after warm-up (samples after {warm_up / 60:g} min,"
            f" {trend.samples} of them): slope {trend.slope:+.2f} MiB per 10 minutes"
            f" (standard error {trend.standard_error:.2f}), max - min {trend.spread:.1f} MiB;"
            f" within noise means under {trend.threshold:.2f} MiB per 10 minutes (twice the"
            f" standard error, or {GROWTH_FLOOR_MIB:g} MiB if that is larger)."
        )
    lines += [
        f"- Server CPU (share of one core): mean {statistics.fmean(cpu):.1%},"
        f" p95 {nearest_rank(sorted(cpu), 0.95):.1%}; open file descriptors"
        f" {min(s.fds for s in samples)} to {max(s.fds for s in samples)}.",
        f"- Pictures: {result.pictures_received:,} received of {result.pictures_expected:,}"
        f" sent to subscribers ({lost_pictures:.2%} lost), {pictures_per_second:,.0f} per"
        " second on average.",
        f"- Load average (1 min) during the hold: {min(loads):.2f} to {max(loads):.2f}, mean"
        f" {statistics.fmean(loads):.2f}, on {os.cpu_count()} CPUs; the load process used"
        f" {statistics.fmean(s.load_cpu_share for s in samples):.0%} of a core on average;"
        f" waiting for a core: the server {statistics.fmean(s.cpu_wait_share for s in samples):.0%}"
        f" of the time, the load process"
        f" {statistics.fmean(s.load_cpu_wait_share for s in samples):.0%}.",
        f"- Lost: pages closed by the server {result.pages_closed.total()}"
        f"{_counted(result.pages_closed)}; participants without media at the end"
        f" {result.without_media_at_end}; media stops of {STALL_SECONDS:g} s or more"
        f" {sum(result.stalls)} (in {sum(1 for n in result.stalls if n)} participants);"
        f" failed joins {join_failures.total() + len(result.page_failures)}"
        f"{_counted(join_failures + Counter(result.page_failures))};"
        f" errors in the server's log {result.server_errors}.",
    ]
    nothing_lost = not (
        result.pages_closed or result.without_media_at_end or any(result.stalls) or join_failures
        or result.page_failures or result.server_errors
    )  # fmt: skip
    lines.append("- **nothing lost**" if nothing_lost else "- **something was lost** (above)")
    if trend is not None and trend.grows:
        lines.append(f"- **memory grows after warm-up**: {trend.slope:+.2f} MiB per 10 minutes")
    elif trend is not None:
        # Flat memory says little about a load that fell away.
        held = "" if nothing_lost else ", but under less than the load set out (above)"
        lines.append(f"- **memory does not grow after warm-up**{held}")
    return lines


def _counted(reasons: Counter[str] | Counter[int | None]) -> str:
    if not reasons:
        return ""
    return " (" + ", ".join(f"{reason}: {n}" for reason, n in reasons.most_common()) + ")"


def as_markdown(result: Soak, argv: Sequence[str]) -> str:
    machine = (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}),"
        f" Linux {platform.release()}, Python {platform.python_version()},"
        f" aiortc {aiortc.__version__}, aiohttp {aiohttp.__version__}"
    )
    return "\n".join(
        [
            DOC_BEGIN,
            f"{date.today().isoformat()}, {machine}; the server pinned to the first core, the"
            " load process to the others (what else ran on the machine: see the load average).",
            "",
            "```",
            " ".join(["python -m clinicconf.bench.soak", *argv]),
            "```",
            "",
            HEADER,
            *(row(s) for s in result.samples),
            "",
            *summary(result),
            DOC_END,
        ]
    )
