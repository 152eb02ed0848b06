"""RTP packets as the fast path reads and writes them (RFC 3550, RFC 8285): a
published packet parsed once however many receive it, a header extension read from
the header alone, the start of a VP8 keyframe, and a subscriber's header rewritten in
place for each packet. Plain bytes: nothing here touches aiortc's internals."""

from __future__ import annotations

import struct
import time
from typing import Any, Final

from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtp import RtpPacket

from ...moderation import Kind

CLOCK_RATES: Final[dict[Kind, int]] = {"audio": 48_000, "video": 90_000}
# Seconds between 1900 (NTP's epoch) and 1970 (time.time's).
_NTP_EPOCH_OFFSET: Final = 2_208_988_800
RTP_HEADER: Final = struct.Struct("!BBHII")
_EXTENSION_HEADER: Final = struct.Struct("!HH")
_SEQUENCE_AND_TIME: Final = struct.Struct("!HI")
_WORD: Final = struct.Struct("!I")
_ONE_BYTE_EXTENSIONS: Final = 0xBEDE
_TWO_BYTE_EXTENSIONS: Final = 0x1000  # its low four bits are the application's


def newer(a: int, b: int) -> bool:
    """Sequence number a comes after b (16 bits, wrapping)."""
    return a != b and (a - b) & 0xFFFF < 0x8000


def ntp_now() -> int:
    """The wall clock as NTP's 64-bit fixed point (aiortc's own goes through a
    datetime: too dear once per packet)."""
    return int((time.time() + _NTP_EPOCH_OFFSET) * 4_294_967_296)


class Received:
    """A published RTP packet, parsed once however many receive it (RFC 3550 section
    5.1): its header fields, its payload, and the sound level it carries (RFC 6464's
    byte, for audio). `_data` is for aiortc's jitter buffer (the recorder's)."""

    __slots__ = (
        "_data",
        "audio_level",
        "marker",
        "payload",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )  # fmt: skip

    def __init__(
        self, marker: bool, payload_type: int, sequence_number: int, timestamp: int,
        ssrc: int, payload: bytes, audio_level: int | None = None,
    ) -> None:  # fmt: skip
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.audio_level = audio_level
        self._data = b""

    @classmethod
    def parse(cls, data: bytes, audio_level_id: int = 0) -> Received:
        """ValueError if `data` is not an RTP packet."""
        if len(data) < RTP_HEADER.size:
            raise ValueError("shorter than an RTP header")
        first, second, sequence_number, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise ValueError("not RTP version 2")
        offset = RTP_HEADER.size + 4 * (first & 0x0F)
        level = None
        if first & 0x10:
            if len(data) < offset + _EXTENSION_HEADER.size:
                raise ValueError("truncated header extension")
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            start = offset + _EXTENSION_HEADER.size
            offset = start + 4 * words
            if audio_level_id:
                value = _element(data, profile, start, min(offset, len(data)), audio_level_id)
                level = value[0] if value is not None and len(value) == 1 else None
        end = len(data) - (data[-1] if first & 0x20 else 0)
        if offset > end:
            raise ValueError("truncated packet")
        return cls(bool(second & 0x80), second & 0x7F, sequence_number, timestamp, ssrc,
                   data[offset:end], level)  # fmt: skip

    @classmethod
    def of(cls, packet: RtpPacket) -> Received:
        """What aiortc parsed (the packets it had before the fast path took over)."""
        level = packet.extensions.audio_level
        return cls(
            bool(packet.marker), packet.payload_type, packet.sequence_number,
            packet.timestamp, packet.ssrc, packet.payload,
            None if level is None else (0x80 if level[0] else 0) | level[1],
        )  # fmt: skip


