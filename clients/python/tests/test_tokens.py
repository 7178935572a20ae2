"""The token verbs (relay_node.tokens over the CLI) and Client.revoke_token
against a real node. Needs RELAY_NODE_BIN."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relay_node import RelayNodeError  # noqa: E402
from relay_node.tokens import Tokens  # noqa: E402
from test_client import BIN, Node, cli  # noqa: E402


@unittest.skipUnless(BIN, "RELAY_NODE_BIN is not set")
class TokenVerbs(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="relay-node-py-tokens-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.dirs = {}
        self.ids = {}
        for name in ("a", "b", "c"):
            self.dirs[name] = os.path.join(self.tmp, name)
            self.ids[name] = cli(self.dirs[name], "init")

    def tokens(self, name: str) -> Tokens:
        return Tokens(data_dir=self.dirs[name], binary=BIN)

    def test_issue_delegate_inspect_verify_revoke(self) -> None:
        a, b = self.tokens("a"), self.tokens("b")
        root = a.issue(self.ids["b"], ["subscribe", "delegate"], "room/>", "1h")
        self.assertTrue(root.startswith("rnk1"))
        info = a.inspect(root)
        self.assertEqual(info["holder"], self.ids["b"])
        self.assertEqual(info["links"][0]["channel"], "room/>")
        child = b.delegate(root, self.ids["c"], "subscribe", channel="room/1", ttl="10m")
        self.assertIn(self.ids["c"], a.verify(child, channel="room/1", scope="subscribe"))
        with self.assertRaises(RelayNodeError) as e:
            a.verify(child, channel="room/2", scope="subscribe")
        self.assertEqual(e.exception.kind, "token")
        self.assertTrue(e.exception.detail.startswith("channel-mismatch"), e.exception.detail)
        with self.assertRaises(RelayNodeError) as e:
            a.issue(self.ids["b"], "publish", "x", "0s")
        self.assertTrue(e.exception.detail.startswith("expired"), e.exception.detail)

        node = Node(self.dirs["a"])
        self.addCleanup(node.stop)
        answer = node.client.revoke_token(token=root, reason="py")
        self.assertEqual(answer["id"], info["id"])
        with self.assertRaises(RelayNodeError) as e:
            a.verify(child, channel="room/1", scope="subscribe")
        self.assertTrue(e.exception.detail.startswith("revoked"), e.exception.detail)
        with self.assertRaises(RelayNodeError) as e:
            node.client.revoke_token(token="rnk1x")
        self.assertEqual((e.exception.kind, e.exception.status), ("token", 400))


if __name__ == "__main__":
    unittest.main()
