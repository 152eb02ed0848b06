"""What a video picture may be, wherever one is handled: forwarded to browsers
(sfu/passthrough/), recorded (sfu/recorder.py, recording/files.py) and composed
(recording/compose.py).

A VP8 keyframe says the size of the pictures that follow (RFC 6386, 9.1), and a
decoder allocates for it before it decodes anything. A sender may claim any size
up to 16383x16383, or 0x0: such a keyframe costs every receiver's decoder hundreds
of megabytes, or fails it. So a picture is at most MAX_PICTURE_SIDE pixels on
either side and MAX_PICTURE_PIXELS in all, and larger than nothing.
"""

from __future__ import annotations

from typing import Final

_VP8_START_CODE: Final = b"\x9d\x01\x2a"
# A 4K screen share (3840x2160), the largest picture a browser sends, fits in either
# orientation; decoding one takes 14 MB a picture, so memory stays bounded per track.
MAX_PICTURE_SIDE: Final = 4096
MAX_PICTURE_PIXELS: Final = 4096 * 2304


def vp8_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height of a VP8 keyframe (RFC 6386, 9.1); None for another frame."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != _VP8_START_CODE:
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


def picture_size_allowed(width: int, height: int) -> bool:
    return (
        0 < width <= MAX_PICTURE_SIDE
        and 0 < height <= MAX_PICTURE_SIDE
        and width * height <= MAX_PICTURE_PIXELS
    )


def impossible_keyframe(frame: bytes) -> str | None:
    """Why a VP8 frame's picture must not be decoded (a keyframe claiming a size out
    of bounds, or saying none); None when it may, and for any other frame."""
    if not frame or frame[0] & 0x01:
        return None  # an inter frame: it keeps the size its keyframe gave
    size = vp8_keyframe_size(frame)
    if size is None:
        return "a keyframe without a readable picture size"
    if picture_size_allowed(*size):
        return None
    return "a keyframe claims a {}x{} picture".format(*size)
