"""HTTP/1.1 over a Unix socket, with the standard library's http.client.

The reusable plumbing of the client: one connection per request, a JSON
request helper, and a reader for NDJSON streams. Nothing here knows the
node's routes.
"""

import http.client
import json
import socket
from typing import Any, Dict, Iterator, Optional, Tuple

__all__ = ["UnixHTTPConnection", "open_request", "read_json", "read_ndjson"]


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection to a Unix socket path instead of a TCP address."""

    def __init__(self, socket_path: str, timeout: Optional[float]) -> None:
        # The Host header's value is required by HTTP/1.1 but ignored.
        super().__init__("relay-node", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def open_request(
    socket_path: str,
    method: str,
    path: str,
    body: Optional[Dict[str, Any]] = None,
    timeout: Optional[float] = None,
) -> Tuple[UnixHTTPConnection, http.client.HTTPResponse]:
    """Sends one request; returns the connection and its response, whose
    body is not read yet. The caller closes the connection."""
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        return conn, conn.getresponse()
    except BaseException:
        conn.close()
        raise


def read_json(response: http.client.HTTPResponse) -> Any:
    """The whole body as JSON, or None when it is empty or not JSON."""
    data = response.read()
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def read_ndjson(response: http.client.HTTPResponse) -> Iterator[Dict[str, Any]]:
    """Yields each JSON object of a newline-delimited JSON stream (chunked
    or not) until the server ends it. Blank lines are skipped."""
    while True:
        line = response.readline()
        if not line:
            return
        line = line.strip()
        if line:
            yield json.loads(line)
