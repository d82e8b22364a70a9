"""The proxy: HTTP/1.1 framing, the client-facing protocol and upstream connections."""

__all__: list[str] = []
