"""nRPC through the client against real nodes: A serves echo
(`run --serve-echo`), B joins by ticket and calls it."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relay_node import RelayNodeError  # noqa: E402
from test_client import BIN, Node, cli, wait_for  # noqa: E402


@unittest.skipUnless(BIN, "RELAY_NODE_BIN is not set")
class Rpc(unittest.TestCase):
    tmp: str
    a: Node
    b: Node

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="relay-node-py-rpc-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        dir_a, dir_b = os.path.join(cls.tmp, "a"), os.path.join(cls.tmp, "b")
        cli(dir_a, "init")
        cls.a = Node(dir_a, "--serve-echo")
        cls.addClassCleanup(cls.a.stop)
        ticket = cli(dir_a, "invite")
        cli(dir_b, "init", "--join", ticket)
        cls.b = Node(dir_b)
        cls.addClassCleanup(cls.b.stop)

    def test_call_and_call_stream(self) -> None:
        def echo_listed() -> bool:
            services = self.b.client.services()["services"]
            return any(s["name"] == "echo" for s in services)

        wait_for("echo in B's services", echo_listed)
        self.assertEqual(self.b.client.call("echo.echo", b"\x00hi"), b"\x00hi")
        self.assertEqual(self.b.client.call("echo.echo", "text"), b"text")
        items = list(self.b.client.call_stream("echo.stream", "x", metadata={"count": "3"}))
        self.assertEqual(items, [b"x", b"x", b"x"])
        with self.assertRaises(RelayNodeError) as e:
            self.b.client.call("inventory.get")
        self.assertEqual(e.exception.kind, "no-responders")


if __name__ == "__main__":
    unittest.main()
