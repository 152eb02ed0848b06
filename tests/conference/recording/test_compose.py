"""Composing a recording: track files written as the recorder writes them (TrackFile,
millisecond timestamps) from synthetic media, a timeline, then the composed file
decoded with PyAV. Each participant films a flat grey of their own shade and sings a
tone of their own frequency, so the picture and the spectrum tell who is in them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from numpy.typing import NDArray

from clinicconf.recording.compose import Composition, NothingRecorded, compose
from clinicconf.recording.files import COMPOSED, TIMELINE, track_path

from ...support.composition import (
    AMPLITUDE,
    SHADES,
    Decoded,
    decode,
    steady,
    write_audio,
    write_timeline,
    write_video,
)

TONES = {"ann": 440.0, "bob": 1000.0}  # Hz
PAUSED_SHADE = 230  # what Ann films while the recording is paused
BLACK = 16
SHADE_TOLERANCE = 8


def assert_shade(region: NDArray[Any], shade: int) -> None:
    assert abs(float(region.min()) - shade) <= SHADE_TOLERANCE, (region.min(), shade)
    assert abs(float(region.max()) - shade) <= SHADE_TOLERANCE, (region.max(), shade)


@pytest.fixture(scope="module")
def conference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Composition, Decoded]:
    """Ann alone on screen for 2 s, both of them audible; then Ann and Bob side by side
    (Bob's camera starts 0.4 s later) with Bob's sound withheld for 1 s; a 1 s pause
    (when Ann's picture changes); 1 s more of both, everyone audible. 4 s recorded."""
    directory = tmp_path_factory.mktemp("recording")
    write_video(
        directory, "ann", 0, 5000, lambda t: PAUSED_SHADE if 3000 <= t < 4000 else SHADES["ann"]
    )
    write_video(directory, "bob", 2400, 5000, steady(SHADES["bob"]))
    for participant in ("ann", "bob"):
        write_audio(directory, participant, 0, 5000, TONES[participant])
    write_timeline(
        directory,
        [
            {"t": 0, "recording": True, "video": ["ann"], "audio": ["ann", "bob"]},
            {"t": 2000, "recording": True, "video": ["ann", "bob"], "audio": ["ann"]},
            {"t": 3000, "recording": False, "video": ["ann", "bob"], "audio": ["ann"]},
            # The order of the list does not move anyone on the screen.
            {"t": 4000, "recording": True, "video": ["bob", "ann"], "audio": ["bob", "ann"]},
            {"t": 5000, "end": True},
        ],
    )
    progress: list[float] = []
    composition = compose(directory, progress.append)
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) <= 101
    assert not [p for p in directory.iterdir() if p.name not in {COMPOSED, TIMELINE, "tracks"}]
    return composition, decode(directory / COMPOSED)


def test_one_file_of_the_recorded_time(conference: tuple[Composition, Decoded]) -> None:
    composition, decoded = conference
    assert decoded.streams == ["audio", "video"]
    assert composition.duration_ms == 4000
    assert abs(decoded.last_picture - 4.0) < 0.5
    assert abs(decoded.last_sound - 4.0) < 0.5


def test_the_picture_shows_who_was_shown(conference: tuple[Composition, Decoded]) -> None:
    _, decoded = conference
    # Ann alone, and still alone until Bob's camera gives a picture: the whole canvas.
    for luma in decoded.luma(0.1, 1.9) + decoded.luma(2.05, 2.3):
        assert luma.shape == (540, 960)
        assert_shade(luma, SHADES["ann"])
    # Side by side, each 16:9 picture letterboxed in its half; Ann stays on the left.
    for luma in decoded.luma(2.5, 2.9) + decoded.luma(3.1, 3.9):
        assert_shade(luma[150:390, 10:470], SHADES["ann"])
        assert_shade(luma[150:390, 490:950], SHADES["bob"])
        assert_shade(luma[:120], BLACK)
        assert_shade(luma[420:], BLACK)


def test_paused_time_is_cut_out(conference: tuple[Composition, Decoded]) -> None:
    _, decoded = conference
    assert all(abs(int(luma.max()) - PAUSED_SHADE) > 40 for _, luma in decoded.pictures)
    assert decoded.duration < 4.5  # 5 s went by, 1 s of it paused


def test_withheld_sound_is_silent(conference: tuple[Composition, Decoded]) -> None:
    _, decoded = conference
    for start, stop in ((0.2, 1.8), (3.2, 3.8)):
        assert decoded.tone(start, stop, TONES["ann"]) == pytest.approx(AMPLITUDE, rel=0.1)
        assert decoded.tone(start, stop, TONES["bob"]) == pytest.approx(AMPLITUDE, rel=0.1)
    # Bob withheld: Ann's tone only.
    assert decoded.tone(2.1, 2.9, TONES["ann"]) == pytest.approx(AMPLITUDE, rel=0.1)
    assert decoded.tone(2.1, 2.9, TONES["bob"]) < AMPLITUDE / 100


def test_a_crashed_recording_composes_up_to_its_last_packet(tmp_path: Path) -> None:
    """No end in the timeline, Ann's video cut short in its last frame, Bob's camera
    file created but nothing in it: the recording lasts as long as the media that
    made it to disk."""
    video = write_video(tmp_path, "ann", 0, 3000, steady(SHADES["ann"]))
    write_audio(tmp_path, "ann", 0, 2000, TONES["ann"])
    track_path(tmp_path, "bob", "video").touch()
    write_timeline(
        tmp_path, [{"t": 0, "recording": True, "video": ["ann", "bob"], "audio": ["ann"]}]
    )
    with video.open("r+b") as file:
        file.truncate(video.stat().st_size - 20)

    composition = compose(tmp_path)

    decoded = decode(tmp_path / COMPOSED)
    assert abs(composition.duration_ms - 3000) < 500
    assert abs(decoded.last_picture - 3.0) < 0.5
    assert_shade(decoded.luma(2.5, 2.8)[-1], SHADES["ann"])


def test_nothing_recorded(tmp_path: Path) -> None:
    with pytest.raises(NothingRecorded):
        compose(tmp_path)  # no timeline
    write_timeline(tmp_path, [{"t": 0, "recording": False, "video": [], "audio": []}])
    with pytest.raises(NothingRecorded):
        compose(tmp_path)
    assert not (tmp_path / COMPOSED).exists()


def run_cli(directory: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "clinicconf.recording.compose", str(directory)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_command_line(tmp_path: Path) -> None:
    write_video(tmp_path, "ann", 0, 1500, steady(SHADES["ann"]))
    write_timeline(
        tmp_path,
        [{"t": 0, "recording": True, "video": ["ann"], "audio": []}, {"t": 1500, "end": True}],
    )

    result = run_cli(tmp_path)

    assert result.returncode == 0, result.stderr
    *progress, done = result.stdout.splitlines()
    assert progress and all(line.startswith("progress ") for line in progress)
    assert float(progress[-1].split()[1]) == 1.0
    assert done.startswith("done ")
    figures = json.loads(done.removeprefix("done "))
    assert figures == {
        "duration_ms": 1500,
        "size_bytes": (tmp_path / COMPOSED).stat().st_size,
    }


def test_command_line_with_nothing_recorded(tmp_path: Path) -> None:
    write_timeline(
        tmp_path, [{"t": 0, "recording": True, "video": [], "audio": []}, {"t": 0, "end": True}]
    )

    result = run_cli(tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "Nothing was recorded" in result.stderr
