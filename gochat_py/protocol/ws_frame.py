"""Server-to-client websocket text frames, built once per message (RFC 6455 §5.2).

A server frame is not masked and we send no extensions, so a text frame is a two- to ten-byte
header and the payload.  Building it ourselves lets a connect node encode a message once and
write the same bytes to every socket, instead of framing it again per socket.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload
