"""Channels through the local API (docs/LOCAL_API.md, "Channels routes";
docs/CHANNELS.md): create and remove channels, publish, and subscribe as
an iterator of messages and gap notices. Client's create_channel(),
publish() and subscribe() call these."""

import base64
import json
import selectors
import socket
import struct
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

from ._frames import _LEN, _Frames

__all__ = ["create_channel", "remove_channel", "list_channels", "publish", "subscribe"]

# A message: text (sent as UTF-8) or bytes.
_Message = Union[str, bytes, bytearray, memoryview]
# Bytes of publish frames gathered for one write.
_WRITE_BYTES = 64 * 1024


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


def publish(client: Any, name: str, messages: Union[_Message, Iterable[_Message]],
            token: Optional[str] = None) -> List[Dict[str, int]]:
    """Publishes one message or many, in order; returns, per message, how
    many targets got it: `{"delivered": N, "targets": M}`. A message is a
    str (sent as UTF-8) or bytes. Messages go over the channels frame
    stream, many per write, while the acknowledgements are read as they
    come; an error (`token`, `no-such-channel`, `timeout`, ...) raises
    RelayNodeError."""
    if isinstance(messages, (str, bytes, bytearray, memoryview)):
        messages = [messages]
    pending = [_payload(m) for m in messages]
    if not pending:
        return []
    opening: Dict[str, Any] = {"op": "pub", "name": name}
    if token is not None:
        opening["token"] = token
    frames = _open(client, opening, name)
    try:
        return _pump(frames, name, pending, client.timeout + 15)
    finally:
        frames.sock.close()


def _payload(message: _Message) -> bytes:
    """A message's bytes: text as UTF-8, bytes as they are."""
    if isinstance(message, str):
        return message.encode()
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"a message is str or bytes, not {type(message).__name__}")


def _pump(frames: "_Frames", name: str, messages: List[bytes],
          timeout: float) -> List[Dict[str, int]]:
    """Writes `messages` (many frames per write), closes the writing side
    and reads one ack per message, both at once so that neither side's
    buffers fill up. Waits at most `timeout` seconds without progress."""
    from .client import RelayNodeError

    sock = frames.sock
    results: List[Dict[str, int]] = []
    out = bytearray()
    queued = 0
    closed_write = False
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    try:
        while len(results) < len(messages):
            while queued < len(messages) and len(out) < _WRITE_BYTES:
                data = messages[queued]
                out += _LEN.pack(len(data))
                out += data
                queued += 1
            if not out and not closed_write:
                # Everything is written: the node answers what is in
                # flight and closes.
                _shutdown_write(sock)
                closed_write = True
                selector.modify(sock, selectors.EVENT_READ)
            ready = selector.select(timeout)
            if not ready:
                raise RelayNodeError("timeout", f"publishing to {name}: no progress in {timeout} s")
            mask = ready[0][1]
            if mask & selectors.EVENT_WRITE and out:
                try:
                    del out[:sock.send(out)]
                except BlockingIOError:
                    pass
                except OSError:
                    # The node closed (after an end frame): read what it sent.
                    out.clear()
                    queued = len(messages)
                    closed_write = True
                    selector.modify(sock, selectors.EVENT_READ)
            if mask & selectors.EVENT_READ:
                try:
                    chunk = sock.recv(64 * 1024)
                except BlockingIOError:
                    continue
                frames.buf += chunk
                while True:
                    frame = frames.next_buffered()
                    if frame is None:
                        break
                    results.append(_ack(frame))
                if not chunk:
                    raise RelayNodeError("io", f"the node closed the stream to {name} after "
                                               f"{len(results)} of {len(messages)} acks")
        if len(results) > len(messages) or frames.buf:
            raise RelayNodeError("bad-answer", f"more than one ack per message from {name}")
        return results
    except OSError as e:
        raise RelayNodeError("io", f"publishing to {name}: {e}") from None
    finally:
        selector.close()


def _shutdown_write(sock: socket.socket) -> None:
    """Closes the writing side; a node that already closed is found by the
    next read."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _ack(frame: bytes) -> Dict[str, int]:
    """An ack frame as `{"delivered": N, "targets": M}`; an end frame raises
    the node's error."""
    if frame[:1] == bytes([_ACK]) and len(frame) == 1 + _ACK_BODY.size:
        delivered, targets = _ACK_BODY.unpack_from(frame, 1)
        return {"delivered": delivered, "targets": targets}
    if frame[:1] == bytes([_END]):
        raise _error(frame[1:], "a bad end frame")
    raise _error(b"", f"a bad ack frame of {len(frame)} bytes")


# Frame types of the channels stream (docs/LOCAL_API.md).
_MESSAGE, _GAP, _END, _ACK = 0x01, 0x02, 0x03, 0x04
_HEAD = struct.Struct(">32sQQ")
_ACK_BODY = struct.Struct(">II")
_UPGRADE = ("GET /v1/stream/channels HTTP/1.1\r\nHost: relay-node\r\n"
            "Connection: Upgrade\r\nUpgrade: relay-node-frames/1\r\n\r\n").encode()
_MAX_HEAD = 64 * 1024


def _node_id(raw: bytes) -> str:
    """The text form of a NodeId (52 lowercase base32 characters)."""
    return base64.b32encode(raw).decode().rstrip("=").lower()


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


def _open(client: Any, opening: Dict[str, Any], name: str) -> _Frames:
    """Upgrades to the channels frame stream and sends the open frame
    (`{"op":"sub",...}` or `{"op":"pub",...}`); returns once the node said
    ok, else raises its error (`token`, `no-such-channel`, ...)."""
    from .client import RelayNodeError

    frames = _upgrade(client, client.timeout + 15)
    try:
        frames.send(json.dumps(opening).encode())
        answer = frames.recv()
        if answer is None:
            raise RelayNodeError("io", f"the node closed the stream to {name}")
        try:
            ok = json.loads(answer).get("ok") is True
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise _error(answer, "a bad answer")
        return frames
    except OSError as e:
        frames.sock.close()
        raise RelayNodeError("io", f"opening the stream to {name}: {e}") from None
    except BaseException:
        frames.sock.close()
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
              backpressure: str = "block", timeout: Optional[float] = None,
              window: Optional[int] = None) -> Iterator[Dict[str, Any]]:
    """Subscribes and yields each message as it arrives (`seq`, `publisher`,
    `ts`, `data`) and each gap notice (`{"gap": {"publisher", "from",
    "to"}}`). `start` is "live", "from-start" or an int (the last N retained).
    The subscription is live when this returns; a denial raises at once,
    the end of the subscription (e.g. `token: revoked`) raises from the
    iterator. A read waits at most `timeout` seconds (default: forever).
    Events come over the channels frame stream, many per read; `data` is
    the payload as UTF-8 (invalid bytes replaced). `window` is how many
    messages the owner may send ahead of what was read (1 to 65536; the
    node's default, 4096, when None)."""
    from .client import RelayNodeError

    opening: Dict[str, Any] = {"op": "sub", "name": name, "backpressure": backpressure,
                               "start": f"last:{start}" if isinstance(start, int) else start}
    if token is not None:
        opening["token"] = token
    if queue is not None:
        opening["queue"] = queue
    if window is not None:
        opening["window"] = window
    frames = _open(client, opening, name)
    frames.sock.settimeout(timeout)

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
