"""Permission tokens (docs/TOKENS.md): thin wrappers over the relay-node
CLI's `token` verbs. Issuing and delegating sign with the node's identity
key, which only the CLI reads (from the data dir; no running node needed).
Revoking goes through the running node: Client.revoke_token() or
Tokens.revoke().

    from relay_node.tokens import Tokens
    tokens = Tokens(data_dir="/srv/relay-a")
    token = tokens.issue(subject=b_id, scopes=["subscribe"], channel="sensors/>", ttl="1h")
    tokens.verify(token, channel="sensors/kitchen", scope="subscribe")

A refused token raises RelayNodeError with kind "token" and a detail that
starts with the token kind ("expired: ...", "scope: ...").
"""

import json
import os
import subprocess
from typing import Any, Dict, Iterable, List, Optional, Union

from .client import RelayNodeError, default_data_dir

__all__ = ["Tokens"]

Scopes = Union[str, Iterable[str]]


class Tokens:
    """The `token` verbs of the node whose data dir is `data_dir` (default:
    default_data_dir()), run with `binary` (default: `relay-node` on PATH,
    or $RELAY_NODE_BIN)."""

    def __init__(self, data_dir: Optional[str] = None, binary: Optional[str] = None,
                 timeout: float = 30.0) -> None:
        self.data_dir = data_dir or default_data_dir()
        self.binary = binary or os.environ.get("RELAY_NODE_BIN") or "relay-node"
        self.timeout = timeout

    def issue(self, subject: str, scopes: Scopes, channel: str, ttl: str,
              depth: Optional[int] = None) -> str:
        """A token (`rnk1...`) signed by this node for `subject`."""
        args = ["issue", "--subject", subject, "--scope", _scopes(scopes),
                "--channel", channel, "--ttl", ttl]
        return self._run(args + _opt("--depth", depth))

    def delegate(self, token: str, subject: str, scopes: Scopes, channel: Optional[str] = None,
                 ttl: Optional[str] = None, depth: Optional[int] = None) -> str:
        """A narrower token for `subject`; this node must be `token`'s subject."""
        args = ["delegate", token, "--subject", subject, "--scope", _scopes(scopes)]
        args += _opt("--channel", channel) + _opt("--ttl", ttl) + _opt("--depth", depth)
        return self._run(args)

    def inspect(self, token: str) -> Dict[str, Any]:
        """What `token` holds: `id`, `holder`, `root`, `expires_unix_ms`, `links`."""
        answer = json.loads(self._run(["inspect", token, "--json"]))
        if not isinstance(answer, dict):
            raise RelayNodeError("bad-answer", "token inspect did not print a JSON object")
        return answer

    def verify(self, token: str, channel: Optional[str] = None, scope: Optional[str] = None,
               holder: Optional[str] = None, owner: Optional[str] = None,
               at_unix_ms: Optional[int] = None) -> str:
        """Checks `token` (and, with channel and scope, that it grants them);
        returns the `ok: ...` line or raises RelayNodeError("token", ...)."""
        args = ["verify", token] + _opt("--channel", channel) + _opt("--scope", scope)
        args += _opt("--holder", holder) + _opt("--owner", owner) + _opt("--at", at_unix_ms)
        return self._run(args)

    def revoke(self, token: Optional[str] = None, token_id: Optional[str] = None,
               keep: Optional[str] = None, reason: str = "") -> str:
        """Revokes `token` (or `token_id`, kept for `keep`) mesh-wide through
        the running node; returns the `revoked ...` line."""
        args = ["revoke"] + ([token] if token else []) + _opt("--id", token_id)
        return self._run(args + _opt("--keep", keep) + _opt("--reason", reason or None))

    def _run(self, args: List[str]) -> str:
        try:
            out = subprocess.run([self.binary, "--data-dir", self.data_dir, "token", *args],
                                 capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise RelayNodeError("not-found", f"no relay-node binary at {self.binary!r}") from None
        except subprocess.TimeoutExpired:
            raise RelayNodeError("timeout", f"relay-node token {args[0]} took over {self.timeout} s") from None
        if out.returncode != 0:
            raise _error(out.stderr)
        return out.stdout.strip()


def _scopes(scopes: Scopes) -> str:
    return scopes if isinstance(scopes, str) else ",".join(scopes)


def _opt(flag: str, value: Any) -> List[str]:
    return [] if value is None else [flag, str(value)]


def _error(stderr: str) -> RelayNodeError:
    """The `error: KIND: detail` line the CLI printed, as a RelayNodeError."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    text = lines[-1][len("error: "):] if lines else stderr.strip()
    kind, _, detail = text.partition(": ")
    return RelayNodeError(kind or "error", detail)
