"""The SFU under growing load: how many packets, 640x480 videos and consultations one
core forwards in two-, three- and six-person conferences, how fast a new subscriber
gets a first picture, and how that compares with decoding and encoding each video
again (the transcoding baseline), measured in the same run on the same machine.

For each conference size of --sizes (PEOPLE:STEPS, such as 2:20,40,60), it starts a
fresh server in a process of its own on 127.0.0.1, pinned to the first core (this
load process runs on the others), then adds conferences step by step until each step's
number is held: each of PEOPLE headless participants (bench/participant.py's
`PacketParticipant`), every one sending a pre-encoded VP8 clip at 25 fps (about 900
kbit/s) and Opus at 50 packets a second, and receiving everyone else without
moderator mode, so a conference of N forwards N x (N - 1) videos and as many sounds.
The load is cheap, so that it measures the server and not itself: publishers send
the clip's packets through the server's own `PacketOutlet` on a timer of their own,
and receivers count packets and pictures from the RTP headers (in the clear under
SRTP), decrypting one video packet in eight. After each step (once everyone receives
everyone, and WARM_UP_SECONDS more), over --seconds, a row of:

- packets/s out: packets a second the server sent (as the participants received them);
- server CPU: the share of its core (from /proc), and packets/s per core: packets/s
  divided by that share;
- pictures lost: pictures the publishers sent (their marker packets) times their
  subscribers, against pictures received (nothing is NACKed: a dropped packet is lost);
- latency p50 / p95, added by the server: a video packet's payload is forwarded
  unchanged, so a subscriber matches a sample of them with the moment its publisher
  sent them (one process, one clock);
- first picture p50 / p95: for each participant who joined in the step and each
  publisher it receives, from the later of their two `join_media` to the first video
  packet of that publisher (which the server starts with a keyframe, replayed from
  the one it kept when it has one);
- memory: the server's resident memory;
- load CPU: this process's own share of a core (os.times), its event loop's lag p95
  (how late a callback due every 10 ms ran) and the publishers' ticks it missed, if
  any: a load that cannot keep up shows there, not only as the server's latency or
  loss. (In two-person conferences the load sends as many packets as the server
  does, so it costs about as much as the server; in six-person ones far less.)

For each size, the CPU per forwarded video is the slope of CPU against videos (least
squares through the origin, over the steps with under MAX_LOSS lost and latency p95
under MAX_LATENCY_P95_MS); its inverse is the videos per core, divided by a
conference's videos the consultations per core; the same slope against packets/s
gives the packets per core. Then, on a fresh server: the transcoding baseline (one
conference of --baseline-people), and the burst: --burst's conferences (6:3, three
of six people: 18 participants) joining media at once, with the first picture of
each (participant, publisher) pair; a pair without a picture within
EVERYONE_RECEIVES_SECONDS counts as that long. See docs/benchmarks.md, which --write
updates.

    python -m clinicconf.bench.sfu [--sizes 2:10,20,30 3:5,10,15 6:2,4,6]
        [--seconds 8] [--baseline-people 2] [--burst 6:3] [--timeout 600] [--write]

Exits 0 whatever the figures; 1 when a step could not be brought up, or the run
overstayed --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import aiohttp
import aiortc

from ..config import Forwarding
from ..sfu import ice
from . import clip
from .participant import Line, PacketParticipant
from .server import (
    SetupFailed,
    as_client,
    bench_settings,
    run_bounded,
    running_server,
    schedule_conferences,
    server_core,
)

EVERYONE_RECEIVES_SECONDS: Final = 30.0
# More lost than this, or later than this, and the server did not keep up: the step
# says so, but does not count towards the slope.
MAX_LOSS: Final = 0.01
MAX_LATENCY_P95_MS: Final = 100.0
WARM_UP_SECONDS: Final = 2.0
DEFAULT_SIZES: Final = ("2:10,20,30", "3:5,10,15", "6:2,4,6")
DEFAULT_SECONDS: Final = 8.0
DEFAULT_BURST: Final = "6:3"
# The size whose figures are the summary's (`videos_per_core` and the others), when
# measured: the largest otherwise.
MAIN_SIZE: Final = 6
# How often the load's own lag is probed.
LAG_PROBE_SECONDS: Final = 0.01
# Participants closed at once at the end of a size.
CLOSING_AT_ONCE: Final = 20
# Latency samples kept per participant between two readings.
MAX_SAMPLES: Final = 100_000
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
# A payload's last bytes tell it from the clip's others (each packet of the clip is
# different); a subscriber looks up when its publisher sent it.
_TAIL: Final = 24
DOC_BEGIN: Final = "<!-- bench-sfu: begin (written by python -m clinicconf.bench.sfu --write) -->"
DOC_END: Final = "<!-- bench-sfu: end -->"
_SIZE_NAMES: Final = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six"}


class SendLog:
    """When each publisher sent each video payload, by its last bytes; the pictures
    each sent; when each asked to join media."""

    def __init__(self) -> None:
        self.sent: dict[str, dict[bytes, float]] = {}
        self.frames: dict[str, int] = {}  # pictures sent, by publisher
        self.joined: dict[str, float] = {}  # time.monotonic() of its join_media


_packetized: list[tuple[tuple[list[bytes], list[bytes]], clip.Packets]] = []


def _packets_of(media: clip.Packets | tuple[list[bytes], list[bytes]]) -> clip.Packets:
    """Encoded frames (video, audio) packetized once for everyone they are given to."""
    if isinstance(media, clip.Packets):
        return media
    for known, packets in _packetized:
        if known[0] is media[0] and known[1] is media[1]:
            return packets
    packets = clip.packetize(*media)
    _packetized[:] = [(media, packets)]
    return packets


class CountingParticipant(PacketParticipant):
    """Sends the clip; counts and times what it receives, decoding nothing. `others`:
    how many publishers it is to receive."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse,
        media: clip.Packets | tuple[list[bytes], list[bytes]], log: SendLog, others: int,
    ) -> None:  # fmt: skip
        super().__init__(ws, _packets_of(media))
        self._log = log
        self._others = others
        self.latencies: list[float] = []
        self.joined_at = 0.0
        self.first_video: dict[str, float] = {}  # publisher -> seconds after joining
        self.first_arrival: dict[str, float] = {}  # publisher -> time.monotonic()
        self.receives_everyone = asyncio.Event()
        self._sent: dict[bytes, float] | None = None
        self._name = ""

    def sent_picture(self, payloads: tuple[bytes, ...]) -> None:
        if self._sent is None:
            self._name = self.id
            self._sent = self._log.sent.setdefault(self._name, {})
        sent, now = self._sent, time.monotonic()
        for payload in payloads:
            sent[payload[-_TAIL:]] = now
        frames = self._log.frames
        frames[self._name] = frames.get(self._name, 0) + 1

    def first_video_packet(self, line: Line) -> None:
        publisher = line.publisher
        if publisher is None or publisher in self.first_arrival:
            return
        self.first_arrival[publisher] = line.first_at
        self.first_video[publisher] = line.first_at - self.joined_at
        if len(self.first_video) >= self._others:
            self.receives_everyone.set()

    def sampled(self, line: Line, packet: bytes) -> None:
        if line.publisher is None or len(self.latencies) >= MAX_SAMPLES:
            return
        sent = self._log.sent.get(line.publisher, {}).get(packet[-_TAIL:])
        if sent is not None:
            self.latencies.append(time.monotonic() - sent)


