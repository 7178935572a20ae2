"""Channels through the local API (docs/LOCAL_API.md, "Channels routes";
docs/CHANNELS.md): create and remove channels, publish, and subscribe as
an iterator of messages and gap notices. Client's create_channel(),
publish() and subscribe() call these."""

import base64
import json
import socket
import struct
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

__all__ = ["create_channel", "remove_channel", "list_channels", "publish", "subscribe"]

# Messages per /v1/pub request, and their bytes (the API takes 64 KiB bodies).
_BATCH = 1000
_BATCH_BYTES = 40 * 1024


def create_channel(client: Any, name: str, require_token: bool = False, best_effort: bool = False,
                   history: Optional[Union[int, str]] = None,
                   max_rate: Optional[int] = None) -> Dict[str, Any]:
    """Owns a new channel on this node; `history` is a count or a duration
    (`"30s"`, `"10m"`). Returns name, owner and policy."""
    body: Dict[str, Any] = {"name": name, "require_token": require_token,
                            "best_effort": best_effort}
    if history is not None:
        body["history"] = str(history)
    if max_rate is not None:
        body["max_rate"] = max_rate
    return client._json("POST", "/v1/channels/create", body)


def remove_channel(client: Any, name: str) -> Dict[str, Any]:
    """Withdraws a channel this node owns."""
    return client._json("POST", "/v1/channels/rm", {"name": name})


def list_channels(client: Any) -> List[Dict[str, Any]]:
    """Every channel registered in the mesh."""
    return client._json("GET", "/v1/channels")["channels"]


def publish(client: Any, name: str, messages: Union[str, Sequence[str]],
            token: Optional[str] = None) -> List[Dict[str, int]]:
    """Publishes one message or many, in order; returns, per message, how
    many targets got it: `{"delivered": N, "targets": M}`."""
    if isinstance(messages, str):
        messages = [messages]
    results: List[Dict[str, int]] = []
    batch: List[str] = []
    size = 0

    def send() -> None:
        body: Dict[str, Any] = {"name": name, "messages": batch}
        if token is not None:
            body["token"] = token
        results.extend(client._json("POST", "/v1/pub", body, client.timeout + 15)["results"])

    for message in messages:
        batch.append(message)
        size += len(message.encode()) + 8
        if len(batch) >= _BATCH or size >= _BATCH_BYTES:
            send()
            batch, size = [], 0
    if batch:
        send()
    return results


# Frame types of the channels stream (docs/LOCAL_API.md).
_MESSAGE, _GAP, _END = 0x01, 0x02, 0x03
_HEAD = struct.Struct(">32sQQ")
_UPGRADE = ("GET /v1/stream/channels HTTP/1.1\r\nHost: relay-node\r\n"
            "Connection: Upgrade\r\nUpgrade: relay-node-frames/1\r\n\r\n").encode()
_MAX_HEAD = 64 * 1024


def _node_id(raw: bytes) -> str:
    """The text form of a NodeId (52 lowercase base32 characters)."""
    return base64.b32encode(raw).decode().rstrip("=").lower()


