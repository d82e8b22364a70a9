"""The control channel: JSON-RPC 2.0, bearer-token auth, and the HTTP resources."""

__all__: list[str] = []
