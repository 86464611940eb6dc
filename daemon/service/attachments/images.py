"""Images: their size in pixels, read from the header, which also proves the header whole.

No image library: a PNG, GIF, JPEG or WebP header says its width and height in a few fixed
places. An image whose header cannot be read is refused at submit rather than sent to a model
that would fail the call. The pixels themselves go to the models as they are.
"""

from __future__ import annotations

import struct

from daemon.service.attachments.kinds import GIF, JPEG, PNG, WEBP

__all__ = ["ImageUnreadable", "image_size"]

#: JPEG markers that start a frame (SOF0-SOF15 but DHT, JPG and DAC): they hold the size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageUnreadable(ValueError):
    """The image's header is damaged or cut short."""


def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageUnreadable("not a readable PNG image (no IHDR header)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _gif(data: bytes) -> tuple[int, int]:
    if len(data) < 10:
        raise ImageUnreadable("not a readable GIF image (cut short)")
    width, height = struct.unpack("<HH", data[6:10])
    return width, height


def _jpeg(data: bytes) -> tuple[int, int]:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _SOF and at + 9 <= len(data):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    raise ImageUnreadable("not a readable JPEG image (no frame header)")


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise ImageUnreadable("not a readable WebP image (unknown or cut header)")


_READERS = {PNG: _png, GIF: _gif, JPEG: _jpeg, WEBP: _webp}


def image_size(media_type: str, data: bytes) -> tuple[int, int]:
    """(width, height) of an image of `media_type`; ImageUnreadable when its header is
    damaged, or says it has no pixels."""
    width, height = _READERS[media_type](data)
    if width < 1 or height < 1:
        raise ImageUnreadable(f"its header says {width}x{height} pixels: no image")
    return width, height
