"""Track files written as the recorder writes them (TrackFile, millisecond
timestamps) from synthetic media, a timeline, and a composed file decoded with PyAV:
what the composer tests and the damaged-track tests build recordings from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

from clinicconf.recording.files import TIMELINE, Timeline, track_path
from clinicconf.recording.track_file import TrackFile

SIZE = (320, 180)  # 16:9, as the canvas: one picture alone fills it
FRAME_MS = 100
SHADES = {"ann": 60, "bob": 170}
AMPLITUDE = 0.3  # of each tone: two together do not clip
SAMPLE_RATE = 48_000


def write_video(
    directory: Path, participant: str, start_ms: int, stop_ms: int, shade: Callable[[int], int]
) -> Path:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = *SIZE, "yuv420p"
    codec.time_base = Fraction(1, 1000)
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    track = TrackFile(track_path(directory, participant, "video"), "video")

    def write(packets: list[av.Packet[Any]]) -> None:
        for packet in packets:
            assert packet.pts is not None
            track.write(bytes(packet), packet.pts, keyframe=packet.is_keyframe)

    for time_ms in range(start_ms, stop_ms, FRAME_MS):
        frame = av.VideoFrame(*SIZE, "yuv420p")
        for plane, value in zip(frame.planes, (shade(time_ms), 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = time_ms
        write(codec.encode(frame))
    write(codec.encode(None))
    track.close()
    return track.path


def write_audio(
    directory: Path, participant: str, start_ms: int, stop_ms: int, frequency: float
) -> Path:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = SAMPLE_RATE, "mono", "flt"
    codec.time_base = Fraction(1, SAMPLE_RATE)
    track = TrackFile(track_path(directory, participant, "audio"), "audio")
    packets: list[av.Packet[Any]] = []
    for time_ms in range(start_ms, stop_ms, 20):
        first = time_ms * SAMPLE_RATE // 1000
        tone = AMPLITUDE * np.sin(2 * np.pi * frequency * (first + np.arange(960)) / SAMPLE_RATE)
        frame = av.AudioFrame.from_ndarray(
            tone.astype(np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts = SAMPLE_RATE, first
        packets += codec.encode(frame)
    packets += codec.encode(None)
    # One 20 ms packet after another, as the recorder writes them.
    for number, packet in enumerate(packets):
        track.write(bytes(packet), start_ms + 20 * number)
    track.close()
    return track.path


def write_timeline(directory: Path, entries: list[dict[str, Any]]) -> None:
    timeline = Timeline(directory / TIMELINE)
    for entry in entries:
        timeline.append(entry)


def steady(shade: int) -> Callable[[int], int]:
    return lambda time_ms: shade


@dataclass
class Decoded:
    pictures: list[tuple[float, NDArray[Any]]]  # (seconds, luma)
    sound: NDArray[np.float32]  # mono, placed by timestamps
    last_picture: float
    last_sound: float
    streams: list[str]

    @property
    def duration(self) -> float:
        return max(self.last_picture, self.last_sound)

    def luma(self, start: float, stop: float) -> list[NDArray[Any]]:
        pictures = [luma for time, luma in self.pictures if start <= time <= stop]
        assert pictures
        return pictures

    def tone(self, start: float, stop: float, frequency: float) -> float:
        """The amplitude of `frequency` between the two times (from the spectrum)."""
        samples = self.sound[round(start * SAMPLE_RATE) : round(stop * SAMPLE_RATE)]
        window = np.hanning(len(samples))
        spectrum = np.abs(np.fft.rfft(samples * window)) * 2 / window.sum()
        bin_ = round(frequency * len(samples) / SAMPLE_RATE)
        return float(spectrum[bin_ - 2 : bin_ + 3].max())


def decode(path: Path) -> Decoded:
    pictures: list[tuple[float, NDArray[Any]]] = []
    chunks: list[tuple[int, NDArray[np.float32]]] = []
    last_sound = 0.0
    with av.open(str(path)) as container:
        streams: list[str] = sorted(stream.type for stream in container.streams)
        for frame in container.decode(video=0):
            assert frame.time is not None
            pictures.append((frame.time, frame.to_ndarray()[: frame.height]))  # Y
        container.seek(0)
        for sound in container.decode(audio=0):
            assert sound.time is not None
            samples = sound.to_ndarray().mean(axis=0).astype(np.float32)
            chunks.append((max(0, round(sound.time * SAMPLE_RATE)), samples))
            last_sound = sound.time + sound.samples / SAMPLE_RATE
    mix = np.zeros(max(first + len(samples) for first, samples in chunks), np.float32)
    for first, samples in chunks:
        mix[first : first + len(samples)] = samples
    last_picture = pictures[-1][0] + 1 / 15
    return Decoded(pictures, mix, last_picture, last_sound, streams)
