"""Length-prefixed frames (u32 big-endian) on a socket upgraded to the
local API's frame stream (docs/LOCAL_API.md), for the stream clients."""

import socket
import struct
from typing import Optional

_LEN = struct.Struct(">I")


class _Frames:
    """Length-prefixed frames (u32 big-endian) on an upgraded socket."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(buffered)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(_LEN.pack(len(payload)) + payload)

    def next_buffered(self) -> Optional[bytes]:
        """The next frame if it was read whole already, else None."""
        if len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) >= 4 + n:
                frame = bytes(self.buf[4:4 + n])
                del self.buf[:4 + n]
                return frame
        return None

    def recv(self) -> Optional[bytes]:
        """The next frame, or None when the node closed the stream."""
        while True:
            frame = self.next_buffered()
            if frame is not None:
                return frame
            chunk = self.sock.recv(64 * 1024)
            if not chunk:
                if self.buf:
                    raise OSError("the stream ended inside a frame")
                return None
            self.buf += chunk
