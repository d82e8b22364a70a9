"""The history's SQLite connection in a child process of its own.

:class:`ProcessConnectionPool` offers what :class:`SQLiteHistoryStore` uses of
``adbapi.ConnectionPool`` (``runInteraction``, ``runWithConnection``, ``close``)
with one connection that lives in a child Python process.  Calls are pickled
(functions by reference, so only module-level ones) down the child's stdin and
answered in order on its stdout, so they run one at a time in submission order,
as on the one-thread pool.  The child's work (building rows, encoding JSON,
SQLite itself) then neither holds the proxy process's GIL nor waits for it:
with a session capturing, the reactor keeps its core.

The child stops reading when its stdin closes, after answering every call it
was sent: a parent killed outright still gets its last batches committed.  It
ignores SIGINT and SIGTERM for the same reason (a terminal's Ctrl-C and
systemd's stop reach the whole process group); the parent closes its stdin.
"""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import struct
import sys
from collections import deque
from typing import IO, Any, Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

_HEADER = struct.Struct("!I")
_INTERACTION, _CONNECTION = "interaction", "connection"


class DatabaseProcessGone(Exception):
    """The database process ended before answering a call."""


class RemoteError(Exception):
    """An error raised in the database process that could not be sent back as itself."""


def _frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


# -- the child -------------------------------------------------------------------------


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def _answer(connection: sqlite3.Connection, kind: str, function: Callable[..., Any],
            args: tuple[Any, ...]) -> Any:
    """Run one call as adbapi does: commit after it, roll back if it raises."""
    try:
        if kind == _INTERACTION:
            cursor = connection.cursor()
            result = function(cursor, *args)
            cursor.close()
        else:
            result = function(connection, *args)
        connection.commit()
        return result
    except BaseException:
        connection.rollback()
        raise


