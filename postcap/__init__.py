"""postcap: a capture proxy server for people who build and test HTTP APIs.

The version lives in :mod:`postcap._version`; the server is started with
``twistd postcap`` (see :mod:`postcap.tap`).
"""

__all__: list[str] = []
