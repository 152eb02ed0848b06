"""A first picture in Chromium without waiting for the publisher's next keyframe: the
SFU keeps each camera's latest keyframe and replays it to whoever starts receiving
that camera. The publisher here is an aiortc peer sending an already-encoded VP8
clip with one keyframe, at its start, and deltas only ever after: asked for a
keyframe, it has none to give, so only the one the server kept can start a picture."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
from aiortc import MediaStreamTrack
from playwright.async_api import Page
from yarl import URL

from clinicconf.bench import clip
from clinicconf.bench.participant import Participant

from ...support.servers import Client, wait_until
from ...support.visitors import RECORD_PEER_CONNECTIONS, Links, Visitors, video_of

# How long the publisher sends deltas before anyone receives it.
DELTAS_SECONDS = 3.0
# From the tile's showing (the page's media connection is being set up) to a picture.
FIRST_PICTURE_SECONDS = 5.0


def is_keyframe(frame: bytes) -> bool:
    """RFC 6386, 9.1: the lowest bit of a VP8 frame's first byte is 0 for a keyframe."""
    return not frame[0] & 0x01


class OneKeyframeCamera(MediaStreamTrack):
    """Already-encoded VP8 frames at their real pace: the clip's keyframe once, then
    its deltas in a loop, never the keyframe again (a decoder takes each delta onto
    the picture before it: the pictures drift, and still decode). aiortc's sender
    only packetises an `av.Packet`: a keyframe request (PLI) sets a flag for an
    encoder this camera does not have, so it is ignored."""

    kind = "video"

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__()
        assert [is_keyframe(f) for f in frames] == [True] + [False] * (len(frames) - 1)
        self._frames = frames
        self._interval = 1 / clip.FRAMES_PER_SECOND
        self.sent = 0
        self._start: float | None = None  # the first frame asked for, once connected

    async def recv(self) -> av.Packet[Any]:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent * self._interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        number = self.sent if self.sent == 0 else 1 + (self.sent - 1) % (len(self._frames) - 1)
        packet = av.Packet(self._frames[number])
        packet.pts = round(self.sent * self._interval / clip.VIDEO_TIME_BASE)
        packet.time_base = fractions.Fraction(clip.VIDEO_TIME_BASE)
        self.sent += 1
        return packet


# Video frames decoded on an m-line, as the page's receiver counts them.
FRAMES_DECODED = """
async (mid) => {
  const pc = window.peerConnections.at(-1);
  if (!pc) return 0;
  for (const report of (await pc.getStats()).values()) {
    if (report.type === "inbound-rtp" && report.mid === mid) return report.framesDecoded ?? 0;
  }
  return 0;
}
"""


async def frames_decoded(page: Page, mid: str) -> int:
    return int(await page.evaluate(FRAMES_DECODED, mid))


async def test_a_late_joiner_sees_a_camera_that_sends_no_more_keyframes(
    client: Client, visitors: Visitors, links: Links
) -> None:
    """Sam (the host, an aiortc peer) has been sending for seconds when Pat opens her
    link in Chromium. Sam's camera made its one keyframe long before and makes no
    other, whoever asks: Pat still sees Sam's picture within seconds, from the
    keyframe the server kept. A server that only waits for the publisher's next
    keyframe leaves Pat's tile of Sam black for good."""
    camera = OneKeyframeCamera(clip.encode_video(2.0))
    microphone = clip.microphone(clip.encode_audio())
    sam = Participant(await client.ws_connect(URL(links.host).path + "/ws"), microphone, camera)
    try:
        await sam.hello()
        options = await sam.request("set_options", moderator=False, recording=False)
        assert options["type"] == "result", options
        assert (await sam.request("start"))["type"] == "result"
        assert (await sam.request("join_media"))["type"] == "result"

        async def sent_deltas() -> bool:
            return camera.sent > DELTAS_SECONDS * clip.FRAMES_PER_SECOND

        await wait_until(sent_deltas, within=15.0)

        patient = await visitors.open(links.pat, init_script=RECORD_PEER_CONNECTIONS)
        sam_on_screen = await video_of(patient, "Sam Staff")
        began = time.monotonic()
        while await frames_decoded(patient, sam_on_screen.mid) < 1:
            assert time.monotonic() - began < FIRST_PICTURE_SECONDS, "no picture of Sam"
            await asyncio.sleep(0.1)
    finally:
        await sam.close()
