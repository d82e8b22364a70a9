"""``GET /events``: the event hub as Server-Sent Events.

Query parameter ``types`` (comma-separated subset of ``session,transaction,cookie``)
narrows the stream.  ``Last-Event-ID`` (header, or the ``last_event_id`` query
parameter) resumes after that event.  A comment line is sent every
``heartbeat`` seconds so proxies and clients see the stream is alive.  A client
that reads slower than events come is disconnected once ``max_backlog`` events
wait for it (it can reconnect and resume with ``Last-Event-ID``); memory never
grows without bound.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from postcap.events import EVENT_KINDS, Event, EventHub

HEARTBEAT = b": heartbeat\n\n"


@implementer(IPushProducer)
class _Stream:
    """One connected client."""

    _log = Logger()

    def __init__(self, resource: "EventsResource", request: Request, kinds: frozenset[str]) -> None:
        self.resource = resource
        self.request = request
        self.kinds = kinds
        self.paused = False
        self.backlog: list[bytes] = []
        self.closed = False

    def send(self, event: Event) -> None:
        if self.closed or event.kind not in self.kinds:
            return
        self._write(event.encode())

    def heartbeat(self) -> None:
        if not self.closed and not self.paused:
            self.request.write(HEARTBEAT)

    def _write(self, frame: bytes) -> None:
        if not self.paused:
            self.request.write(frame)
            return
        self.backlog.append(frame)
        if len(self.backlog) > self.resource.max_backlog:
            self._log.warn(
                "events client {peer} too slow: {backlog} events waiting; disconnected",
                peer=str(self.request.getClientAddress()), backlog=len(self.backlog),
            )
            self.close()
            self.request.transport.abortConnection()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        backlog, self.backlog = self.backlog, []
        for frame in backlog:
            if self.paused:
                self.backlog.append(frame)
            else:
                self.request.write(frame)

    def stopProducing(self) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.backlog = []
            self.resource.forget(self)


class EventsResource(Resource):
    isLeaf = True

    def __init__(
        self,
        hub: EventHub,
        clock: IReactorTime,
        heartbeat: float = 15.0,
        max_backlog: int = 5_000,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.clock = clock
        self.max_backlog = max_backlog
        self.heartbeat_interval = heartbeat
        self.streams: set[_Stream] = set()
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = clock

    def render_GET(self, request: Request) -> Any:
        kinds = self._kinds(request)
        if kinds is None:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return (f"types must be a comma-separated subset of {','.join(EVENT_KINDS)}\n").encode()
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        stream = _Stream(self, request, kinds)
        request.registerProducer(stream, True)
        request.write(b"retry: 3000\n\n")
        raw_id = request.getHeader(b"last-event-id")
        if raw_id is None:
            values = request.args.get(b"last_event_id")
            raw_id = values[0] if values else None
        last_id = None if raw_id is None else raw_id.decode("utf-8", "replace")
        missed, problem = self.hub.since(last_id)
        if problem is not None:
            reset = json.dumps({"reason": problem, "last_event_id": last_id})
            stream._write(f"event: reset\ndata: {reset}\n\n".encode("utf-8"))
        for event in missed:
            stream.send(event)
        self.streams.add(stream)
        self.hub.subscribe(stream.send)
        if not self._heartbeat.running:
            self._heartbeat.start(self.heartbeat_interval, now=False)
        request.notifyFinish().addBoth(lambda _: stream.close())
        return NOT_DONE_YET

    @staticmethod
    def _kinds(request: Request) -> frozenset[str] | None:
        values = request.args.get(b"types")
        if not values:
            return frozenset(EVENT_KINDS)
        wanted = {part.strip() for part in values[0].decode("utf-8", "replace").split(",") if part.strip()}
        if not wanted or not wanted <= set(EVENT_KINDS):
            return None
        return frozenset(wanted)

    def forget(self, stream: _Stream) -> None:
        self.streams.discard(stream)
        self.hub.unsubscribe(stream.send)
        if not self.streams and self._heartbeat.running:
            self._heartbeat.stop()

    def _beat(self) -> None:
        for stream in list(self.streams):
            stream.heartbeat()

    def close_all(self) -> None:
        """End every stream (server stopping)."""
        for stream in list(self.streams):
            stream.close()
            if not stream.request.finished:
                stream.request.finish()


__all__ = ["EventsResource", "HEARTBEAT"]
