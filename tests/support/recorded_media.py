"""A conference recorded through the SFU, as the media tests check it: the composed
file decoded (pictures' brightness, the sound's tones), waiting for it to be composed,
and a recorded conference on a server of its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiohttp import web

from clinicconf import keys
from clinicconf.recording.store import Recording

from .media_peers import MediaParticipant, introduce
from .servers import wait_until

SAMPLE_RATE = 48_000
# Composing a few seconds of media takes a few seconds; far more on a loaded machine.
COMPOSE_SECONDS = 120


@dataclass
class Decoded:
    """A composed file as a viewer gets it: its pictures' brightness and its sound."""

    pictures: list[tuple[float, np.ndarray]]  # (time in seconds, luma plane)
    sound: np.ndarray  # mono, 48 kHz
    duration: float


def decode(path: Path) -> Decoded:
    pictures: list[tuple[float, np.ndarray]] = []
    chunks: list[np.ndarray] = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                assert frame.time is not None
                pictures.append((frame.time, frame.to_ndarray(format="gray")))
            else:
                chunks += [r.to_ndarray()[0] for r in resampler.resample(frame)]
    sound = np.concatenate(chunks)
    duration = max(pictures[-1][0], len(sound) / SAMPLE_RATE)
    return Decoded(pictures, sound, duration)


def tone_level(sound: np.ndarray, start: float, end: float, frequency: int) -> float:
    """The amplitude of `frequency` in the sound between two times (seconds)."""
    window = sound[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    bins = np.fft.rfftfreq(len(window), 1 / SAMPLE_RATE)
    near = (bins > frequency - 15) & (bins < frequency + 15)
    return float(spectrum[near].max() / len(window))


def halves(picture: np.ndarray) -> list[float]:
    """The brightness in the middle of the left and the right half of the picture."""
    height, width = picture.shape
    rows = slice(height * 2 // 5, height * 3 // 5)
    quarter = width // 4
    return [float(picture[rows, x - 40 : x + 40].mean()) for x in (quarter, 3 * quarter)]


async def ready_recording(app: web.Application, event_id: int) -> Recording:
    store = app[keys.RECORDINGS]

    async def composed() -> bool:
        recordings = await store.for_event(event_id)
        assert all(r.state != "failed" for r in recordings), recordings
        return bool(recordings) and recordings[0].state == "ready"

    await wait_until(composed, within=COMPOSE_SECONDS)
    (recording,) = await store.for_event(event_id)
    return recording


async def indicator(participant: MediaParticipant, *, on: bool) -> None:
    """The participant's page is told the recording is on (or off)."""
    while (await participant.expect("options"))["options"]["recording"] is not on:
        pass


def last_frame_time(path: Path) -> float:
    """How far a file plays: the time of the last frame it decodes."""
    last = 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams[0]):
            assert frame.time is not None
            last = frame.time
    return last


async def start_recorded(
    http: aiohttp.ClientSession, host_url: str, public_url: str
) -> tuple[MediaParticipant, MediaParticipant]:
    """The host and a guest on a server of its own: the conference started with
    recording on, neither in media yet."""
    host = MediaParticipant(await http.ws_connect(host_url), 60, tone=500)
    guest = MediaParticipant(await http.ws_connect(public_url), 180, tone=900)
    await host.hello()
    await guest.hello(display_name="Gail Guest")
    introduce([host, guest])
    assert (await host.request("set_options", moderator=False, recording=True))["type"] == "result"
    assert (await host.request("start"))["type"] == "result"
    return host, guest
