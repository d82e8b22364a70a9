"""Listening before the service runs: ports bound while twistd still has the terminal.

``twistd`` calls ``makeService`` before it daemonises and ``startService`` after.
postcap binds its ports in between the two (:func:`listen_paused`), accepting nothing
until the service is ready (:func:`resume_accepting`), so a port that is taken ends the
start with one line on stderr and a non-zero exit, and no pidfile is left behind.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure


class StartError(Exception):
    """A start-up failure, as one line naming the option at fault."""


def listen_paused(endpoint: Any, factory: Any) -> IListeningPort:
    """Listen on ``endpoint`` now and stop accepting until :func:`resume_accepting`;
    :class:`StartError` if the endpoint cannot listen synchronously or at all."""
    outcome: list[Any] = []
    endpoint.listen(factory).addBoth(outcome.append)
    if not outcome:
        raise StartError("the endpoint does not listen at once")
    if isinstance(outcome[0], Failure):
        error = outcome[0].value
        reason = getattr(error, "socketError", None) or error
        raise StartError(str(getattr(reason, "strerror", None) or reason))
    port = outcome[0]
    if hasattr(port, "stopReading"):
        port.stopReading()
    return port


def resume_accepting(port: Any) -> None:
    if hasattr(port, "startReading") and getattr(port, "connected", True):
        port.startReading()


def adopt_unix_lock(port: Any) -> None:
    """A UNIX port bound before twistd daemonised holds a lock naming the parent's pid,
    which Twisted would refuse to release on stop: point it at this process."""
    lock = getattr(port, "lockFile", None)
    if lock is None or not getattr(lock, "locked", False):
        return
    try:
        if os.readlink(lock.name) != str(os.getpid()):
            os.remove(lock.name)
            os.symlink(str(os.getpid()), lock.name)
    except OSError:
        pass


def bind_endpoint(reactor: Any, option: str, description: str, factory: Any) -> IListeningPort:
    """``listen_paused`` on a server endpoint string; :class:`StartError` names ``option``."""
    try:
        endpoint = serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as exc:
        raise StartError(f"{option} {description!r}: {exc}") from None
    try:
        return listen_paused(endpoint, factory)
    except StartError as exc:
        raise StartError(f"{option} {description}: cannot listen: {exc}") from None


def unix_path(address: Any) -> str | None:
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    return os.path.abspath(name) if isinstance(name, str) and name else None
