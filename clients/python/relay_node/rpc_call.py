"""Streaming nRPC calls made through the node (docs/LOCAL_API.md,
"Streaming calls from a peer process"): the `rpc-call` frame stream, one
connection per call. Client.open_call(), Client.call_client_stream() and
Client.call_duplex() use it.

A CallStream sends request messages (send(), then finish()) and yields
response messages until the call's `end`; an error `end` raises
RelayNodeError with the call's kind (`not-found`, `timeout`, ...).
Closing the stream before the end cancels the call. The node holds at
most one message per direction, so a process that sends a lot must read
the responses on another thread (call_client_stream() and call_duplex()
write the requests on their own thread).
"""

import json
import socket
import struct
import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

from .rpc_serve import CODES, _MAX_FRAME, _bytes, _upgrade

__all__ = ["CallStream", "open_call", "call_client_stream", "call_duplex"]

_SEND, _FINISH, _MESSAGE, _END = 0x01, 0x02, 0x11, 0x13


def _trailer_error(payload: bytes) -> Optional[Any]:
    """The RelayNodeError of an `end` frame's trailer (None for `ok`)."""
    from .client import RelayNodeError

    if len(payload) < 7 or payload[0] != 0x03:
        return RelayNodeError("bad-answer", "the call's end frame has no trailer")
    t = payload[5:]
    code, flags = t[0], t[1]
    pos = 2
    retry_after_ms = None
    if flags & 1:
        retry_after_ms, = struct.unpack_from(">I", t, pos)
        pos += 4
    kind_len = t[pos]
    kind = t[pos + 1:pos + 1 + kind_len].decode("utf-8", "replace")
    pos += 1 + kind_len
    detail_len, = struct.unpack_from(">H", t, pos)
    detail = t[pos + 2:pos + 2 + detail_len].decode("utf-8", "replace")
    if code == 0:
        return None
    error = RelayNodeError(kind or (CODES[code] if code < len(CODES) else "unknown"), detail)
    error.retry_after_ms = retry_after_ms  # type: ignore[attr-defined]
    return error


