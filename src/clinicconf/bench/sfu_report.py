"""What an SFU benchmark run comes to (bench/sfu.py says how it is measured): the CPU
per forwarded video and per packet (slopes over the steps the server kept up with),
videos, packets and consultations per core for each conference size, against the
transcoding baseline; as JSON, and as the Markdown section of docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from typing import Any, Final

import aiortc

from .counting import EVERYONE_RECEIVES_SECONDS
from .sfu_load import HEADER, MAX_LATENCY_P95_MS, MAX_LOSS, Run, Step, pair, row

# The size whose figures are the summary's (`videos_per_core` and the others), when
# measured: the largest otherwise.
MAIN_SIZE: Final = 6
DOC_BEGIN: Final = "<!-- bench-sfu: begin (written by python -m clinicconf.bench.sfu --write) -->"
DOC_END: Final = "<!-- bench-sfu: end -->"
_SIZE_NAMES: Final = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six"}


def slope(steps: list[Step], x: Callable[[Step], float] = lambda s: s.videos) -> float:
    """CPU (share of a core) per unit of `x` (a forwarded video, by default), by least
    squares through the origin over the steps the server kept up with: past that, the
    CPU cannot grow any more."""
    kept_up = [s for s in steps if s.kept_up] or steps[:1]
    if len(kept_up) == 1:
        return kept_up[0].cpu_share / x(kept_up[0])
    xs, ys = [x(s) for s in kept_up], [s.cpu_share for s in kept_up]
    return statistics.linear_regression(xs, ys, proportional=True).slope


def _size_summary(steps: list[Step]) -> dict[str, Any]:
    people = steps[0].people
    per_video = slope(steps)
    per_packet = slope(steps, lambda s: s.packets_per_second)
    kept_up = [s for s in steps if s.kept_up]
    return {
        "people": people,
        "cpu_per_video": per_video,
        "videos_per_core": 1 / per_video,
        "consultations_per_core": 1 / per_video / (people * (people - 1)),
        "packets_per_core": 1 / per_packet,
        "most_videos_kept_up": max((s.videos for s in kept_up), default=0),
        "most_consultations_kept_up": max((s.conferences for s in kept_up), default=0),
    }


def report(measured: Run) -> dict[str, Any]:
    """The figures: those of MAIN_SIZE (or the largest measured) under today's names,
    each size's under `sizes`; None for what could not be measured."""
    sizes = {people: steps for people, steps in measured.sizes.items() if steps}
    summaries = {str(people): _size_summary(steps) for people, steps in sizes.items()}
    main: dict[str, Any] = {}
    if sizes:
        main = summaries[str(MAIN_SIZE if MAIN_SIZE in sizes else max(sizes))]
    per_video = main.get("cpu_per_video")
    transcoded = slope(measured.transcode) if measured.transcode else None
    everything = [s for steps in sizes.values() for s in steps]
    burst = measured.burst
    return {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}),"
        f" Linux {platform.release()}, Python {platform.python_version()},"
        f" aiortc {aiortc.__version__}",
        "main_size": main.get("people"),
        "cpu_per_video": {"packets": per_video, "transcode": transcoded},
        "videos_per_core": {
            "packets": main.get("videos_per_core"),
            "transcode": None if transcoded is None else 1 / transcoded,
        },
        "ratio": None if per_video is None or transcoded is None else transcoded / per_video,
        "most_videos_kept_up": main.get("most_videos_kept_up", 0),
        "packets_per_core": main.get("packets_per_core"),
        "consultations_per_core": {k: s["consultations_per_core"] for k, s in summaries.items()},
        # The worst step's.
        "first_picture_ms": {
            q: max((s.first_picture_ms[q] for s in everything if s.first_picture_ms), default=None)
            for q in ("p50", "p95")
        },
        "load_cpu": max((s.load_cpu for s in everything), default=None),
        "burst": None if burst is None else asdict(burst) | {"participants": burst.participants},
        "failures": measured.failures,
        "sizes": summaries,
        "steps": [s.as_json() for s in [*everything, *measured.transcode]],
    }


def _figure(value: float | None, form: str) -> str:
    return "n/a" if value is None else format(value, form)


def as_markdown(summary: dict[str, Any], steps: list[Step]) -> str:
    per_video, per_core = summary["cpu_per_video"], summary["videos_per_core"]
    lines = [
        DOC_BEGIN,
        f"{summary['date']}, {summary['machine']}; the server on one core, a fresh server"
        " for each conference size, for the baseline and for the burst.",
        "",
        HEADER,
        *(row(s) for s in steps),
        "",
    ]
    for size in summary["sizes"].values():
        people = size["people"]
        name = _SIZE_NAMES.get(people, str(people))
        lines.append(
            f"- {name}-person conferences: **{size['consultations_per_core']:.0f}"
            f" consultations per core** ({size['videos_per_core']:.0f} videos with their"
            f" sound, **{size['packets_per_core']:,.0f} packets/s** per core); the most"
            f" measured while the server kept up: {size['most_consultations_kept_up']}"
            f" ({size['most_videos_kept_up']} videos)."
        )
    lines += [
        f"- CPU per forwarded video ({summary['main_size']} people, slope): packets"
        f" {_figure(per_video['packets'], '.2%')} of a core,"
        f" transcode {_figure(per_video['transcode'], '.2%')}.",
        f"- Forwarded videos per core: **{_figure(per_core['packets'], '.0f')}** (packets)"
        f" against **{_figure(per_core['transcode'], '.1f')}** (transcode):"
        f" **{_figure(summary['ratio'], '.0f')}x**.",
        f"- Most videos measured while the server kept up (under {MAX_LOSS:.0%} of pictures"
        f" lost, latency p95 under {MAX_LATENCY_P95_MS:.0f} ms):"
        f" {summary['most_videos_kept_up']}.",
    ]
    burst = summary["burst"]
    if burst is not None:
        lines.append(
            f"- First picture, {burst['participants']} people ({burst['conferences']}"
            f" conferences of {burst['people']}) joining at once:"
            f" **{pair(burst['first_picture_ms'])}** ({burst['pictured']} of"
            f" {burst['pairs']} pictures within {EVERYONE_RECEIVES_SECONDS:.0f} s)."
        )
    lines.append(
        f"- The load process's CPU: at most {_figure(summary['load_cpu'], '.0%')} of its core."
    )
    lines += [f"- Could not be brought up: {failure}." for failure in summary["failures"]]
    lines += ["", "```json", json.dumps(summary, indent=1), "```", DOC_END]
    return "\n".join(lines)
