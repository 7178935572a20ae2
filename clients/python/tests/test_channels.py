"""Channels through the Python client against real nodes: create, publish,
subscribe with history replay then live, many messages over the frame
stream both ways, bytes, and errors at the open and mid-stream; the
stream's frames decoded strictly. Needs RELAY_NODE_BIN."""

import os
import shutil
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relay_node import RelayNodeError, decode_node_id  # noqa: E402
from relay_node.channels import _ack, _event, list_channels  # noqa: E402
from test_client import BIN, Node, cli  # noqa: E402


@unittest.skipUnless(BIN, "RELAY_NODE_BIN is not set")
class Channels(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="relay-node-py-channels-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.dir = os.path.join(self.tmp, "a")
        cli(self.dir, "init")
        self.node = Node(self.dir)
        self.addCleanup(self.node.stop)

    def test_history_then_live_in_order(self) -> None:
        c = self.node.client
        created = c.create_channel("py/news", history=5)
        self.assertEqual(created["policy"]["history"], "last 5")
        self.assertEqual([x["name"] for x in list_channels(c)], ["py/news"])
        results = c.publish("py/news", [f"m{i}" for i in range(8)])
        self.assertEqual(results[0], {"delivered": 0, "targets": 0})
        messages = c.subscribe("py/news", start="from-start", count=6, timeout=30)
        # The subscription is live now: this one arrives after the replay.
        self.assertEqual(c.publish("py/news", "live"), [{"delivered": 1, "targets": 1}])
        got = [m["data"] for m in messages]
        self.assertEqual(got, ["m3", "m4", "m5", "m6", "m7", "live"])

    def test_many_messages_in_order_over_the_stream(self) -> None:
        c = self.node.client
        c.create_channel("py/bulk")
        messages = c.subscribe("py/bulk", count=3000, timeout=60)
        results = c.publish("py/bulk", [f"m{i}" for i in range(3000)])
        self.assertEqual(results[-1], {"delivered": 1, "targets": 1})
        got = list(messages)
        self.assertEqual([m["seq"] for m in got], list(range(1, 3001)))
        self.assertEqual([m["data"] for m in got], [f"m{i}" for i in range(3000)])
        self.assertEqual({m["publisher"] for m in got}, {cli(self.dir, "id")})

    def test_a_small_window_still_delivers_everything_in_order(self) -> None:
        c = self.node.client
        c.create_channel("py/window")
        messages = c.subscribe("py/window", count=500, timeout=60, window=2)
        c.publish("py/window", [f"m{i}" for i in range(500)])
        self.assertEqual([m["data"] for m in messages], [f"m{i}" for i in range(500)])
        for bad in (0, 65537):
            with self.assertRaises(RelayNodeError) as e:
                c.subscribe("py/window", window=bad)
            self.assertIn("window", str(e.exception))

    def test_publish_writes_more_than_the_socket_buffers_hold(self) -> None:
        # 20000 acks are about 260 KB: more than the socket buffers hold, so
        # this only passes if acks are read while messages are written.
        c = self.node.client
        c.create_channel("py/flood")
        results = c.publish("py/flood", (f"m{i}" for i in range(20000)))
        self.assertEqual(len(results), 20000)
        self.assertEqual({(r["delivered"], r["targets"]) for r in results}, {(0, 0)})
        self.assertEqual(c.publish("py/flood", []), [])

    def test_publish_takes_bytes(self) -> None:
        c = self.node.client
        c.create_channel("py/bytes")
        messages = c.subscribe("py/bytes", count=3, timeout=30)
        self.assertEqual(c.publish("py/bytes", b"\xffraw"), [{"delivered": 1, "targets": 1}])
        self.assertEqual(len(c.publish("py/bytes", [b"", bytearray(b"ba")])), 2)
        self.assertEqual([m["data"] for m in messages], ["\ufffdraw", "", "ba"])
        with self.assertRaises(TypeError):
            c.publish("py/bytes", [1, 2])

    def test_errors_carry_their_kinds(self) -> None:
        c = self.node.client
        c.create_channel("py/gated", require_token=True)
        # The owner itself needs no token.
        self.assertEqual(c.publish("py/gated", "x"), [{"delivered": 0, "targets": 0}])
        with self.assertRaises(RelayNodeError) as e:
            c.subscribe("py/nope")
        self.assertEqual(e.exception.kind, "no-such-channel")
        with self.assertRaises(RelayNodeError) as e:
            c.create_channel("py/gated")
        self.assertEqual(e.exception.kind, "channel-exists")
        # Refused when the stream opens.
        with self.assertRaises(RelayNodeError) as e:
            c.publish("py/nope", "x")
        self.assertEqual(e.exception.kind, "no-such-channel")
        with self.assertRaises(RelayNodeError) as e:
            c.publish("py/gated", "x", token="not-a-token")
        self.assertEqual(e.exception.kind, "token")
        # Refused mid-stream: the end frame's error.
        with self.assertRaises(RelayNodeError) as e:
            c.publish("py/gated", ["ok", "x" * (64 * 1024 + 1), "never"])
        self.assertEqual(e.exception.kind, "too-large")


class StreamFrames(unittest.TestCase):
    """The subscriber's decoding of the channels frame stream, without a node."""

    def test_stream_frames_decode_strictly(self) -> None:
        publisher = bytes(range(32))
        head = struct.pack(">32sQQ", publisher, 7, 9)
        message = _event(bytes([1]) + head + b"\xffhi")
        self.assertEqual(message["seq"], 7)
        self.assertEqual(message["data"], "\ufffdhi")
        self.assertEqual(decode_node_id(message["publisher"]), publisher)
        self.assertEqual(_event(bytes([2]) + head)["gap"]["to"], 9)
        with self.assertRaises(RelayNodeError) as e:
            _event(bytes([3]) + b'{"error":{"kind":"token","detail":"revoked"}}')
        self.assertEqual((e.exception.kind, e.exception.detail), ("token", "revoked"))
        for bad in [b"", bytes([1]) + head[:10], bytes([2]) + head + b"x", b"\x09"]:
            with self.assertRaises(RelayNodeError):
                _event(bad)

    def test_ack_frames_decode_strictly(self) -> None:
        ack = bytes([4]) + struct.pack(">II", 1, 2)
        self.assertEqual(_ack(ack), {"delivered": 1, "targets": 2})
        with self.assertRaises(RelayNodeError) as e:
            _ack(bytes([3]) + b'{"error":{"kind":"too-large","detail":"big"}}')
        self.assertEqual((e.exception.kind, e.exception.detail), ("too-large", "big"))
        for bad in [b"", ack[:8], ack + b"x", bytes([1]) + ack[1:], b"\x09"]:
            with self.assertRaises(RelayNodeError):
                _ack(bad)


if __name__ == "__main__":
    unittest.main()