class CallStream(Iterator[bytes]):
    """One streaming call in progress; iterate it for the responses.
    `node_id` is the serving node."""

    def __init__(self, sock: socket.socket, node_id: str) -> None:
        self.node_id = node_id
        self._sock = sock
        self._write = threading.Lock()
        self._ended = False
        self._finished = False

    def __enter__(self) -> "CallStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, message: Union[bytes, str]) -> None:
        """Sends one request message (at most 1 MiB - 1)."""
        self._frame(bytes([_SEND]) + _bytes(message))

    def finish(self) -> None:
        """Sends `finish`: the last request was sent."""
        if not self._finished:
            self._finished = True
            self._frame(bytes([_FINISH]))

    def _frame(self, payload: bytes) -> None:
        from .client import RelayNodeError

        if len(payload) > _MAX_FRAME:
            raise ValueError(f"a message is at most {_MAX_FRAME - 1} bytes")
        with self._write:
            try:
                self._sock.sendall(struct.pack(">I", len(payload)) + payload)
            except OSError as e:
                raise RelayNodeError("io", f"the call's connection failed: {e}") from None

    def _read_exact(self, n: int) -> bytes:
        from .client import RelayNodeError

        data = b""
        while len(data) < n:
            try:
                chunk = self._sock.recv(n - len(data))
            except socket.timeout:
                raise RelayNodeError("timeout", "no answer from the node in time") from None
            except OSError as e:
                raise RelayNodeError("io", f"the call's connection failed: {e}") from None
            if not chunk:
                raise RelayNodeError("io", "the node closed the call before its end")
            data += chunk
        return data

    def __iter__(self) -> "CallStream":
        return self

    def __next__(self) -> bytes:
        """The next response message; StopIteration after an `ok` end."""
        from .client import RelayNodeError

        if self._ended:
            raise StopIteration
        length, = struct.unpack(">I", self._read_exact(4))
        if length == 0 or length > _MAX_FRAME:
            self.close()
            raise RelayNodeError("bad-answer", f"a frame of {length} bytes")
        payload = self._read_exact(length)
        if payload[0] == _MESSAGE:
            return payload[1:]
        self._ended = True
        self.close()
        if payload[0] != _END:
            raise RelayNodeError("bad-answer", f"unknown frame type {payload[0]:#04x}")
        error = _trailer_error(payload[1:])
        if error is not None:
            raise error
        raise StopIteration

    def close(self) -> None:
        """Closes the connection (cancelling the call if it has not ended)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def open_call(client: Any, target: str, node_id: Optional[str] = None,
              timeout_ms: int = 5000, idempotent: bool = False,
              metadata: Optional[Dict[str, str]] = None,
              token: Optional[str] = None) -> CallStream:
    """Opens a streaming call of "SERVICE.METHOD" through the node; returns
    once the node opened it (a failure raises RelayNodeError with nRPC's
    kind: `no-responders`, `token`, ...)."""
    from .client import RelayNodeError

    service, sep, method = target.rpartition(".")
    if not sep or not service or not method:
        raise RelayNodeError("invalid-target", f"{target!r} is not SERVICE.METHOD")
    request: Dict[str, Any] = {
        "op": "call", "service": service, "method": method, "timeout_ms": timeout_ms,
        "idempotent": idempotent, "metadata": metadata or {},
    }
    if node_id is not None:
        request["node_id"] = node_id
    if token is not None:
        request["token"] = token
    wait = client.timeout + timeout_ms / 1000
    sock = _upgrade(client, wait, "rpc-call")
    stream = CallStream(sock, "")
    try:
        data = json.dumps(request).encode()
        stream._frame(data)
        length, = struct.unpack(">I", stream._read_exact(4))
        reply = json.loads(stream._read_exact(min(length, _MAX_FRAME)))
    except BaseException:
        stream.close()
        raise
    error = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(error, dict):
        stream.close()
        raise RelayNodeError(str(error.get("kind")), str(error.get("detail", "")))
    stream.node_id = str(reply.get("node_id", "")) if isinstance(reply, dict) else ""
    return stream


def _write_all(stream: CallStream, requests: Iterable[Union[bytes, str]],
               failed: List[BaseException]) -> None:
    """Sends every request then `finish`; a failure of the iterable is kept
    in `failed` and cancels the call."""
    try:
        for message in requests:
            stream.send(message)
        stream.finish()
    except Exception as e:  # noqa: BLE001 - handed to the reading thread
        kind = getattr(e, "kind", None)
        if kind != "io":  # io: the call ended; the reader reports its end
            failed.append(e)
            stream.close()


def call_duplex(client: Any, target: str, requests: Iterable[Union[bytes, str]],
                **options: Any) -> Iterator[bytes]:
    """A duplex call: sends `requests` (any iterable, e.g. a generator fed
    by a queue) on a thread of its own while yielding each response as it
    comes. Options as open_call(). Closing the generator cancels the call."""
    stream = open_call(client, target, **options)
    failed: List[BaseException] = []
    writer = threading.Thread(target=_write_all, args=(stream, requests, failed),
                              name=f"rpc-call-{target}", daemon=True)
    writer.start()
    try:
        try:
            for message in stream:
                yield message
        except Exception:
            if failed:
                raise failed[0] from None
            raise
        if failed:
            raise failed[0]
    finally:
        stream.close()


def call_client_stream(client: Any, target: str, requests: Iterable[Union[bytes, str]],
                       **options: Any) -> bytes:
    """A client-streaming call: sends every message of `requests`, then
    returns the reply (b"" when the server sent none). Options as
    open_call()."""
    reply = b""
    for message in call_duplex(client, target, requests, **options):
        reply = message
    return reply
