"""A damaged track ends alone: a participant whose camera sends a VP8 keyframe that
claims an impossible picture size (0x0, or VP8's largest, 16383x16383) loses their
own video in the recording, and nothing else; the composer bounds the pictures it
decodes and composes the other tracks around any it cannot use."""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import web
from aiortc import MediaStreamTrack

from clinicconf import keys
from clinicconf.recording.compose import compose
from clinicconf.recording.files import (
    COMPOSED,
    DamagedTrack,
    damaged_tracks,
    track_path,
)
from clinicconf.recording.track_file import TrackFile

from ...support.accounts import Account
from ...support.clinic import sign_in
from ...support.composition import SHADES, SIZE, steady, write_audio, write_timeline, write_video
from ...support.composition import decode as decode_composition
from ...support.lobby import Lobby
from ...support.media_peers import (
    FRAMES_PER_SECOND,
    VIDEO_SIZE,
    Join,
    MediaParticipant,
    enter,
    introduce,
)
from ...support.recorded_media import (
    decode,
    halves,
    indicator,
    last_frame_time,
    ready_recording,
    tone_level,
)
from ...support.servers import Client, wait_until

Size = tuple[int, int]


def claiming(keyframe: bytes, size: Size) -> bytes:
    """The keyframe with its header claiming a picture of `size` (RFC 6386, 9.1)."""
    width, height = size
    return keyframe[:6] + width.to_bytes(2, "little") + height.to_bytes(2, "little") + keyframe[10:]