@dataclass
class Step:
    forwarding: Forwarding
    conferences: int
    people: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    rss_bytes: int = 0
    video_expected: int = 0
    video_received: int = 0
    packets_received: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    # From each newcomer's own join_media to each publisher's first video packet.
    join_ms: dict[str, float] = field(default_factory=dict)
    # From the later of the newcomer's and the publisher's join_media.
    first_picture_ms: dict[str, float] = field(default_factory=dict)
    load_cpu_seconds: float = 0.0
    load_lag_ms: dict[str, float] = field(default_factory=dict)
    load_late_ticks: int = 0

    @property
    def videos(self) -> int:
        return self.conferences * self.people * (self.people - 1)

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds

    @property
    def loss(self) -> float:
        return (
            max(0.0, 1 - self.video_received / self.video_expected) if self.video_expected else 1.0
        )

    @property
    def kept_up(self) -> bool:
        late = bool(self.latency_ms) and self.latency_ms["p95"] > MAX_LATENCY_P95_MS
        return self.loss < MAX_LOSS and not late

    @property
    def packets_per_second(self) -> float:
        return self.packets_received / self.seconds

    @property
    def packets_per_core(self) -> float:
        return self.packets_per_second / self.cpu_share if self.cpu_seconds else 0.0

    @property
    def load_cpu(self) -> float:
        return self.load_cpu_seconds / self.seconds

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "videos": self.videos,
            "loss": self.loss,
            "packets_per_second": self.packets_per_second,
            "packets_per_core": self.packets_per_core,
            "load_cpu": self.load_cpu,
        }


