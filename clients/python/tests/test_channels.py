"""Channels through the Python client against real nodes: create, publish,
subscribe with history replay then live, and a denied subscription.
Needs RELAY_NODE_BIN."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relay_node import RelayNodeError  # noqa: E402
from relay_node.channels import list_channels  # noqa: E402
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


if __name__ == "__main__":
    unittest.main()