def rtp_extension(data: bytes, wanted: int) -> bytes | None:
    """The value of header extension element `wanted` in an RTP packet (RFC 8285),
    read from the header alone (in the clear under SRTP); None if it has none."""
    if not wanted or len(data) < RTP_HEADER.size or not data[0] & 0x10:
        return None
    at = RTP_HEADER.size + 4 * (data[0] & 0x0F)
    if len(data) < at + _EXTENSION_HEADER.size:
        return None
    profile, words = _EXTENSION_HEADER.unpack_from(data, at)
    start = at + _EXTENSION_HEADER.size
    return _element(data, profile, start, min(start + 4 * words, len(data)), wanted)


def _element(data: bytes, profile: int, start: int, end: int, wanted: int) -> bytes | None:
    """Element `wanted`'s value among the extension elements in data[start:end], in
    RFC 8285's one-byte (section 4.2) or two-byte (4.3) form."""
    one_byte = profile == _ONE_BYTE_EXTENSIONS
    if not one_byte and profile & 0xFFF0 != _TWO_BYTE_EXTENSIONS:
        return None
    at = start
    while at < end:
        if data[at] == 0:  # padding
            at += 1
            continue
        if one_byte:
            element, length, value = data[at] >> 4, (data[at] & 0x0F) + 1, at + 1
            if element == 15:
                return None
        elif at + 1 < end:
            element, length, value = data[at], data[at + 1], at + 2
        else:
            return None
        if element == wanted:
            return data[value : min(value + length, end)]
        at = value + length
    return None


def keyframe_start(payload: bytes) -> bytes | None:
    """The start of the VP8 frame when the packet is the first of a keyframe (RFC
    7741: S=1, partition 0, P bit 0); None for any other packet."""
    if not payload or payload[0] & 0x17 != 0x10:  # S set, partition 0: most are not
        return None
    try:
        descriptor, rest = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return None
    if descriptor.partition_start == 1 and descriptor.partition_id == 0 and rest:
        return None if rest[0] & 0x01 else rest
    return None


class Header:
    """The RTP header of a subscriber's m-line, built once the m-line is negotiated
    and rewritten in place for each packet: its payload type, SSRC and header
    extensions (the mid, abs-send-time, and the sound level for audio) stay as the
    negotiation made them, in RFC 8285's one-byte form (aiortc's offers number them
    1-14)."""

    def __init__(self, payload_type: int, ssrc: int, mid: str, ids: Any, kind: Kind) -> None:
        elements = bytearray()
        self._time_at = self._level_at = 0
        name = mid.encode()
        if ids.mid and 0 < len(name) <= 16:
            elements += bytes([ids.mid << 4 | len(name) - 1]) + name
        base = RTP_HEADER.size + _EXTENSION_HEADER.size
        if ids.abs_send_time:
            self._time_at = base + len(elements)
            self._time_tag = (ids.abs_send_time << 4 | 2) << 24  # with its 3 bytes
            elements += bytes(4)
        if kind == "audio" and ids.audio_level:
            self._level_at = base + len(elements) + 1
            elements += bytes([ids.audio_level << 4, 0])
        elements += bytes(-len(elements) % 4)
        self._marker_type = (0x80 | payload_type, payload_type)
        first = 0x90 if elements else 0x80  # version 2, with or without extensions
        self.bytes = bytearray(RTP_HEADER.pack(first, payload_type, 0, 0, ssrc))
        if elements:
            self.bytes += _EXTENSION_HEADER.pack(_ONE_BYTE_EXTENSIONS, len(elements) // 4)
            self.bytes += elements

    def write(
        self, marker: bool, sequence_number: int, timestamp: int, ntp: int, level: int | None
    ) -> bytearray:
        header = self.bytes
        header[1] = self._marker_type[0 if marker else 1]
        _SEQUENCE_AND_TIME.pack_into(header, 2, sequence_number, timestamp)
        if self._time_at:
            _WORD.pack_into(header, self._time_at, self._time_tag | (ntp >> 14) & 0xFFFFFF)
        if self._level_at:
            header[self._level_at] = 0x7F if level is None else level  # 127: silence
        return header
