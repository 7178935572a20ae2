"""Channels through the local API (docs/LOCAL_API.md, "Channels routes";
docs/CHANNELS.md): create and remove channels, publish, and subscribe as
an iterator of messages and gap notices. Client's create_channel(),
publish() and subscribe() call these."""

import socket
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union
from urllib.parse import quote

from . import _http

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


def subscribe(client: Any, name: str, token: Optional[str] = None, queue: Optional[str] = None,
              start: Union[str, int] = "live", count: Optional[int] = None,
              backpressure: str = "block", timeout: Optional[float] = None
              ) -> Iterator[Dict[str, Any]]:
    """Subscribes and yields each message as it arrives (`seq`, `publisher`,
    `ts`, `data`) and each gap notice (`{"gap": {"publisher", "from",
    "to"}}`). `start` is "live", "from-start" or an int (the last N retained).
    The subscription is live when this returns; a denial raises at once,
    the end of the subscription (e.g. `token: revoked`) raises from the
    iterator. A read waits at most `timeout` seconds (default: forever)."""
    from .client import RelayNodeError

    query = ["name=" + quote(name, safe="")]
    if token is not None:
        query.append("token=" + quote(token, safe=""))
    if queue is not None:
        query.append("queue=" + quote(queue, safe=""))
    query.append("start=" + (f"last:{start}" if isinstance(start, int) else quote(start)))
    if count is not None:
        query.append(f"count={count}")
    query.append("backpressure=" + quote(backpressure))
    conn, response = client._open_stream("/v1/sub?" + "&".join(query), client.timeout + 15, timeout)

    def stream() -> Iterator[Dict[str, Any]]:
        try:
            for event in _http.read_ndjson(response):
                error = event.get("error")
                if isinstance(error, dict):
                    raise RelayNodeError(str(error.get("kind")), str(error.get("detail", "")))
                yield event
        except socket.timeout:
            raise RelayNodeError("timeout", f"no message within {timeout} s") from None
        except (OSError, ValueError) as e:
            raise RelayNodeError("io", f"reading {name}: {e}") from None
        finally:
            conn.close()

    return stream()
