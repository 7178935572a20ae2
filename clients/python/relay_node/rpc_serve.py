"""Serving an nRPC service from this process through the node
(docs/LOCAL_API.md, "Serving from a peer process"): the `rpc-serve` frame
stream. The node registers the service in the ledger, forwards each call
as a `request` frame, and withdraws the service when the connection
closes. Client.serve() calls serve().

A handler takes a Call (method, body, requests, metadata, deadline,
caller, cancelled) and returns the reply (bytes, str or None), or yields
items (a generator: a server-streaming reply), or raises
RelayNodeError(kind, detail) to fail the call with that kind (`not-found`,
`invalid-argument`, ...; an optional `retry_after_ms` attribute is sent as
pushback). Any other exception fails the call with `internal`.

Methods named in `stream_requests` get every request message of a call
(client streaming, duplex): the handler iterates `call.requests` (and a
generator handler may yield items while it still reads requests: duplex).
For other methods `call.body` is the one request message and
`call.requests` yields just it.
"""

import base64
import json
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from ._rpc_requests import Requests

__all__ = ["Call", "Server", "serve", "CODES"]

#: nRPC status kinds by code (docs/RPC.md, "Status codes").
CODES: List[str] = [
    "ok", "cancelled", "unknown", "invalid-argument", "deadline-exceeded", "not-found",
    "already-exists", "permission-denied", "resource-exhausted", "failed-precondition",
    "aborted", "out-of-range", "unimplemented", "internal", "unavailable", "data-loss",
    "unauthenticated", "no-route", "no-responders", "timeout", "server-error", "transport",
    "codec-encode", "codec-decode", "breaker-open", "revoked",
]

_UPGRADE = "relay-node-frames/1"
_MAX_FRAME = 1 << 20
_REQUEST, _CANCEL, _ITEM, _REPLY, _END = 0x01, 0x02, 0x11, 0x12, 0x13
_REQUEST_ITEM, _REQUESTS_END, _CREDIT = 0x03, 0x04, 0x14
_CANCEL_REASONS = {1: "caller", 2: "deadline"}


def _node_id(raw: bytes) -> str:
    return base64.b32encode(raw).decode().lower().rstrip("=")


class Call:
    """One call, as a handler sees it. `deadline` is a time.monotonic()
    instant (None: no deadline); `cancelled` is set when the caller gives
    up or the deadline passes (`cancel_reason` says which: "caller" or
    "deadline"), after which nothing more is sent. `requests` iterates the
    request messages: every one for a method with streamed requests (then
    `body` is empty), else just `body`."""

    def __init__(self, server: "Server", call_id: int, caller: str, method: str,
                 metadata: Dict[str, str], deadline: Optional[float], idempotent: bool,
                 body: bytes, streamed: bool = False) -> None:
        self._server = server
        self.id = call_id
        self.caller = caller
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.idempotent = idempotent
        self.body = body
        self.streamed = streamed
        self._requests = Requests(self._credit) if streamed else None
        self.requests: Iterable[bytes] = self._requests if self._requests else iter([body])
        self.cancelled = threading.Event()
        self.cancel_reason: Optional[str] = None

    def _credit(self) -> None:
        if not self.cancelled.is_set():
            self._server._send(_CREDIT, self.id, struct.pack(">I", 1))

    def _cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self.cancelled.set()
        if self._requests is not None:
            self._requests.cancel()

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def send(self, item: Union[bytes, str]) -> None:
        """Sends one response item now (server streaming, duplex)."""
        if not self.cancelled.is_set():
            self._server._send(_ITEM, self.id, _bytes(item))


def _bytes(value: Union[bytes, str, None]) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


def _trailer(kind: str, detail: str, retry_after_ms: Optional[int]) -> bytes:
    """An nRPC trailer frame (docs/RPC.md, "Trailer")."""
    code = CODES.index(kind) if kind in CODES else 2
    ok = 0 < len(kind) <= 64 and all(c.islower() or c.isdigit() or c == "-" for c in kind)
    kind_b = (kind if ok and kind.isascii() else CODES[code]).encode()
    detail_b = detail.encode()[:1024].decode("utf-8", "ignore").encode()
    payload = bytes([code])
    payload += b"\x01" + struct.pack(">I", retry_after_ms) if retry_after_ms is not None else b"\x00"
    payload += bytes([len(kind_b)]) + kind_b + struct.pack(">H", len(detail_b)) + detail_b
    return b"\x03" + struct.pack(">I", len(payload)) + payload


