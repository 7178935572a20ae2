"""The client of relay-node's local API (docs/LOCAL_API.md)."""

import base64
import json
import os
import secrets
import socket
import struct
from typing import Any, Dict, Iterator, Optional, Union

from . import _http
from ._ed25519 import verify_strict

__all__ = ["Client", "RelayNodeError", "default_data_dir", "decode_node_id"]

#: The context string the health proof is signed under.
HEALTH_PROOF_CONTEXT = b"relay-node/v1/health-proof"

# The kind for an error answer without a JSON body (LOCAL_API.md, Errors).
_STATUS_KINDS = {
    400: "bad-request",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    413: "body-too-large",
    426: "upgrade-required",
    431: "head-too-large",
    500: "internal",
    503: "busy",
    504: "timeout",
}


class RelayNodeError(Exception):
    """A failed request: `kind` is stable and machine-readable, `detail` is
    for humans. `status` is the HTTP status, or None when the node was not
    reached or its answer was wrong."""

    def __init__(self, kind: str, detail: str, status: Optional[int] = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status


def default_data_dir() -> str:
    """`$RELAY_NODE_DATA_DIR`, else `~/.local/share/relay-node`."""
    return os.environ.get("RELAY_NODE_DATA_DIR") or os.path.expanduser(
        "~/.local/share/relay-node"
    )


def decode_node_id(node_id: str) -> bytes:
    """The 32-byte ed25519 public key of a NodeId (52 lowercase base32
    characters); raises RelayNodeError("invalid-node-id") if it is not one."""
    if len(node_id) != 52 or node_id != node_id.lower():
        raise RelayNodeError("invalid-node-id", f"{node_id!r} is not 52 lowercase base32 characters")
    try:
        raw = base64.b32decode(node_id.upper() + "====")
    except ValueError as e:
        raise RelayNodeError("invalid-node-id", f"{node_id!r}: {e}") from None
    return raw[:32]


class Client:
    """A client of the node whose data dir is `data_dir` (default:
    default_data_dir()), or whose API socket is `socket_path`. Each call is
    one request on its own connection; `timeout` bounds each (seconds)."""

    def __init__(
        self,
        data_dir: Optional[str] = None,
        socket_path: Optional[str] = None,
        timeout: float = 10.0,
    ) -> None:
        if socket_path is None:
            socket_path = os.path.join(data_dir or default_data_dir(), "api.sock")
        self.socket_path = socket_path
        self.timeout = timeout

    def health(self, nonce: Optional[bytes] = None, node_id: Optional[str] = None) -> Dict[str, Any]:
        """Proves the socket is served by a running node: sends `nonce`
        (default: 16 random bytes) and checks that the answer echoes it and
        carries a valid ed25519 signature by the answer's `node_id` (which
        must equal `node_id` if given). Raises RelayNodeError("bad-proof")
        otherwise. Returns the answer: node_id, nonce, signature, version."""
        nonce = secrets.token_bytes(16) if nonce is None else nonce
        answer = self._json("GET", "/v1/health?nonce=" + nonce.hex())
        try:
            got_nonce = bytes.fromhex(answer["nonce"])
            key = decode_node_id(answer["node_id"])
            signature = bytes.fromhex(answer["signature"])
        except (KeyError, TypeError, ValueError, RelayNodeError) as e:
            raise RelayNodeError("bad-proof", f"malformed health answer: {e}") from None
        if got_nonce != nonce:
            raise RelayNodeError("bad-proof", "the answer does not echo our nonce")
        if node_id is not None and answer["node_id"] != node_id:
            raise RelayNodeError("bad-proof", f"answered by {answer['node_id']}, not {node_id}")
        signed = HEALTH_PROOF_CONTEXT + b"\0" + key + struct.pack(">H", len(nonce)) + nonce
        if not verify_strict(key, signed, signature):
            raise RelayNodeError("bad-proof", "the health signature does not verify")
        return answer

    def status(self) -> Dict[str, Any]:
        """The node's status (what `relay-node status --json` prints)."""
        return self._json("GET", "/v1/status")

    def netcheck(self) -> Dict[str, Any]:
        """The node's view of the network (`relay-node netcheck --json`)."""
        return self._json("GET", "/v1/netcheck")

    def ping(self, node_id: str, timeout_ms: int = 5000) -> Dict[str, Any]:
        """One ping round trip to a peer (dialing it if needed): node_id,
        path, remote_addr, via and rtt_ms."""
        body = {"node_id": node_id, "timeout_ms": timeout_ms}
        return self._json("POST", "/v1/ping", body, self.timeout + timeout_ms / 1000)

    def events(self, keepalives: bool = False, timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """Peer events (`connected`, `path-changed`, `disconnected`, ...) as
        dicts, as they happen, until the node stops or the iterator is
        closed. The stream is open when this returns, so no later event is
        missed. `keepalive` events are skipped unless `keepalives`. A read
        waits at most `timeout` seconds (default: forever)."""
        conn, response = self._open_stream("/v1/events", self.timeout, timeout)

        def stream() -> Iterator[Dict[str, Any]]:
            try:
                for event in _http.read_ndjson(response):
                    if keepalives or event.get("type") != "keepalive":
                        yield event
            except socket.timeout:
                raise RelayNodeError("timeout", f"no event within {timeout} s") from None
            except (OSError, ValueError) as e:
                raise RelayNodeError("io", f"reading events: {e}") from None
            finally:
                conn.close()

        return stream()

    def revoke_token(self, token: Optional[str] = None, token_id: Optional[str] = None,
                     expires_unix_ms: Optional[int] = None, reason: str = "") -> Dict[str, Any]:
        """Revokes a token mesh-wide (`POST /v1/tokens/revoke`): by its text,
        or by `token_id` with `expires_unix_ms` (how long to keep the
        revocation). Returns `id`, `expires_unix_ms` and the ledger `cursor`."""
        body: Dict[str, Any] = {"reason": reason}
        if token is not None:
            body["token"] = token
        if token_id is not None:
            body["id"] = token_id
        if expires_unix_ms is not None:
            body["expires_unix_ms"] = expires_unix_ms
        return self._json("POST", "/v1/tokens/revoke", body)
    def services(self) -> Dict[str, Any]:
        """Every nRPC service mesh-wide (`relay-node services --json`)."""
        return self._json("GET", "/v1/services")

    def _call_body(self, target: str, body: Union[bytes, str], node_id: Optional[str],
                   timeout_ms: int, idempotent: bool, metadata: Optional[Dict[str, str]],
                   stream: bool, token: Optional[str] = None) -> Dict[str, Any]:
        service, sep, method = target.rpartition(".")
        if not sep or not service or not method:
            raise RelayNodeError("invalid-target", f"{target!r} is not SERVICE.METHOD")
        request: Dict[str, Any] = {
            "service": service, "method": method, "timeout_ms": timeout_ms,
            "idempotent": idempotent, "metadata": metadata or {}, "stream": stream,
        }
        if isinstance(body, str):
            request["body"] = body
        else:
            request["body_hex"] = body.hex()
        if node_id is not None:
            request["node_id"] = node_id
        if token is not None:
            request["token"] = token
        return request

    def call(self, target: str, body: Union[bytes, str] = b"", node_id: Optional[str] = None,
             timeout_ms: int = 5000, idempotent: bool = False,
             metadata: Optional[Dict[str, str]] = None, token: Optional[str] = None) -> bytes:
        """A unary nRPC call of "SERVICE.METHOD" made by the node; returns
        the reply. `token` (`rnk1...`) is presented to a service that
        requires one. Failures raise RelayNodeError with nRPC's kind
        (`no-responders`, `timeout`, `permission-denied`, ...)."""
        request = self._call_body(target, body, node_id, timeout_ms, idempotent, metadata, False,
                                  token)
        answer = self._json("POST", "/v1/call", request, self.timeout + timeout_ms / 1000)
        return bytes.fromhex(answer.get("body_hex", ""))

    def call_stream(self, target: str, body: Union[bytes, str] = b"",
                    node_id: Optional[str] = None, timeout_ms: int = 5000,
                    metadata: Optional[Dict[str, str]] = None,
                    token: Optional[str] = None) -> Iterator[bytes]:
        """A server-streaming nRPC call; yields each item (collected by the
        node, at most 10 000)."""
        request = self._call_body(target, body, node_id, timeout_ms, False, metadata, True, token)
        answer = self._json("POST", "/v1/call", request, self.timeout + timeout_ms / 1000)
        for item in answer.get("items", []):
            yield bytes.fromhex(item.get("body_hex", ""))

    def open_call(self, target: str, **options: Any) -> Any:
        """Opens a streaming nRPC call (see relay_node.rpc_call.open_call):
        returns a CallStream to send() requests, finish(), and iterate the
        responses. Options: node_id, timeout_ms, idempotent, metadata,
        token."""
        from . import rpc_call
        return rpc_call.open_call(self, target, **options)

    def call_client_stream(self, target: str, requests: Any, **options: Any) -> bytes:
        """A client-streaming nRPC call: sends each message of the iterable
        `requests`, returns the reply. Options as open_call()."""
        from . import rpc_call
        return rpc_call.call_client_stream(self, target, requests, **options)

    def call_duplex(self, target: str, requests: Any, **options: Any) -> Iterator[bytes]:
        """A duplex nRPC call: sends the iterable `requests` on its own
        thread while yielding each response as it arrives. Options as
        open_call()."""
        from . import rpc_call
        return rpc_call.call_duplex(self, target, requests, **options)

    def caller(self, service: str, **options: Any) -> Any:
        """Opens a connection for many unary calls of `service` (see
        relay_node.rpc_calls.open_caller): returns a Caller whose call()
        and call_many() (a window of calls in flight at once) reuse it.
        Options: node_id, timeout_ms, idempotent, metadata, token."""
        from . import rpc_calls
        return rpc_calls.open_caller(self, service, **options)

    def serve(self, service: str, handler: Any = None, **options: Any) -> Any:
        """Serves an nRPC service from this process (see
        relay_node.rpc_serve.serve): `serve("inventory", handler,
        methods=["get"])` returns the running Server; without a handler it
        is a decorator (`@client.serve("inventory")`) that starts serving
        and returns the Server in place of the function."""
        from . import rpc_serve
        if handler is None:
            return lambda f: rpc_serve.serve(self, service, f, **options)
        return rpc_serve.serve(self, service, handler, **options)

    def create_channel(self, name: str, **policy: Any) -> Dict[str, Any]:
        """Owns a new channel (see relay_node.channels.create_channel)."""
        from . import channels
        return channels.create_channel(self, name, **policy)

    def publish(self, name: str, messages: Any, token: Optional[str] = None) -> Any:
        """Publishes (see relay_node.channels.publish)."""
        from . import channels
        return channels.publish(self, name, messages, token)

    def subscribe(self, name: str, **options: Any) -> Iterator[Dict[str, Any]]:
        """Subscribes (see relay_node.channels.subscribe)."""
        from . import channels
        return channels.subscribe(self, name, **options)

    def _open_stream(self, path: str, open_timeout: float, read_timeout: Optional[float]) -> Any:
        """Opens a streaming GET: checks the answer's status, then lets each
        later read wait at most `read_timeout` seconds (None: forever).
        Returns (connection, response); the connection is closed on error."""
        conn, response = self._open("GET", path, None, open_timeout)
        try:
            self._check(response)
            if conn.sock is not None:
                conn.sock.settimeout(read_timeout)
        except BaseException:
            conn.close()
            raise
        return conn, response

    def _open(self, method: str, path: str, body: Optional[Dict[str, Any]], timeout: float) -> Any:
        try:
            return _http.open_request(self.socket_path, method, path, body, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            raise RelayNodeError(
                "not-running", f"no relay-node is serving {self.socket_path}"
            ) from None
        except OSError as e:
            raise RelayNodeError("io", f"{self.socket_path}: {e}") from None

    def _json(self, method: str, path: str, body: Optional[Dict[str, Any]] = None,
              timeout: Optional[float] = None) -> Any:
        conn, response = self._open(method, path, body, timeout or self.timeout)
        try:
            self._check(response)
            answer = _http.read_json(response)
        except OSError as e:
            raise RelayNodeError("io", f"{self.socket_path}: {e}") from None
        finally:
            conn.close()
        if not isinstance(answer, dict):
            raise RelayNodeError("bad-answer", f"{method} {path}: the answer is not a JSON object")
        return answer

    @staticmethod
    def _check(response: Any) -> None:
        """Raises the RelayNodeError an error answer carries."""
        if response.status < 400:
            return
        error = _http.read_json(response)
        error = error.get("error") if isinstance(error, dict) else None
        if isinstance(error, dict) and isinstance(error.get("kind"), str):
            raise RelayNodeError(error["kind"], str(error.get("detail", "")), response.status)
        kind = _STATUS_KINDS.get(response.status, "http")
        raise RelayNodeError(kind, f"HTTP {response.status} {response.reason}", response.status)
