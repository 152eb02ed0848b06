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
updates. The load is bench/sfu_load.py, the figures bench/sfu_report.py.

    python -m clinicconf.bench.sfu [--sizes 2:10,20,30 3:5,10,15 6:2,4,6]
        [--seconds 8] [--baseline-people 2] [--burst 6:3] [--timeout 600] [--write]

Exits 0 whatever the figures; 1 when a step could not be brought up, or the run
overstayed --timeout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .measures import write_doc
from .server import run_bounded
from .sfu_load import run
from .sfu_report import DOC_BEGIN, DOC_END, as_markdown, report

DEFAULT_SIZES: Final = ("2:10,20,30", "3:5,10,15", "6:2,4,6")
DEFAULT_SECONDS: Final = 8.0
DEFAULT_BURST: Final = "6:3"


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
        document = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md"
        write_doc(document, text, DOC_BEGIN, DOC_END)
    return 1 if measured.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
