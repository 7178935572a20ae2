"""A PEP 517 build backend in the standard library only, for this pure
Python package: builds a wheel of `relay_node/` and an sdist of the project,
with the metadata from pyproject.toml's [project] table."""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "relay_node"
SDIST_FILES = ["pyproject.toml", "_build_backend.py", "README.md"]


def _project() -> Dict[str, str]:
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("[project]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([a-z-]+)\s*=\s*"([^"]*)"\s*$', table, re.M))


def _metadata() -> Tuple[str, str, bytes]:
    p = _project()
    name, version = p["name"], p["version"]
    text = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        f"Summary: {p.get('description', '')}\nLicense: {p.get('license', '')}\n"
        f"Requires-Python: {p.get('requires-python', '>=3.9')}\n"
    )
    return name.replace("-", "_"), version, text.encode()


def _package_files() -> List[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, PACKAGE)):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out += [os.path.relpath(os.path.join(dirpath, n), ROOT) for n in filenames if n.endswith(".py")]
    return sorted(out)


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def build_wheel(wheel_directory: str, config_settings: Optional[dict] = None,
                metadata_directory: Optional[str] = None) -> str:
    dist, version, metadata = _metadata()
    info = f"{dist}-{version}.dist-info"
    name = f"{dist}-{version}-py3-none-any.whl"
    wheel = b"Wheel-Version: 1.0\nGenerator: relay-node _build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = ""
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as zf:
        entries = [(p.replace(os.sep, "/"), open(os.path.join(ROOT, p), "rb").read()) for p in _package_files()]
        entries += [(f"{info}/METADATA", metadata), (f"{info}/WHEEL", wheel)]
        for path, data in entries:
            zf.writestr(path, data)
            record += _record_line(path, data)
        record += f"{info}/RECORD,,\n"
        zf.writestr(f"{info}/RECORD", record)
    return name


def build_editable(wheel_directory: str, config_settings: Optional[dict] = None,
                   metadata_directory: Optional[str] = None) -> str:
    """A wheel whose .pth file puts this source tree on sys.path."""
    dist, version, metadata = _metadata()
    info = f"{dist}-{version}.dist-info"
    name = f"{dist}-{version}-py3-none-any.whl"
    wheel = b"Wheel-Version: 1.0\nGenerator: relay-node _build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries = [(f"{dist}.pth", (ROOT + "\n").encode()), (f"{info}/METADATA", metadata), (f"{info}/WHEEL", wheel)]
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as zf:
        record = ""
        for path, data in entries:
            zf.writestr(path, data)
            record += _record_line(path, data)
        zf.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")
    return name


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    dist, version, metadata = _metadata()
    base = f"{dist}-{version}"
    with tarfile.open(os.path.join(sdist_directory, base + ".tar.gz"), "w:gz") as tf:
        for path in SDIST_FILES + _package_files():
            if os.path.exists(os.path.join(ROOT, path)):
                tf.add(os.path.join(ROOT, path), arcname=f"{base}/{path}")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(metadata)
        tf.addfile(info, io.BytesIO(metadata))
    return base + ".tar.gz"
