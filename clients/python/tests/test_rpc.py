"""nRPC through the client against real nodes: A serves echo
(`run --serve-echo`), B joins by ticket and calls it; this process serves
services through A (`serve()`), called from B by the CLI and the client."""

import os
import shutil
import sys
import json
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relay_node import RelayNodeError  # noqa: E402
from relay_node.rpc_serve import Call  # noqa: E402
from test_client import BIN, Node, cli, wait_for  # noqa: E402


def _inventory(call: Call) -> object:
    """get: JSON of what the handler saw; list: N items; missing: not-found."""
    if call.method == "list":
        count = int(call.metadata.get("count", "3"))
        return (f"item-{i}".encode() for i in range(count))
    if call.method == "missing":
        raise RelayNodeError("not-found", f"no {call.body.decode()}")
    return json.dumps({"method": call.method, "body": call.body.decode(),
                       "metadata": call.metadata, "caller": call.caller,
                       "deadline": call.deadline is not None})


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

    def test_many_calls_on_one_connection(self) -> None:
        wait_for("echo in B's services", lambda: self.listed("echo"))
        bodies = [f"call {i}".encode() for i in range(1000)]
        with self.b.client.caller("echo", node_id=self.a.node_id) as caller:
            self.assertEqual(caller.call_many("echo", bodies), bodies)
            self.assertEqual(caller.call("echo", "one more"), b"one more")
            # A failed call fails alone; the connection stays usable.
            with self.assertRaises(RelayNodeError) as e:
                caller.call("nope")
            self.assertEqual(e.exception.kind, "unimplemented")
            mixed = caller.call_many("echo", [b"a", b"b"], window=1, return_errors=True)
            self.assertEqual(mixed, [b"a", b"b"])
            self.assertEqual(caller.call("echo", b""), b"")
        with self.b.client.caller("inventory") as caller:
            with self.assertRaises(RelayNodeError) as e:
                caller.call("get", "apple")
            self.assertEqual(e.exception.kind, "no-responders")
        with self.assertRaises(RelayNodeError) as e:
            self.b.client.caller("echo", node_id="not-a-node")
        self.assertEqual(e.exception.kind, "invalid-node-id")


    def listed(self, name: str) -> bool:
        return any(s["name"] == name for s in self.b.client.services()["services"])

    def test_serve_from_this_process(self) -> None:
        with self.a.client.serve("inventory", _inventory, methods=["get", "list", "missing"]):
            wait_for("inventory in B's services", lambda: self.listed("inventory"))
            # The CLI on B, another process, calls the service this process serves on A.
            got = json.loads(cli(self.b.data_dir, "call", "inventory.get", "apple", "--meta", "k=v"))
            self.assertEqual(got["method"], "get")
            self.assertEqual(got["body"], "apple")
            self.assertEqual(got["metadata"], {"k": "v"})
            self.assertEqual(got["caller"], self.b.node_id)
            self.assertTrue(got["deadline"])
            items = list(self.b.client.call_stream("inventory.list", metadata={"count": "4"}))
            self.assertEqual(items, [b"item-0", b"item-1", b"item-2", b"item-3"])
            with self.assertRaises(RelayNodeError) as e:
                self.b.client.call("inventory.missing", "pear")
            self.assertEqual((e.exception.kind, e.exception.detail), ("not-found", "no pear"))
            with self.assertRaises(RelayNodeError) as e:
                self.b.client.call("inventory.nope")
            self.assertEqual(e.exception.kind, "unimplemented")
            info = json.loads(self.b.client.call("inventory.info"))
            self.assertEqual(info["methods"], ["get", "list", "missing"])
            # One process serves a name once per node.
            with self.assertRaises(RelayNodeError) as e:
                self.a.client.serve("inventory", _inventory)
            self.assertEqual(e.exception.kind, "already-serving")
        # The connection closed: the service is withdrawn mesh-wide.
        wait_for("inventory gone from B's services", lambda: not self.listed("inventory"))
        with self.assertRaises(RelayNodeError) as e:
            self.b.client.call("inventory.get")
        self.assertEqual(e.exception.kind, "no-responders")

    def test_deadline_cancels_the_handler(self) -> None:
        seen: dict = {}
        done = threading.Event()

        def slow(call: Call) -> bytes:
            call.cancelled.wait(20)
            seen["reason"] = call.cancel_reason
            done.set()
            return b"late"

        with self.a.client.serve("slow", slow):
            wait_for("slow in B's services", lambda: self.listed("slow"))
            with self.assertRaises(RelayNodeError) as e:
                self.b.client.call("slow.wait", timeout_ms=300)
            self.assertEqual(e.exception.kind, "timeout")
            self.assertTrue(done.wait(20), "the handler never saw the cancellation")
            self.assertEqual(seen["reason"], "deadline")

    def test_token_requirement_is_enforced(self) -> None:
        with self.a.client.serve("vault", lambda call: b"open", token_required=True):
            wait_for("vault in B's services", lambda: self.listed("vault"))
            with self.assertRaises(RelayNodeError) as e:
                self.b.client.call("vault.get")
            self.assertEqual(e.exception.kind, "permission-denied")
            token = cli(self.a.data_dir, "token", "issue", "--subject", self.b.node_id,
                        "--scope", "publish", "--channel", "rpc/vault", "--ttl", "1h")
            self.assertEqual(self.b.client.call("vault.get", token=token), b"open")
            path = os.path.join(self.tmp, "vault.token")
            with open(path, "w") as f:
                f.write(token + "\n")
            self.assertEqual(cli(self.b.data_dir, "call", "vault.get", "--token", "@" + path), "open")
            wrong = cli(self.a.data_dir, "token", "issue", "--subject", self.b.node_id,
                        "--scope", "subscribe", "--channel", "rpc/vault", "--ttl", "1h")
            with self.assertRaises(RelayNodeError) as e:
                self.b.client.call("vault.get", token=wrong)
            self.assertEqual(e.exception.kind, "token")
            self.assertTrue(e.exception.detail.startswith("scope: "), e.exception.detail)
            self.a.client.revoke_token(token)

            def refused_kind() -> str:
                try:
                    self.b.client.call("vault.get", token=token)
                    return ""
                except RelayNodeError as e:
                    return e.kind

            self.assertEqual(wait_for("the revocation to apply", refused_kind), "revoked")


if __name__ == "__main__":
    unittest.main()