class _Frames:
    """Length-prefixed frames (u32 big-endian) on an upgraded socket."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(buffered)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def recv(self) -> Optional[bytes]:
        """The next frame, or None when the node closed the stream."""
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack_from(">I", self.buf)
                if len(self.buf) >= 4 + n:
                    frame = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return frame
            chunk = self.sock.recv(64 * 1024)
            if not chunk:
                if self.buf:
                    raise OSError("the stream ended inside a frame")
                return None
            self.buf += chunk


def _upgrade(client: Any, timeout: float) -> _Frames:
    """Connects and upgrades to the channels frame stream; an error answer
    raises its RelayNodeError."""
    from .client import RelayNodeError

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(client.socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise RelayNodeError("not-running",
                                 f"no relay-node is serving {client.socket_path}") from None
        sock.sendall(_UPGRADE)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk or len(data) > _MAX_HEAD:
                raise RelayNodeError("io", "the node closed the connection during the upgrade")
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status != 101:
            length = 0
            for line in lines[1:]:
                key, _, value = line.partition(":")
                if key.strip().lower() == "content-length":
                    length = min(int(value.strip()), _MAX_HEAD)
            while len(rest) < length:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
            raise _error(rest[:length], f"HTTP {status}")
        return _Frames(sock, rest)
    except BaseException:
        sock.close()
        raise


def _error(body: bytes, fallback: str) -> Exception:
    """The RelayNodeError of a `{"error":{kind,detail}}` body."""
    from .client import RelayNodeError

    try:
        error = json.loads(body).get("error")
        return RelayNodeError(str(error["kind"]), str(error.get("detail", "")))
    except (ValueError, AttributeError, KeyError, TypeError):
        return RelayNodeError("bad-answer", fallback)


def _event(frame: bytes) -> Dict[str, Any]:
    """A message or gap frame as the objects of GET /v1/sub; an end frame
    raises the node's error."""
    kind = frame[:1]
    if kind == bytes([_MESSAGE]) and len(frame) >= 1 + _HEAD.size:
        publisher, seq, ts = _HEAD.unpack_from(frame, 1)
        data = frame[1 + _HEAD.size:].decode("utf-8", "replace")
        return {"seq": seq, "publisher": _node_id(publisher), "ts": ts, "data": data}
    if kind == bytes([_GAP]) and len(frame) == 1 + _HEAD.size:
        publisher, first, last = _HEAD.unpack_from(frame, 1)
        return {"gap": {"publisher": _node_id(publisher), "from": first, "to": last}}
    if kind == bytes([_END]):
        raise _error(frame[1:], "a bad end frame")
    raise _error(b"", f"a bad channels frame of {len(frame)} bytes")


def subscribe(client: Any, name: str, token: Optional[str] = None, queue: Optional[str] = None,
              start: Union[str, int] = "live", count: Optional[int] = None,
              backpressure: str = "block", timeout: Optional[float] = None
              ) -> Iterator[Dict[str, Any]]:
    """Subscribes and yields each message as it arrives (`seq`, `publisher`,
    `ts`, `data`) and each gap notice (`{"gap": {"publisher", "from",
    "to"}}`). `start` is "live", "from-start" or an int (the last N retained).
    The subscription is live when this returns; a denial raises at once,
    the end of the subscription (e.g. `token: revoked`) raises from the
    iterator. A read waits at most `timeout` seconds (default: forever).
    Events come over the channels frame stream, many per read; `data` is
    the payload as UTF-8 (invalid bytes replaced)."""
    from .client import RelayNodeError

    opening: Dict[str, Any] = {"op": "sub", "name": name, "backpressure": backpressure,
                               "start": f"last:{start}" if isinstance(start, int) else start}
    if token is not None:
        opening["token"] = token
    if queue is not None:
        opening["queue"] = queue
    frames = _upgrade(client, client.timeout + 15)
    try:
        frames.send(json.dumps(opening).encode())
        answer = frames.recv()
        if answer is None:
            raise RelayNodeError("io", f"the node closed the stream to {name}")
        if json.loads(answer).get("ok") is not True:
            raise _error(answer, "a bad answer")
        frames.sock.settimeout(timeout)
    except OSError as e:
        frames.sock.close()
        raise RelayNodeError("io", f"subscribing to {name}: {e}") from None
    except BaseException:
        frames.sock.close()
        raise

    def stream() -> Iterator[Dict[str, Any]]:
        received = 0
        try:
            while count is None or received < count:
                frame = frames.recv()
                if frame is None:
                    return
                event = _event(frame)
                if "seq" in event:
                    received += 1
                yield event
        except socket.timeout:
            raise RelayNodeError("timeout", f"no message within {timeout} s") from None
        except OSError as e:
            raise RelayNodeError("io", f"reading {name}: {e}") from None
        finally:
            frames.sock.close()

    return stream()