class TamperingCamera(MediaStreamTrack):
    """A camera filming a flat grey of `shade`, encoded here (a keyframe a second)
    and handed to aiortc as packets. Each keyframe claims the picture size `always`
    (when given) instead of its own; after `tamper(size)`, the next one claims `size`."""

    kind = "video"

    def __init__(self, shade: int, always: Size | None) -> None:
        super().__init__()
        self._shade = shade
        self._codec = av.CodecContext.create("libvpx", "w")
        self._codec.width, self._codec.height = VIDEO_SIZE
        self._codec.pix_fmt = "yuv420p"
        self._codec.time_base = fractions.Fraction(1, FRAMES_PER_SECOND)
        self._codec.gop_size = FRAMES_PER_SECOND
        self._codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        self._count = 0
        self._start = time.monotonic()
        self._always = always
        self._once: Size | None = None
        self.tampered = 0  # keyframes sent with a false size

    def tamper(self, size: Size) -> None:
        self._once = size

    async def recv(self) -> av.Packet[Any]:
        while True:
            self._count += 1
            due = self._start + self._count / FRAMES_PER_SECOND
            await asyncio.sleep(max(0, due - time.monotonic()))
            frame = av.VideoFrame(*VIDEO_SIZE, "yuv420p")
            for plane, value in zip(frame.planes, (self._shade, 128, 128), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
            frame.pts = self._count
            encoded = self._codec.encode(frame)
            if encoded:
                break
        data = bytes(encoded[0])
        claim = self._once or self._always
        if encoded[0].is_keyframe and claim is not None:
            data, self._once = claiming(data, claim), None
            self.tampered += 1
        packet = av.Packet(data)
        packet.pts, packet.time_base = self._count, fractions.Fraction(1, FRAMES_PER_SECOND)
        return packet


class TamperingParticipant(MediaParticipant):
    def __init__(self, *args: Any, always: Size | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.camera = TamperingCamera(self.shade, always)
        self._publish["video"] = self.camera


JoinTampering = Callable[..., Awaitable[TamperingParticipant]]


@pytest.fixture
async def join_tampering(client: Client) -> AsyncIterator[JoinTampering]:
    opened: list[TamperingParticipant] = []

    async def join_(
        path: str, shade: int, tone: int, always: Size | None = None
    ) -> TamperingParticipant:
        ws = await client.ws_connect(path)
        participant = TamperingParticipant(ws, shade, tone=tone, always=always)
        opened.append(participant)
        await participant.hello()
        return participant

    yield join_
    for participant in opened:
        await participant.close()


async def noted_damaged(directory: Path, participant: MediaParticipant) -> list[DamagedTrack]:
    """The recording's damaged tracks, once the participant's video is among them."""

    async def noted() -> bool:
        return (participant.id, "video") in {
            (d.participant, d.kind) for d in damaged_tracks(directory)
        }

    await wait_until(noted)
    return damaged_tracks(directory)


async def keyframes_tampered(participant: TamperingParticipant, more: int) -> None:
    """Until the participant's camera has sent `more` false keyframes from now."""
    target = participant.camera.tampered + more

    async def sent() -> bool:
        return participant.camera.tampered >= target

    await wait_until(sent)


def drained(participant: MediaParticipant) -> list[dict[str, Any]]:
    messages = []
    while not participant.messages.empty():
        messages.append(participant.messages.get_nowait())
    return messages


async def test_a_camera_claiming_impossible_pictures_loses_only_its_own_video(
    lobby: Lobby,
    join: Join,
    join_tampering: JoinTampering,
    app: web.Application,
    client: Client,
    admin: Account,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pat's camera claims 0x0 in every keyframe, from the first on; Quinn's, one
    keyframe of VP8's largest picture, 16383x16383, in the middle."""
    host = await join(lobby.host_path, 50, tone=500)
    pat = await join_tampering(lobby.pat_path, 120, tone=800, always=(0, 0))
    quinn = await join_tampering(lobby.quinn_path, 200, tone=1250)
    introduce([host, pat, quinn])
    assert (await host.request("set_options", moderator=False, recording=True))["type"] == "result"
    assert (await host.request("start"))["type"] == "result"
    store = app[keys.RECORDINGS]
    (recording,) = await store.for_event(lobby.event_id)
    directory = store.directory(recording.id)
    with caplog.at_level(logging.WARNING, logger="clinicconf.sfu.recorder"):
        for participant in (host, pat, quinn):
            await enter(participant)

        async def media_flows() -> bool:
            return await host.receiving(0.5) >= {(pat.id, "audio"), (quinn.id, "video")}

        await wait_until(media_flows)
        # Pat's video is never recorded; the recording goes on.
        [pat_video] = await noted_damaged(directory, pat)
    assert (pat_video.participant, pat_video.kind) == (pat.id, "video")
    assert "0x0" in pat_video.why
    [warning] = [r for r in caplog.records if r.name == "clinicconf.sfu.recorder"]
    assert warning.levelno == logging.WARNING
    said = warning.getMessage()
    assert f"recording {recording.id}" in said and pat.id in said and "video" in said
    assert "Pat" not in said and lobby.pat_path.split("/")[-2] not in said
    await asyncio.sleep(1.5)

    # The host turns recording off and on again: Pat's keyframes still claim 0x0,
    # and Quinn's camera claims 16383x16383 once. Each loses their own video only.
    assert (await host.request("set_options", moderator=False, recording=False))["type"] == "result"
    await indicator(quinn, on=False)
    assert (await host.request("set_options", moderator=False, recording=True))["type"] == "result"
    await indicator(quinn, on=True)
    await keyframes_tampered(pat, 2)
    quinn.camera.tamper((16383, 16383))
    damaged = await noted_damaged(directory, quinn)
    assert [(d.participant, d.kind) for d in damaged] == [(pat.id, "video"), (quinn.id, "video")]
    assert "16383x16383" in damaged[1].why
    await asyncio.sleep(1.5)
    await host.send("end")
    await quinn.expect("ended")

    # No receiver was sent an impossible picture: each decoded only cameras' pictures,
    # and none of their decoders failed.
    for participant in (host, pat, quinn):
        assert participant.picture_sizes <= {VIDEO_SIZE}, participant.picture_sizes
    assert [r for r in caplog.records if r.name == "aiortc.rtcrtpreceiver"] == []

    # Nobody was told the recording failed, and it was never cut short.
    assert [m for m in drained(host) if m["type"] == "recording_failed"] == []
    recording = await ready_recording(app, lobby.event_id)
    assert not recording.interrupted
    # No file of Pat's video; Quinn's plays up to the damage; the host's to the end.
    assert not track_path(directory, pat.id, "video").exists()
    quinn_played = last_frame_time(track_path(directory, quinn.id, "video"))
    assert 1.0 < quinn_played < damaged[1].at_ms / 1000 + 0.2
    host_played = last_frame_time(track_path(directory, host.id, "video"))
    assert host_played > damaged[1].at_ms / 1000 + 1.0

    # The composed file plays throughout, a picture every 1/15 s: the host alone at
    # the end; Pat's and Quinn's sound heard after their videos ended.
    composed = decode(directory / COMPOSED)
    assert abs(len(composed.pictures) - composed.duration * 15) < 3
    last = composed.pictures[-1][1]
    host_gray = (50 - 16) * 255 / 219  # the host's shade, as PyAV's full-range gray
    assert all(abs(level - host_gray) < 8 for level in halves(last)), halves(last)
    end = composed.duration
    for tone in (500, 800, 1250):
        assert tone_level(composed.sound, end - 1.4, end - 0.6, tone) > 0.01, tone

    # The recording's page says which tracks ended early, whose, and why.
    await sign_in(client, admin)
    async with client.get(f"/recordings/{recording.id}") as page:
        text = await page.text()
    assert "Tracks that ended early" in text
    assert "Video of Pat Patel, after 0 s: a keyframe claims a 0x0 picture" in text
    assert "Video of Quinn Quist, after" in text and "16383x16383" in text


def write_tampered_video(directory: Path, participant: str, tampered_at_ms: int) -> None:
    """A video track whose keyframe at `tampered_at_ms` claims 16383x16383 (a file of
    an earlier version, or damaged on the disk): written as TrackFile writes, without
    its checks."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = *SIZE, "yuv420p"
    codec.time_base = fractions.Fraction(1, 1000)
    codec.gop_size = 5
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    path = track_path(directory, participant, "video")
    path.parent.mkdir(parents=True, exist_ok=True)
    tampered = False
    with av.open(str(path), "w", format="webm") as output:
        stream: Any = output.add_stream("libvpx", rate=30)
        stream.width, stream.height = SIZE
        stream.time_base = fractions.Fraction(1, 1000)
        for time_ms in range(0, 3000, 100):
            frame = av.VideoFrame(*SIZE, "yuv420p")
            for plane, value in zip(frame.planes, (SHADES[participant], 128, 128), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
            frame.pts = time_ms
            for encoded in codec.encode(frame):
                data = bytes(encoded)
                if encoded.is_keyframe and time_ms == tampered_at_ms:
                    data, tampered = claiming(data, (16383, 16383)), True
                packet = av.Packet(data)
                packet.stream, packet.time_base = stream, fractions.Fraction(1, 1000)
                packet.pts = packet.dts = time_ms
                packet.is_keyframe = encoded.is_keyframe
                output.mux(packet)
    assert tampered, "no keyframe at that time"


def test_the_composer_ends_a_track_at_an_impossible_picture_and_composes_the_others(
    tmp_path: Path,
) -> None:
    write_tampered_video(tmp_path, "ann", tampered_at_ms=1500)
    write_video(tmp_path, "bob", 0, 3000, steady(SHADES["bob"]))
    write_audio(tmp_path, "bob", 0, 3000, 1000.0)
    # And a track that is no WebM at all.
    track_path(tmp_path, "cat", "video").write_bytes(b"\x1aE\xdf\xa3" + bytes(range(256)) * 8)
    write_timeline(
        tmp_path,
        [
            {"t": 0, "recording": True, "video": ["ann", "bob", "cat"], "audio": ["bob"]},
            {"t": 3000, "end": True},
        ],
    )

    composition = compose(tmp_path)

    assert composition.duration_ms == 3000
    decoded = decode_composition(tmp_path / COMPOSED)
    assert decoded.streams == ["audio", "video"]
    assert abs(len(decoded.pictures) - 45) <= 1
    # Side by side until Ann's track ends at 1.5 s; then Bob alone, on the whole canvas.
    for luma in decoded.luma(0.2, 1.4):
        assert abs(float(luma[270, 240]) - SHADES["ann"]) < 8
        assert abs(float(luma[270, 720]) - SHADES["bob"]) < 8
    for luma in decoded.luma(1.6, 2.9):
        assert abs(float(luma.min()) - SHADES["bob"]) < 8, luma.min()
    assert decoded.tone(2.0, 2.9, 1000.0) > 0.2
    # The recording's page is told which track ended, when and why.
    [ann] = damaged_tracks(tmp_path)
    assert (ann.participant, ann.kind, ann.at_ms) == ("ann", "video", 1500)
    assert "16383x16383" in ann.why


@pytest.mark.parametrize("size", [(0, 0), (16383, 16383), (4097, 1000), (4096, 4096)])
def test_a_track_file_keeps_no_picture_of_an_impossible_size(tmp_path: Path, size: Size) -> None:
    """Played back, the file ends at the last picture before the bad keyframe."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = *SIZE, "yuv420p"
    codec.time_base = fractions.Fraction(1, 1000)
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    keyframes = []
    for time_ms in (0, 100):
        frame = av.VideoFrame(*SIZE, "yuv420p")
        frame.pts = time_ms
        frame.pict_type = av.video.frame.PictureType.I
        keyframes += [bytes(p) for p in codec.encode(frame)]
    first = TrackFile(track_path(tmp_path, "ann", "video"), "video")
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}"):
        first.write(claiming(keyframes[0], size), 0)
    first.close()
    assert not first.path.exists()

    later = TrackFile(track_path(tmp_path, "bob", "video"), "video")
    later.write(keyframes[0], 0)
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}"):
        later.write(claiming(keyframes[1], size), 100)
    later.close()
    with av.open(str(later.path)) as container:
        sizes = [(f.width, f.height) for f in container.decode(video=0)]
    assert sizes == [SIZE]