@dataclass
class Burst:
    """Conferences joining media at once, on a fresh server: the first picture of
    each (participant, publisher) pair."""

    people: int
    conferences: int
    pairs: int = 0
    pictured: int = 0  # pairs with a first picture within EVERYONE_RECEIVES_SECONDS
    first_picture_ms: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # the server's, from the joins to the last first picture
    seconds: float = 0.0

    @property
    def participants(self) -> int:
        return self.people * self.conferences


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def nearest_rank(fraction: float) -> float:
        return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000, 2)

    return {"p50": nearest_rank(0.5), "p95": nearest_rank(0.95)}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _own_cpu_seconds() -> float:
    """This process's CPU time, every thread of it (not the server's: a child)."""
    times = os.times()
    return times.user + times.system


async def _lags(seconds: float) -> list[float]:
    """For `seconds`, how late this process's event loop runs a callback that was due
    (LAG_PROBE_SECONDS apart): a load that falls behind delays what it receives, and
    that would read as the server's latency."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    end = loop.time() + seconds
    while (due := loop.time() + LAG_PROBE_SECONDS) < end:
        await asyncio.sleep(LAG_PROBE_SECONDS)
        lags.append(max(0.0, loop.time() - due))
    await asyncio.sleep(max(0.0, end - loop.time()))
    return lags


def _first_pictures(participants: list[CountingParticipant], log: SendLog) -> list[float]:
    """Seconds from the later of the two join_media to each publisher's first video
    packet, for each of `participants`."""
    return [
        arrival - max(p.joined_at, log.joined.get(publisher, p.joined_at))
        for p in participants
        for publisher, arrival in p.first_arrival.items()
    ]


class Load:
    """The participants of one server, joined conference by conference."""

    def __init__(self, session: aiohttp.ClientSession, media: clip.Packets, log: SendLog) -> None:
        self._session = session
        self._media = media
        self.log = log
        self.everyone: list[CountingParticipant] = []

    async def greet(self, links: tuple[str, str], people: int) -> list[CountingParticipant]:
        """The host on its link, guests on the public one (each as a client of its
        own), in the lobby; the conference started."""
        greeted = []
        for number in range(people):
            url = links[0] if number == 0 else links[1]
            async with _setting_up(f"hello, person {number}"):
                ws = await self._session.ws_connect(url, headers=as_client(len(self.everyone)))
                participant = CountingParticipant(ws, self._media, self.log, people - 1)
                self.everyone.append(participant)
                greeted.append(participant)
                await participant.hello(display_name=f"Person {number}")
        async with _setting_up("start"):
            _answered(await greeted[0].request("start"), "start")
        return greeted

    async def join_media(self, participant: CountingParticipant) -> None:
        participant.joined_at = self.log.joined[participant.id] = time.monotonic()
        async with _setting_up("join_media"):
            _answered(await participant.request("join_media"), "join_media")

    async def close(self) -> None:
        for at in range(0, len(self.everyone), CLOSING_AT_ONCE):
            await asyncio.gather(*(p.close() for p in self.everyone[at : at + CLOSING_AT_ONCE]))
        self.everyone = []


@contextlib.asynccontextmanager
async def _setting_up(what: str) -> AsyncIterator[None]:
    """A step of the set-up the server did not answer (in time) could not be brought up."""
    try:
        yield
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise SetupFailed(f"{what}: {type(exc).__name__} {exc}".rstrip()) from exc


def _answered(answer: dict[str, Any], what: str) -> None:
    if answer.get("type") != "result":
        raise SetupFailed(f"{what}: {answer.get('code', answer.get('type'))}")


async def _receives_everyone(participants: list[CountingParticipant]) -> bool:
    """Wait until each of them receives a video from everyone else (False: not within
    EVERYONE_RECEIVES_SECONDS)."""
    try:
        async with asyncio.timeout(EVERYONE_RECEIVES_SECONDS):
            for participant in participants:
                await participant.receives_everyone.wait()
    except TimeoutError:
        return False
    return True


async def _on_fresh_server(
    forwarding: Forwarding, conferences: int, media: clip.Packets,
    measure: Callable[[Load, list[tuple[str, str]], int], Any],
) -> Any:  # fmt: skip
    """A server of its own, with `conferences` scheduled, pinned to the first core
    while this process goes on on the others; `measure(load, links, pid)` with it."""
    with tempfile.TemporaryDirectory(prefix="clinicconf-bench-") as data_dir:
        settings = bench_settings(Path(data_dir), forwarding)
        ice.install(settings)  # the participants' aiortc, on loopback too
        links = await schedule_conferences(settings, conferences)
        log_path = Path(data_dir) / "server.log"
        try:
            with server_core() as load_elsewhere:
                async with (
                    running_server(settings, log_path) as server,
                    aiohttp.ClientSession() as session,
                ):
                    load_elsewhere()
                    load = Load(session, media, SendLog())
                    try:
                        return await measure(load, links, server.pid)
                    finally:
                        await load.close()
        except SetupFailed:
            print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
            raise


async def _measure_size(
    forwarding: Forwarding, people: int, steps: list[int], seconds: float,
    media: clip.Packets, results: list[Step],
) -> None:  # fmt: skip
    """One server; conferences of `people` added step by step, the load measured
    after each, into `results` (those measured stay when a later step fails)."""

    async def measure(load: Load, links: list[tuple[str, str]], pid: int) -> None:
        held = 0
        for conferences in steps:
            newcomers = []
            for conference in links[held:conferences]:
                greeted = await load.greet(conference, people)
                for participant in greeted:
                    await load.join_media(participant)
                newcomers += greeted
            held = conferences
            step = Step(forwarding, conferences, people)
            results.append(await _measure(step, load, newcomers, pid, seconds))
            print(_row(results[-1]), flush=True)

    await _on_fresh_server(forwarding, max(steps), media, measure)


async def _measure(
    step: Step, load: Load, newcomers: list[CountingParticipant], pid: int, seconds: float
) -> Step:
    everyone, log = load.everyone, load.log
    if not await _receives_everyone(everyone):
        received = sorted(len(p.first_video) for p in everyone)
        raise SetupFailed(f"videos received, by participant: {received}")
    step.join_ms = _percentiles([t for p in newcomers for t in p.first_video.values()])
    step.first_picture_ms = _percentiles(_first_pictures(newcomers, log))
    await asyncio.sleep(WARM_UP_SECONDS)
    sent_before = dict(log.frames)
    received_before = sum(p.video_frames for p in everyone)
    packets_before = sum(p.packets for p in everyone)
    late_before = sum(p.late_ticks for p in everyone)
    for participant in everyone:
        participant.latencies.clear()
    cpu_before, load_before = _cpu_seconds(pid), _own_cpu_seconds()
    began = time.monotonic()
    step.load_lag_ms = _percentiles(await _lags(seconds))
    step.seconds = time.monotonic() - began
    step.cpu_seconds = _cpu_seconds(pid) - cpu_before
    step.load_cpu_seconds = _own_cpu_seconds() - load_before
    step.rss_bytes = _rss_bytes(pid)
    # Every picture a publisher sent goes to everyone else in its conference. (Pictures,
    # not packets: the transcoding baseline packetises its own encoding differently.)
    sent = sum(log.frames.get(p, 0) - sent_before.get(p, 0) for p in log.frames)
    step.video_expected = sent * (step.people - 1)
    step.video_received = sum(p.video_frames for p in everyone) - received_before
    step.packets_received = sum(p.packets for p in everyone) - packets_before
    step.load_late_ticks = sum(p.late_ticks for p in everyone) - late_before
    step.latency_ms = _percentiles([t for p in everyone for t in p.latencies])
    return step


async def _measure_burst(people: int, conferences: int, media: clip.Packets) -> Burst:
    """`conferences` of `people` greeted and started, then everyone's join_media sent
    at once."""

    async def measure(load: Load, links: list[tuple[str, str]], pid: int) -> Burst:
        burst = Burst(people, conferences)
        everyone = [p for conference in links for p in await load.greet(conference, people)]
        cpu_before, began = _cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*(load.join_media(p) for p in everyone))
        await _receives_everyone(everyone)
        burst.seconds = time.monotonic() - began
        burst.cpu_seconds = _cpu_seconds(pid) - cpu_before
        burst.pairs = len(everyone) * (people - 1)
        pictured = _first_pictures(everyone, load.log)
        burst.pictured = len(pictured)
        missing = [EVERYONE_RECEIVES_SECONDS] * (burst.pairs - burst.pictured)
        burst.first_picture_ms = _percentiles(pictured + missing)
        return burst

    measured: Burst = await _on_fresh_server("packets", conferences, media, measure)
    return measured


def slope(steps: list[Step], x: Callable[[Step], float] = lambda s: s.videos) -> float:
    """CPU (share of a core) per unit of `x` (a forwarded video, by default), by least
    squares through the origin over the steps the server kept up with: past that, the
    CPU cannot grow any more."""
    kept_up = [s for s in steps if s.kept_up] or steps[:1]
    if len(kept_up) == 1:
        return kept_up[0].cpu_share / x(kept_up[0])
    xs, ys = [x(s) for s in kept_up], [s.cpu_share for s in kept_up]
    return statistics.linear_regression(xs, ys, proportional=True).slope


_HEADER: Final = (
    "| forwarding | conferences x people | videos | packets/s out | server CPU "
    "| packets/s per core | pictures lost | latency p50 / p95 | first picture p50 / p95 "
    "| memory | load CPU |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50']:g} / {figures['p95']:g} ms" if figures else "n/a"


def _row(step: Step) -> str:
    lag = step.load_lag_ms.get("p95")
    late = "" if lag is None else f", lag p95 {lag:g} ms"
    late += f", {step.load_late_ticks} ticks missed" if step.load_late_ticks else ""
    return (
        f"| {step.forwarding} | {step.conferences} x {step.people} | {step.videos} "
        f"| {step.packets_per_second:,.0f} | {step.cpu_share:.1%} "
        f"| {step.packets_per_core:,.0f} | {step.loss:.2%} | {_pair(step.latency_ms)} "
        f"| {_pair(step.first_picture_ms)} | {step.rss_bytes / 2**20:.0f} MiB "
        f"| {step.load_cpu:.0%}{late} |"
    )


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
        _HEADER,
        *(_row(s) for s in steps),
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
            f" **{_pair(burst['first_picture_ms'])}** ({burst['pictured']} of"
            f" {burst['pairs']} pictures within {EVERYONE_RECEIVES_SECONDS:.0f} s)."
        )
    lines.append(
        f"- The load process's CPU: at most {_figure(summary['load_cpu'], '.0%')} of its core."
    )
    lines += [f"- Could not be brought up: {failure}." for failure in summary["failures"]]
    lines += ["", "```json", json.dumps(summary, indent=1), "```", DOC_END]
    return "\n".join(lines)


def write_doc(
    path: Path, text: str, begin: str = DOC_BEGIN, end: str = DOC_END, introduction: str = ""
) -> None:
    """Replace the section of docs/benchmarks.md between `begin` and `end`; when it is
    not there yet, add it at the end, after `introduction`."""
    document = path.read_text(encoding="utf-8")
    if begin in document and end in document:
        before, rest = document.split(begin, 1)
        after = rest.split(end, 1)[1]
        document = before + text + after
    else:
        document = document.rstrip("\n") + "\n\n" + introduction + text + "\n"
    path.write_text(document, encoding="utf-8")


@dataclass
class Run:
    """What was measured, and what could not be brought up."""

    sizes: dict[int, list[Step]] = field(default_factory=dict)
    transcode: list[Step] = field(default_factory=list)
    burst: Burst | None = None
    failures: list[str] = field(default_factory=list)


async def run(
    sizes: dict[int, list[int]], seconds: float, baseline_people: int, burst: tuple[int, int]
) -> Run:
    """Every size, the baseline and the burst, each on a server of its own; one that
    cannot be brought up is noted, and the others go on."""
    media = clip.encode_packets()
    print(_HEADER, flush=True)
    result = Run()
    for people, steps in sizes.items():
        measured = result.sizes[people] = []
        try:
            await _measure_size("packets", people, steps, seconds, media, measured)
        except SetupFailed as exc:
            result.failures.append(f"{people} people, after {len(measured)} steps: {exc}")
    try:
        await _measure_size("transcode", baseline_people, [1], seconds, media, result.transcode)
    except SetupFailed as exc:
        result.failures.append(f"transcoding baseline: {exc}")
    try:
        result.burst = await _measure_burst(*burst, media)
        print(f"burst: {result.burst.participants} joining at once, first picture"
              f" {_pair(result.burst.first_picture_ms)}", flush=True)  # fmt: skip
    except SetupFailed as exc:
        result.failures.append(f"burst: {exc}")
    for failure in result.failures:
        print(f"could not be brought up: {failure}", file=sys.stderr, flush=True)
    return result


def _sizes(texts: list[str]) -> dict[int, list[int]]:
    """PEOPLE:STEPS, such as 2:20,40,60, each STEPS growing numbers of conferences."""
    sizes: dict[int, list[int]] = {}
    for text in texts:
        people, _, steps = text.partition(":")
        numbers = [int(n) for n in steps.split(",")]
        if not 2 <= int(people) <= 16 or int(people) in sizes:
            raise ValueError(f"{text}: people 2 to 16, each size once")
        if numbers != sorted(set(numbers)) or numbers[0] < 1:
            raise ValueError(f"{text}: growing numbers of conferences, such as 2:10,20,40")
        sizes[int(people)] = numbers
    return sizes


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinicconf.bench.sfu",
        description="Packets, videos and consultations forwarded per core, first pictures,"
        " against the transcoding baseline.",
    )
    parser.add_argument(
        "--sizes", nargs="+", default=list(DEFAULT_SIZES), metavar="PEOPLE:STEPS",
        help="conference sizes, each with the conferences held at each step"
        f" ({' '.join(DEFAULT_SIZES)})",
    )  # fmt: skip
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS,
        help=f"measured per step ({DEFAULT_SECONDS:g} s)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-people", type=int, default=2, help="the transcoding conference's (2)"
    )
    parser.add_argument(
        "--burst", default=DEFAULT_BURST, metavar="PEOPLE:CONFERENCES",
        help=f"conferences joining media at once ({DEFAULT_BURST})",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600.0, help="for the whole run (600 s)")
    parser.add_argument(
        "--write", action="store_true", help="put the figures into docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    try:
        sizes = _sizes(args.sizes)
        burst_people, _, burst_conferences = args.burst.partition(":")
        burst = (int(burst_people), int(burst_conferences))
    except ValueError as exc:
        parser.error(f"--sizes or --burst: {exc}")
    if not 2 <= args.baseline_people <= 16 or not 2 <= burst[0] <= 16 or burst[1] < 1:
        parser.error("--baseline-people and --burst's people: 2 to 16")

    measured = run_bounded(
        lambda: run(sizes, args.seconds, args.baseline_people, burst), args.timeout
    )
    if measured is None:
        return 1
    steps = [s for steps in measured.sizes.values() for s in steps] + measured.transcode
    if not steps:
        return 1
    text = as_markdown(report(measured), steps)
    print(text)
    if args.write:
        write_doc(Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md", text)
    return 1 if measured.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
