"""Many unary nRPC calls over one connection (docs/LOCAL_API.md, "Many
unary calls on one connection"): the `rpc-calls` frame stream, the
high-rate path next to Client.call(). Client.caller() opens one.

A Caller calls the methods of one service with the options it was
opened with. call() makes one call and waits for it; call_many() sends a
window of calls at once and returns their replies in the order of the
requests, which is where the rate comes from. A failed call raises
RelayNodeError with nRPC's kind (`not-found`, `timeout`, ...); the
connection stays usable. A Caller is for one thread at a time.
"""

import json
import socket
import struct
from typing import Any, Dict, Iterable, List, Optional, Union

from ._frames import _Frames
from .rpc_call import _trailer_error
from .rpc_serve import _MAX_FRAME, _bytes, _upgrade

__all__ = ["Caller", "open_caller"]

_CALL, _CANCEL, _REPLY, _ERROR = 0x21, 0x22, 0x31, 0x32
# Calls the node runs at once on one connection.
MAX_IN_FLIGHT = 256


class Caller:
    """An open `rpc-calls` connection to one service."""

    def __init__(self, frames: _Frames, service: str) -> None:
        self.service = service
        self._frames = frames
        self._next_id = 0

    def __enter__(self) -> "Caller":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(self, method: str, body: Union[bytes, str] = b"") -> bytes:
        """One call of `method`; returns the reply."""
        result = self.call_many(method, [body], return_errors=True)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def call_many(self, method: str, bodies: Iterable[Union[bytes, str]],
                  window: int = MAX_IN_FLIGHT,
                  return_errors: bool = False) -> List[Any]:
        """Calls `method` once per body, at most `window` in flight at
        once; returns the replies in the order of `bodies`. A failed call
        raises its RelayNodeError once every call has ended, or, with
        `return_errors`, stands in the list in place of its reply."""
        from .client import RelayNodeError

        name = method.encode()
        if not 0 < len(name) <= 64:
            raise RelayNodeError("invalid-target", f"{method!r} is not a method name")
        window = max(1, min(window, MAX_IN_FLIGHT))
        pending: Dict[int, int] = {}
        results: List[Any] = []
        out = bytearray()
        for index, body in enumerate(bodies):
            results.append(None)
            call_id = self._next_id
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF
            payload = struct.pack(">BIB", _CALL, call_id, len(name)) + name + _bytes(body)
            if len(payload) > _MAX_FRAME:
                raise ValueError(f"a request is at most {_MAX_FRAME - 6 - len(name)} bytes")
            out += struct.pack(">I", len(payload)) + payload
            pending[call_id] = index
            if len(pending) >= window:
                self._send(bytes(out))
                out.clear()
                self._answer(pending, results)
        if out:
            self._send(bytes(out))
        while pending:
            self._answer(pending, results)
        if not return_errors:
            for result in results:
                if isinstance(result, RelayNodeError):
                    raise result
        return results

    def _answer(self, pending: Dict[int, int], results: List[Any]) -> None:
        """Reads one answer and puts it in its place."""
        from .client import RelayNodeError

        payload = self._recv()
        if len(payload) < 5:
            self.close()
            raise RelayNodeError("bad-answer", f"a frame of {len(payload)} bytes")
        kind, call_id = struct.unpack_from(">BI", payload)
        index = pending.pop(call_id, None)
        if index is None or kind not in (_REPLY, _ERROR):
            self.close()
            raise RelayNodeError("bad-answer", f"an answer of type {kind:#04x} for call {call_id}")
        if kind == _REPLY:
            results[index] = payload[5:]
        else:
            results[index] = _trailer_error(payload[5:]) or RelayNodeError(
                "bad-answer", "an error frame with an ok status")

    def _send(self, data: bytes) -> None:
        from .client import RelayNodeError

        try:
            self._frames.sock.sendall(data)
        except OSError as e:
            raise RelayNodeError("io", f"the calling connection failed: {e}") from None

    def _recv(self) -> bytes:
        """The node's next frame."""
        from .client import RelayNodeError

        try:
            payload = self._frames.recv()
        except socket.timeout:
            raise RelayNodeError("timeout", "no answer from the node in time") from None
        except OSError as e:
            raise RelayNodeError("io", f"the calling connection failed: {e}") from None
        if payload is None:
            raise RelayNodeError("io", "the node closed the calling connection")
        return payload

    def close(self) -> None:
        """Closes the connection (cancelling calls still in flight)."""
        try:
            self._frames.sock.close()
        except OSError:
            pass


def open_caller(client: Any, service: str, node_id: Optional[str] = None,
                timeout_ms: int = 5000, idempotent: bool = False,
                metadata: Optional[Dict[str, str]] = None,
                token: Optional[str] = None) -> Caller:
    """Opens an `rpc-calls` connection for `service`: every call gets
    these options. A bad option raises RelayNodeError (`bad-request`,
    `invalid-node-id`, `token`)."""
    from .client import RelayNodeError

    request: Dict[str, Any] = {
        "op": "calls", "service": service, "timeout_ms": timeout_ms,
        "idempotent": idempotent, "metadata": metadata or {},
    }
    if node_id is not None:
        request["node_id"] = node_id
    if token is not None:
        request["token"] = token
    # A read waits at most for one call's whole timeout and the node's
    # answer on top.
    sock = _upgrade(client, client.timeout + timeout_ms / 1000, "rpc-calls")
    caller = Caller(_Frames(sock, b""), service)
    try:
        caller._frames.send(json.dumps(request).encode())
        reply = json.loads(caller._recv())
    except (OSError, ValueError) as e:
        caller.close()
        raise RelayNodeError("io", f"opening the calls of {service}: {e}") from None
    except BaseException:
        caller.close()
        raise
    error = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(error, dict):
        caller.close()
        raise RelayNodeError(str(error.get("kind")), str(error.get("detail", "")))
    return caller
