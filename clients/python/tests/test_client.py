"""The client against real relay-node processes (`init`, `run`, a second
node joined by ticket). Needs RELAY_NODE_BIN, the relay-node binary; every
wait is bounded and every node is stopped, also when a test fails."""

import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, Callable, List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relay_node import Client, RelayNodeError  # noqa: E402

BIN = os.environ.get("RELAY_NODE_BIN", "")
DEADLINE = 30.0  # generous bound on each wait; never a timing assertion


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _env() -> dict:
    env = dict(os.environ)
    env.pop("RELAY_NODE_DATA_DIR", None)
    return env


def cli(data_dir: str, *args: str) -> str:
    """Runs a relay-node verb; returns its stdout."""
    out = subprocess.run([BIN, "--data-dir", data_dir, *args], env=_env(), capture_output=True,
                         text=True, timeout=DEADLINE, preexec_fn=_die_with_parent)
    if out.returncode != 0:
        raise AssertionError(f"relay-node {' '.join(args)} failed: {out.stderr}")
    return out.stdout.strip()


def wait_for(what: str, f: Callable[[], Any]) -> Any:
    """Calls f until it returns a truthy value or DEADLINE passes."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        value = f()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Node:
    """A `relay-node run` on loopback, stopped by stop()."""

    def __init__(self, data_dir: str, *extra: str) -> None:
        self.data_dir = data_dir
        self.stderr = open(os.path.join(data_dir, "..", os.path.basename(data_dir) + ".log"), "w+")
        self.proc = subprocess.Popen(
            [BIN, "--data-dir", data_dir, "run", "--listen", "127.0.0.1:0", *extra],
            env=_env(), stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            preexec_fn=_die_with_parent,
        )
        try:
            line = self._line_with(" listening on ")
            # "relay-node NODE_ID listening on ADDR"
            self.node_id, self.addr = line.split()[1], line.split()[-1]
            self.client = Client(data_dir=data_dir)
            wait_for("the local API", self._answers)
        except BaseException:
            log = self.log()
            self.stop()
            raise AssertionError(f"relay-node run did not come up; its log:\n{log}") from None

    def _line_with(self, needle: str) -> str:
        end = time.monotonic() + DEADLINE
        assert self.proc.stdout is not None
        while time.monotonic() < end:
            ready, _, _ = select.select([self.proc.stdout], [], [], end - time.monotonic())
            line = self.proc.stdout.readline() if ready else ""
            if needle in line:
                return line.strip()
            if not line and self.proc.poll() is not None:
                break
        raise AssertionError(f"no {needle!r} line from relay-node run: {self.log()}")

    def _answers(self) -> bool:
        try:
            return bool(self.client.status())
        except RelayNodeError:
            return False

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


@unittest.skipUnless(BIN, "RELAY_NODE_BIN is not set")
class AgainstRealNodes(unittest.TestCase):
    tmp: str
    a: Node

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="relay-node-py-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        dir_a = os.path.join(cls.tmp, "a")
        cli(dir_a, "init")
        cls.a = Node(dir_a)
        cls.addClassCleanup(cls.a.stop)

    def test_health_proves_the_node(self) -> None:
        proof = self.a.client.health()
        self.assertEqual(proof["node_id"], self.a.node_id)
        self.assertEqual(len(proof["signature"]), 128)
        proof = self.a.client.health(nonce=b"\x00\x01\xfe\xff", node_id=self.a.node_id)
        self.assertEqual(proof["nonce"], "0001feff")
        with self.assertRaises(RelayNodeError) as e:
            self.a.client.health(node_id="a" * 52)
        self.assertEqual(e.exception.kind, "bad-proof")
        # The node refuses a nonce over 64 bytes: a typed error from the API.
        with self.assertRaises(RelayNodeError) as e:
            self.a.client.health(nonce=bytes(65))
        self.assertEqual((e.exception.kind, e.exception.status), ("bad-request", 400))

    def test_health_refuses_a_forged_proof(self) -> None:
        real = self.a.client.health(nonce=b"\x42" * 16)
        client = self.a.client

        def answering(**changes: str) -> Client:
            """A client that gets the real answer with `changes`."""
            fake = Client(socket_path=client.socket_path)
            fake._json = lambda *args, **kw: dict(real, **changes)  # type: ignore[method-assign]
            return fake

        flipped = ("0" if real["signature"][0] != "0" else "1") + real["signature"][1:]
        forged = [
            answering(signature=flipped),
            answering(nonce="43" * 16),
            answering(node_id="a" * 52),
            answering(signature="zz"),
        ]
        for fake in forged:
            with self.assertRaises(RelayNodeError) as e:
                fake.health(nonce=b"\x42" * 16)
            self.assertEqual(e.exception.kind, "bad-proof")
        # The unchanged answer passes the same check.
        self.assertEqual(answering().health(nonce=b"\x42" * 16), real)

    def test_status_and_netcheck(self) -> None:
        status = self.a.client.status()
        self.assertEqual(status["node_id"], self.a.node_id)
        self.assertIn(self.a.addr, status["listen"])
        self.assertIsInstance(status["peers"], list)
        netcheck = self.a.client.netcheck()
        self.assertEqual(netcheck["node_id"], self.a.node_id)
        self.assertIn("nat", netcheck)

    def test_error_kinds(self) -> None:
        with self.assertRaises(RelayNodeError) as e:
            self.a.client.ping("not-a-node-id")
        self.assertEqual((e.exception.kind, e.exception.status), ("invalid-node-id", 400))
        self.assertTrue(str(e.exception).startswith("invalid-node-id: "))
        with self.assertRaises(RelayNodeError) as e:
            self.a.client.ping(self.a.node_id)
        self.assertEqual(e.exception.kind, "invalid-peer")
        nowhere = tempfile.mkdtemp(dir=self.tmp)
        with self.assertRaises(RelayNodeError) as e:
            Client(data_dir=nowhere).status()
        self.assertEqual((e.exception.kind, e.exception.status), ("not-running", None))
        with self.assertRaises(RelayNodeError) as e:
            list(Client(data_dir=nowhere).events())
        self.assertEqual(e.exception.kind, "not-running")

    def test_events_and_ping_with_a_joined_node(self) -> None:
        events = self.a.client.events(timeout=DEADLINE)
        self.addCleanup(events.close)
        ticket = cli(self.a.data_dir, "invite", "--addr", self.a.addr)
        dir_b = os.path.join(self.tmp, "b")
        id_b = cli(dir_b, "init", "--join", ticket)
        b = Node(dir_b)
        self.addCleanup(b.stop)

        seen: List[dict] = []
        for event in events:
            seen.append(event)
            if event.get("type") == "connected" and event.get("node_id") == id_b:
                break
        else:
            self.fail(f"the stream ended without B connecting: {seen}")
        self.assertNotEqual(event.get("path"), None, event)

        pong = self.a.client.ping(id_b, timeout_ms=5000)
        self.assertEqual(pong["node_id"], id_b)
        self.assertEqual(pong["path"], "direct")
        self.assertGreater(pong["rtt_ms"], 0)
        pong = b.client.ping(self.a.node_id, timeout_ms=5000)
        self.assertEqual(pong["node_id"], self.a.node_id)

        # B stops: A's stream says so.
        b.stop()
        for event in events:
            if event.get("type") == "disconnected" and event.get("node_id") == id_b:
                break
        else:
            self.fail("the stream ended without B disconnecting")


if __name__ == "__main__":
    unittest.main()