def _parse_request(payload: bytes) -> Dict[str, Any]:
    """The fields of a `request` frame (after the type byte)."""
    call_id, = struct.unpack_from(">I", payload, 1)
    caller = _node_id(payload[5:37])
    head_len, = struct.unpack_from(">I", payload, 38)
    h = payload[42:42 + head_len]
    body = payload[42 + head_len:]
    flags, deadline_ms = h[1], struct.unpack_from(">I", h, 2)[0]
    pos = 6

    def text(width: int) -> str:
        nonlocal pos
        n = h[pos] if width == 1 else struct.unpack_from(">H", h, pos)[0]
        pos += width
        s = h[pos:pos + n].decode()
        pos += n
        return s

    text(1)  # the service
    method = text(1)
    count = h[pos]
    pos += 1
    metadata = {}
    for _ in range(count):
        key = text(1)
        metadata[key] = text(2)
    deadline = time.monotonic() + deadline_ms / 1000 if deadline_ms else None
    return {"call_id": call_id, "caller": caller, "method": method, "metadata": metadata,
            "deadline": deadline, "idempotent": bool(flags & 1), "body": body}


class Server:
    """A service served through the node; see serve()."""

    def __init__(self, sock: socket.socket, service: str, node_id: str,
                 handler: Callable[[Call], Any], concurrency: int,
                 stream_requests: Iterable[str] = ()) -> None:
        self.service = service
        self._streamed = frozenset(stream_requests)
        self.node_id = node_id
        self._sock = sock
        self._handler = handler
        self._write = threading.Lock()
        self._calls: Dict[int, Call] = {}
        self._calls_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix=f"rpc-{service}")
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name=f"rpc-{service}-reader",
                                        daemon=True)
        self._reader.start()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Closes the connection: the node withdraws the service and fails
        the calls still open with `unavailable`."""
        if not self._closed.is_set():
            self._closed.set()
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._reader.join(timeout=5)
        self._sock.close()
        self._pool.shutdown(wait=False)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the connection ends (the node stopped, or stop());
        whether it ended."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def _send(self, kind: int, call_id: int, payload: bytes) -> None:
        frame = bytes([kind]) + struct.pack(">I", call_id) + payload
        if len(frame) > _MAX_FRAME:
            raise ValueError(f"a frame is at most {_MAX_FRAME} bytes")
        with self._write:
            try:
                self._sock.sendall(struct.pack(">I", len(frame)) + frame)
            except OSError:
                pass

    def _read_exact(self, n: int) -> Optional[bytes]:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _read_loop(self) -> None:
        try:
            while True:
                head = self._read_exact(4)
                if head is None:
                    return
                length, = struct.unpack(">I", head)
                if length > _MAX_FRAME:
                    return
                payload = self._read_exact(length)
                if payload is None or not payload:
                    return
                if len(payload) < 5:
                    return
                call_id, = struct.unpack_from(">I", payload, 1)
                if payload[0] == _REQUEST:
                    fields = _parse_request(payload)
                    call = Call(self, **fields, streamed=fields["method"] in self._streamed)
                    with self._calls_lock:
                        self._calls[call.id] = call
                    self._pool.submit(self._run, call)
                    continue
                with self._calls_lock:
                    open_call = self._calls.get(call_id)
                    if payload[0] == _CANCEL:
                        self._calls.pop(call_id, None)
                if open_call is None:
                    continue
                requests = open_call._requests
                if payload[0] == _CANCEL and len(payload) == 6:
                    open_call._cancel(_CANCEL_REASONS.get(payload[5], "caller"))
                elif payload[0] == _REQUEST_ITEM and requests is not None:
                    requests.put(payload[5:])
                elif payload[0] == _REQUESTS_END and requests is not None:
                    requests.end()
        except OSError:
            return
        finally:
            self._closed.set()
            with self._calls_lock:
                for call in self._calls.values():
                    call._cancel("caller")
                self._calls.clear()

    def _run(self, call: Call) -> None:
        try:
            result = self._handler(call)
            if isinstance(result, Iterator):
                for item in result:
                    if call.cancelled.is_set():
                        return
                    call.send(item)
                self._end(call, "ok", "", None)
            elif not call.cancelled.is_set():
                self._send(_REPLY, call.id, _bytes(result))
        except Exception as e:  # noqa: BLE001 - every failure becomes a status
            kind = getattr(e, "kind", None)
            if isinstance(kind, str):
                retry = getattr(e, "retry_after_ms", None)
                self._end(call, kind, str(getattr(e, "detail", "")), retry)
            else:
                self._end(call, "internal", f"{type(e).__name__}: {e}", None)
        finally:
            with self._calls_lock:
                self._calls.pop(call.id, None)

    def _end(self, call: Call, kind: str, detail: str, retry_after_ms: Optional[int]) -> None:
        if not call.cancelled.is_set():
            self._send(_END, call.id, _trailer(kind, detail, retry_after_ms))


def _upgrade(client: Any, timeout: float, service: str = "rpc-serve") -> socket.socket:
    """Connects to the node's socket and upgrades to the frame stream of
    `service`."""
    from .client import RelayNodeError

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(client.socket_path)
        sock.sendall((
            f"GET /v1/stream/{service} HTTP/1.1\r\nHost: relay-node\r\n"
            f"Connection: Upgrade\r\nUpgrade: {_UPGRADE}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk or len(head) > 16384:
                raise RelayNodeError("io", "the node closed the connection during the upgrade")
            head += chunk
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101 " not in status_line + " ":
            raise RelayNodeError("http", f"upgrade refused: {status_line}")
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise RelayNodeError("not-running", f"no relay-node is serving {client.socket_path}") from None
    except OSError as e:
        sock.close()
        raise RelayNodeError("io", f"{client.socket_path}: {e}") from None
    except BaseException:
        sock.close()
        raise


def serve(client: Any, service: str, handler: Callable[[Call], Any],
          methods: Optional[List[str]] = None, version: str = "1", concurrency: int = 16,
          queue: int = 256, token_required: bool = False,
          retry_after_ms: Optional[int] = None,
          stream_requests: Optional[List[str]] = None) -> Server:
    """Serves `service` through the node with `handler`, called on a pool
    of `concurrency` threads. Calls of the `stream_requests` methods
    (client streaming, duplex) give the handler every request message as
    `call.requests`. Returns once the node registered the service (a
    refusal raises RelayNodeError: `already-serving`, `invalid-service`,
    `bad-request`); the Server serves until stop() or the node stops."""
    from .client import RelayNodeError

    sock = _upgrade(client, client.timeout)
    try:
        request: Dict[str, Any] = {
            "op": "serve", "service": service, "methods": methods or [], "version": version,
            "concurrency": concurrency, "queue": queue, "token_required": token_required,
        }
        if retry_after_ms is not None:
            request["retry_after_ms"] = retry_after_ms
        if stream_requests:
            request["stream_requests"] = list(stream_requests)
        data = json.dumps(request).encode()
        sock.sendall(struct.pack(">I", len(data)) + data)
        head = b""
        while len(head) < 4:
            chunk = sock.recv(4 - len(head))
            if not chunk:
                raise RelayNodeError("io", "the node closed the serving connection")
            head += chunk
        length, = struct.unpack(">I", head)
        answer = b""
        while len(answer) < min(length, _MAX_FRAME):
            chunk = sock.recv(length - len(answer))
            if not chunk:
                raise RelayNodeError("io", "the node closed the serving connection")
            answer += chunk
        reply = json.loads(answer)
        error = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(error, dict):
            raise RelayNodeError(str(error.get("kind")), str(error.get("detail", "")))
        sock.settimeout(None)
        return Server(sock, service, str(reply.get("node_id", "")), handler, concurrency,
                      stream_requests or ())
    except (OSError, ValueError) as e:
        sock.close()
        raise RelayNodeError("io", f"serving {service}: {e}") from None
    except BaseException:
        sock.close()
        raise
