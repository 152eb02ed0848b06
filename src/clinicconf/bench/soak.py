"""Load and soak: the server holding a clinic's busy hour for minutes on end, and
whether its memory keeps growing.

In a fresh data directory it schedules --conferences Public Conferences and, for the
idle pages, as many more as it takes at PAGES_PER_LOBBY pages each; starts the server
in a process of its own on 127.0.0.1 (media on loopback too), pinned to the first
core while this load process runs on the others; opens --idle-pages
landing pages on the public links of the extra conferences (each says hello, then only
reads what it is sent, as an unattended browser tab does); then brings up each
conference as bench/sfu.py does: the host on its link, --people - 1 guests on the
public link, the conference started, everyone in media, each sending a pre-encoded
640x480 VP8 clip at 25 fps and Opus, and counting the pictures it receives without
decoding them. Once everyone receives everyone (or EVERYONE_RECEIVES_SECONDS have
passed), it holds all of that for --minutes and every --sample-seconds notes:

- the server process's resident memory (VmRSS), its CPU over the interval (share of
  one core, from utime + stime) and its open file descriptors, all from /proc;
- pictures received per second (all participants), and the share of those sent
  that did not arrive; the 95th percentile of the time from a publisher sending a
  video packet to a subscriber receiving it;
- participants whose media has stopped (no packet for STALL_SECONDS, checked every
  second), and the idle pages still open;
- the machine's load average; this (load) process's own CPU; and for both processes
  the share of the interval their threads were ready to run but waited for a core
  (/proc/<pid>/task/*/schedstat), which tells a server that falls behind from a
  machine too busy to run it.

At the end: memory after warm-up (the first WARM_UP_SECONDS, at most half the hold,
are left out): its least-squares slope in MiB per 10 minutes, and max - min; the
server's CPU, mean and p95; and everything lost: pages the server closed,
participants without media, media stalls, failed joins, pictures lost, errors in
the server's log. The verdict "memory does not grow after warm-up" is printed only
when the slope is within noise: under twice its standard error (growth the samples
cannot tell from allocator jitter) or under GROWTH_FLOOR_MIB MiB per 10 minutes
(too little to matter over a clinic's day), whichever is larger; and it says so when
something was lost, as flat memory says little about a load that fell away.

    python -m clinicconf.bench.soak [--conferences 5] [--people 3] [--idle-pages 300]
        [--minutes 10] [--sample-seconds 10] [--write]

--write puts the figures in docs/reliability.md. Exits 0 whatever the figures; 1
when the server could not be brought up, or the run overstayed its time limit.
The load is bench/soak_load.py, the figures bench/soak_report.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

from .measures import write_doc
from .server import run_bounded
from .soak_load import soak
from .soak_report import DOC_BEGIN, DOC_END, DOC_INTRODUCTION, DOC_PATH, as_markdown, summary

# Bringing everything up and taking it down, on top of --minutes.
SETUP_SECONDS: Final = 240.0
TEARDOWN_SECONDS: Final = 60.0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinicconf.bench.soak",
        description="Hold conferences and idle pages for minutes; memory and CPU over time.",
    )
    parser.add_argument("--conferences", type=int, default=5, help="held in media (5)")
    # Three: five conferences of four take the server's whole core (docs/reliability.md).
    parser.add_argument("--people", type=int, default=3, help="per conference (3)")
    parser.add_argument("--idle-pages", type=int, default=300, help="landing pages (300)")
    parser.add_argument("--minutes", type=float, default=10.0, help="held (10)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="between samples (10)")
    parser.add_argument(
        "--write", action="store_true", help="put the figures into docs/reliability.md"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.conferences <= 20 or not 2 <= args.people <= 8:
        parser.error("--conferences: 1 to 20; --people: 2 to 8")
    if not 0 <= args.idle_pages <= 1000:
        parser.error("--idle-pages: 0 to 1000")
    if not 0.5 <= args.minutes <= 60 or not 1 <= args.sample_seconds <= args.minutes * 60 / 3:
        parser.error("--minutes: 0.5 to 60; --sample-seconds: 1 to a third of the hold")

    time_limit = SETUP_SECONDS + args.minutes * 60 + TEARDOWN_SECONDS
    result = run_bounded(lambda: soak(args), time_limit)
    if result is None:
        return 1
    text = as_markdown(result, argv)
    print("\n".join(summary(result)))
    if args.write:
        write_doc(DOC_PATH, text, DOC_BEGIN, DOC_END, DOC_INTRODUCTION)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
