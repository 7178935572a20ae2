"""relay-node: a Python client for the local API of a running relay-node.

    from relay_node import Client
    node = Client()                  # ~/.local/share/relay-node/api.sock
    print(node.health()["node_id"])  # nonce echoed and signature checked
    for event in node.events():
        print(event["type"], event.get("node_id"))

Standard library only (Python 3.9+). See docs/LOCAL_API.md for the routes.
"""

from .client import Client, RelayNodeError, decode_node_id, default_data_dir

__all__ = ["Client", "RelayNodeError", "decode_node_id", "default_data_dir"]