def serve(path: str, configure: Callable[[sqlite3.Connection], None],
          requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: answer framed calls from ``requests`` until it ends."""
    connection = sqlite3.connect(path, check_same_thread=False)
    configure(connection)
    try:
        while (header := _read_exactly(requests, _HEADER.size)) is not None:
            body = _read_exactly(requests, _HEADER.unpack(header)[0])
            if body is None:
                break
            try:
                kind, function, args = pickle.loads(body)
                reply = (True, _answer(connection, kind, function, args))
            except Exception as problem:
                reply = (False, problem)
            try:
                framed = _frame(reply)
            except Exception as problem:  # an unpicklable result or error
                framed = _frame((False, RemoteError(f"{type(problem).__name__}: {problem}")))
            answers.write(framed)
            answers.flush()
    finally:
        connection.close()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Answers get a descriptor of their own; anything else printed goes to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from postcap.sinks.history import _configure_connection

    serve(sys.argv[1], _configure_connection, sys.stdin.buffer, answers)


# -- the parent ------------------------------------------------------------------------


class _ChildProtocol(ProcessProtocol):
    def __init__(self, pool: "ProcessConnectionPool") -> None:
        self.pool = pool
        self._buffer = bytearray()

    def outReceived(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + size
            if len(buffer) < end:
                break
            self.pool._answered(pickle.loads(memoryview(buffer)[offset + _HEADER.size:end]))
            offset = end
        del buffer[:offset]

    def errReceived(self, data: bytes) -> None:
        self.pool._log.error("history database process: {output}",
                             output=data.decode("utf-8", "replace").rstrip())

    def processEnded(self, reason: Failure) -> None:
        self.pool._ended(self, reason)


class ProcessConnectionPool:
    """One SQLite connection in a child process; calls run in order (see module docs)."""

    _log = Logger()
    #: Seconds :meth:`close` waits for the child to finish before killing it.
    close_timeout = 30.0

    def __init__(self, reactor: Any, path: str) -> None:
        self._reactor: IReactorProcess = reactor
        self._clock: IReactorTime = reactor
        self.path = path
        self._child: _ChildProtocol | None = None
        self._waiting: deque[Deferred[Any]] = deque()
        self._sizes: deque[int] = deque()
        #: Bytes of calls sent to the child and not answered yet.
        self.backlog = 0
        self._below: list[tuple[int, Deferred[None]]] = []
        self._closed = False
        self._exited: list[Deferred[None]] = []

    def runInteraction(self, interaction: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """``interaction(cursor, *args)`` in one SQL transaction, in the child."""
        return self._call(_INTERACTION, interaction, args)

    def runWithConnection(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """``function(connection, *args)``, then a commit, in the child."""
        return self._call(_CONNECTION, function, args)

    def close(self) -> Deferred[None]:
        """Let the child answer what it was sent, then end it; fires once it has exited."""
        self._closed = True
        child = self._child
        if child is None:
            return succeed(None)
        exited: Deferred[None] = Deferred()
        self._exited.append(exited)
        child.transport.closeStdin()
        timer = self._clock.callLater(self.close_timeout, self._kill, child)
        exited.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return exited

    def when_backlog_below(self, limit: int) -> Deferred[None]:
        """Fires once at most ``limit`` bytes of calls wait for answers."""
        if self.backlog <= limit:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._below.append((limit, waiter))
        return waiter

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return None if self._child is None else self._child.transport.pid

    def _call(
        self, kind: str, function: Callable[..., Any], args: tuple[Any, ...]
    ) -> Deferred[Any]:
        if self._closed:
            return fail(DatabaseProcessGone(f"the history database {self.path} is closed"))
        try:
            framed = _frame((kind, function, args))
        except Exception:
            return fail()
        child = self._child or self._spawn()
        answer: Deferred[Any] = Deferred()
        self._waiting.append(answer)
        self._sizes.append(len(framed))
        self.backlog += len(framed)
        child.transport.write(framed)
        return answer

    def _spawn(self) -> _ChildProtocol:
        child = _ChildProtocol(self)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        self._reactor.spawnProcess(
            child, sys.executable, [sys.executable, "-m", "postcap.sinks.dbprocess", self.path],
            env=env,
        )
        self._child = child
        self._log.info("History database process {pid} serves {path}",
                       pid=child.transport.pid, path=self.path)
        return child

    def _answered(self, reply: tuple[bool, Any]) -> None:
        ok, value = reply
        answer = self._waiting.popleft()
        self._answered_bytes(self._sizes.popleft())
        if ok:
            answer.callback(value)
        else:
            answer.errback(Failure(value))

    def _answered_bytes(self, size: int) -> None:
        self.backlog -= size
        if self._below:
            ready = [waiter for limit, waiter in self._below if self.backlog <= limit]
            self._below = [(limit, waiter) for limit, waiter in self._below
                           if self.backlog > limit]
            for waiter in ready:
                waiter.callback(None)

    def _kill(self, child: _ChildProtocol) -> None:
        self._log.warn("History database process {pid} did not finish in {timeout} s; killing it",
                       pid=child.transport.pid, timeout=self.close_timeout)
        child.transport.signalProcess("KILL")

    def _ended(self, child: _ChildProtocol, reason: Failure) -> None:
        if self._child is child:
            self._child = None
        if self._waiting or not reason.check(ProcessDone):
            self._log.error("History database process ended: {reason}",
                            reason=reason.getErrorMessage())
        waiting, self._waiting = self._waiting, deque()
        self._answered_bytes(sum(self._sizes))
        self._sizes.clear()
        for answer in waiting:
            answer.errback(DatabaseProcessGone(
                f"the history database process ended: {reason.getErrorMessage()}"))
        exited, self._exited = self._exited, []
        for observer in exited:
            observer.callback(None)


if __name__ == "__main__":
    # Run the imported module's main, so that what the child pickles (RemoteError)
    # names postcap.sinks.dbprocess, not __main__.
    from postcap.sinks.dbprocess import main as run

    run()
