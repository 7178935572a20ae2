"""The in-tree build backend: the wheel holds the package and valid
metadata and RECORD, so `pip install ./clients/python` works offline."""

import base64
import hashlib
import os
import sys
import tarfile
import tempfile
import unittest
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import _build_backend  # noqa: E402


class Packaging(unittest.TestCase):
    def test_wheel(self) -> None:
        with tempfile.TemporaryDirectory() as out:
            name = _build_backend.build_wheel(out)
            self.assertEqual(name, "relay_node-0.1.0-py3-none-any.whl")
            with zipfile.ZipFile(os.path.join(out, name)) as wheel:
                names = set(wheel.namelist())
                for module in ("__init__", "client", "_http", "_ed25519"):
                    self.assertIn(f"relay_node/{module}.py", names)
                info = "relay_node-0.1.0.dist-info"
                metadata = wheel.read(f"{info}/METADATA").decode()
                self.assertIn("Name: relay-node\n", metadata)
                self.assertIn("Requires-Python: >=3.9\n", metadata)
                self.assertIn("Root-Is-Purelib: true", wheel.read(f"{info}/WHEEL").decode())
                record = wheel.read(f"{info}/RECORD").decode().splitlines()
                self.assertEqual({line.split(",")[0] for line in record}, names)
                for line in record:
                    path, digest, size = line.split(",")
                    if path.endswith("RECORD"):
                        continue
                    data = wheel.read(path)
                    expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                    self.assertEqual(digest, "sha256=" + expected.decode(), path)
                    self.assertEqual(int(size), len(data), path)

    def test_sdist(self) -> None:
        with tempfile.TemporaryDirectory() as out:
            name = _build_backend.build_sdist(out)
            with tarfile.open(os.path.join(out, name)) as sdist:
                names = set(sdist.getnames())
            base = "relay_node-0.1.0/"
            for path in ("pyproject.toml", "_build_backend.py", "PKG-INFO", "relay_node/client.py"):
                self.assertIn(base + path, names)


if __name__ == "__main__":
    unittest.main()
