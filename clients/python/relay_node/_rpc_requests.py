"""The request messages of a served call with streamed requests (client
streaming, duplex; docs/LOCAL_API.md, "Streamed requests"): what a
handler iterates as `call.requests`.

The server's reader thread puts each `request item` here and never
blocks: the node sends a call at most 4 items it has not been given
credit back for, and this iterator gives one credit back (a `credit`
frame) each time the handler takes an item. So the queue holds at most 4
items and the end marker.
"""

import queue
from typing import Any, Callable, Iterator, Union

__all__ = ["Requests"]

_END = object()
_CANCELLED = object()


class Requests(Iterator[bytes]):
    """Yields a call's request messages (bytes) in order until the caller
    finished sending. Raises RelayNodeError("cancelled") when the call is
    cancelled (or the connection to the node ended) while it waits."""

    def __init__(self, credit: Callable[[], None]) -> None:
        self._queue: "queue.Queue[Union[bytes, object]]" = queue.Queue()
        self._credit = credit
        self._done = False

    # The reader thread's side.
    def put(self, message: bytes) -> None:
        self._queue.put(message)

    def end(self) -> None:
        self._queue.put(_END)

    def cancel(self) -> None:
        self._queue.put(_CANCELLED)

    # The handler's side.
    def __iter__(self) -> "Requests":
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        item: Any = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if item is _CANCELLED:
            from .client import RelayNodeError
            self._done = True
            raise RelayNodeError("cancelled", "the call was cancelled")
        self._credit()
        return bytes(item)
