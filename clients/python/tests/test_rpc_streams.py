"""Client-streaming and duplex nRPC calls through the client against real
nodes: this process serves a service through A (`serve()` with
`stream_requests`) and calls it from B (`call_client_stream()`,
`call_duplex()`, `open_call()`), so both peer-process sides of the
streams meet over the mesh."""

import os
import queue
import shutil
import sys
import tempfile
import threading
import unittest
from typing import Iterator, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relay_node import RelayNodeError  # noqa: E402
from relay_node.rpc_serve import Call  # noqa: E402
from test_client import BIN, Node, cli, wait_for  # noqa: E402


@unittest.skipUnless(BIN, "RELAY_NODE_BIN is not set")
class RpcStreams(unittest.TestCase):
    tmp: str
    a: Node
    b: Node

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="relay-node-py-rpcs-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        dir_a, dir_b = os.path.join(cls.tmp, "a"), os.path.join(cls.tmp, "b")
        cli(dir_a, "init")
        cls.a = Node(dir_a)
        cls.addClassCleanup(cls.a.stop)
        ticket = cli(dir_a, "invite")
        cli(dir_b, "init", "--join", ticket)
        cls.b = Node(dir_b)
        cls.addClassCleanup(cls.b.stop)

    def serve_tally(self, cancelled: threading.Event,
                    holding: Optional[threading.Event] = None) -> object:
        """tally.sum (client streaming), tally.chat (duplex), tally.hold
        (sets `holding` at its first request, then reads until cancelled;
        sets `cancelled` then), tally.count (requests not streamed)."""
        holding = holding or threading.Event()
        # The previous test's server withdrew tally when it stopped; once B
        # has seen that, the next tally B lists is this server's (a feed
        # replicates in order), not the withdrawn registration.
        wait_for("the previous tally gone from B's services", lambda: not any(
            s["name"] == "tally" for s in self.b.client.services()["services"]))

        def tally(call: Call) -> object:
            if call.method == "sum":
                total = 0
                for message in call.requests:
                    if not message.isdigit():
                        raise RelayNodeError("invalid-argument", f"{message.decode()!r} is not a number")
                    total += int(message)
                return str(total)
            if call.method == "chat":
                return (message.upper() for message in call.requests)
            if call.method == "hold":
                try:
                    for _ in call.requests:
                        holding.set()
                except RelayNodeError as e:
                    if e.kind == "cancelled" and call.cancelled.is_set():
                        cancelled.set()
                return b""
            return f"{len(list(call.requests))}:{call.body.decode()}"

        server = self.a.client.serve("tally", tally, methods=["sum", "chat", "hold", "count"],
                                     stream_requests=["sum", "chat", "hold"])
        wait_for("tally in B's services", lambda: any(
            s["name"] == "tally" for s in self.b.client.services()["services"]))
        return server

    def test_client_streaming(self) -> None:
        with self.serve_tally(threading.Event()):
            # Far more requests than the credit window: the node waits for
            # this process's credit between them.
            numbers = (str(i) for i in range(1, 501))
            self.assertEqual(self.b.client.call_client_stream("tally.sum", numbers), b"125250")
            self.assertEqual(self.b.client.call_client_stream("tally.sum", []), b"0")
            with self.assertRaises(RelayNodeError) as e:
                self.b.client.call_client_stream("tally.sum", ["1", "x", "2"])
            self.assertEqual((e.exception.kind, e.exception.detail),
                             ("invalid-argument", "'x' is not a number"))
            # A method without streamed requests: its one request is the body.
            self.assertEqual(self.b.client.call("tally.count", "z"), b"1:z")
        with self.assertRaises(RelayNodeError) as e:
            self.b.client.call_client_stream("nobody.sum", ["1"])
        self.assertEqual(e.exception.kind, "no-responders")

    def test_duplex(self) -> None:
        with self.serve_tally(threading.Event()):
            words: "queue.Queue[object]" = queue.Queue()

            def requests() -> Iterator[bytes]:
                while True:
                    word = words.get()
                    if word is None:
                        return
                    yield word

            responses = self.b.client.call_duplex("tally.chat", requests(), timeout_ms=20000)
            # Each answer comes back before the next request is even made.
            for word in [b"a", b"bc", b"def"]:
                words.put(word)
                self.assertEqual(next(responses), word.upper())
            words.put(None)
            self.assertEqual(list(responses), [])

            # The same by hand on one thread, for small messages.
            with self.b.client.open_call("tally.chat") as call:
                self.assertEqual(call.node_id, self.a.node_id)
                call.send("x")
                self.assertEqual(next(call), b"X")
                call.send(b"y")
                call.finish()
                self.assertEqual(list(call), [b"Y"])

    def test_closing_a_call_cancels_the_handler(self) -> None:
        cancelled, holding = threading.Event(), threading.Event()
        with self.serve_tally(cancelled, holding):
            call = self.b.client.open_call("tally.hold", timeout_ms=20000)
            call.send("1")
            # The call reached the handler (a stream reset earlier may
            # discard it before the serving node sees it).
            self.assertTrue(holding.wait(20), "the handler never got the request")
            call.close()
            self.assertTrue(cancelled.wait(20), "the handler never saw the cancellation")


if __name__ == "__main__":
    unittest.main()
