"""``GET /sessions/ID.har``: a session's HAR 1.2, streamed page by page.

Entries are read from the store ``EXPORT_PAGE`` at a time and written as they are
encoded; while the client's connection is full the export waits (a push producer
registered on the request), so a 100k-transaction session never sits in memory.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from postcap.export.har import har_chunks


@implementer(IPushProducer)
class _Flow:
    """Tracks whether the client can take more, and whether it went away."""

    def __init__(self) -> None:
        self.paused = False
        self.gone = False
        self._resumed: Deferred[None] | None = None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        waiting, self._resumed = self._resumed, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:
        self.gone = True
        self.resumeProducing()

    async def ready(self) -> None:
        if self.paused and not self.gone:
            self._resumed = Deferred()
            await self._resumed


class SessionExports(Resource):
    """``/sessions/<id>.har``."""

    isLeaf = True
    _log = Logger()

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store

    def render_GET(self, request: Request) -> Any:
        name = request.postpath[0].decode("utf-8", "replace") if len(request.postpath) == 1 else ""
        if not name.endswith(".har") or len(name) <= 4:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"use /sessions/SESSION_ID.har\n"
        ensureDeferred(self._export(request, name[:-4]))
        return NOT_DONE_YET

    async def _export(self, request: Request, session_id: str) -> None:
        record = await self.store.get_session(session_id)
        if record is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(f"no session with id {session_id!r}\n".encode())
            request.finish()
            return
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"content-disposition",
                          f'attachment; filename="postcap-{session_id}.har"'.encode())
        flow = _Flow()
        request.registerProducer(flow, True)
        request.notifyFinish().addErrback(lambda _: flow.stopProducing())

        async def page(limit: int, offset: int) -> list[dict[str, Any]]:
            return await self.store.list_details(session_id, limit, offset)

        try:
            async for chunk in har_chunks(record.name, page):
                await flow.ready()
                if flow.gone:
                    self._log.info("HAR export of {session_id} abandoned by the client",
                                   session_id=session_id)
                    return
                request.write(chunk)
        except Exception:
            self._log.failure("HAR export of {session_id} failed", session_id=session_id)
            request.unregisterProducer()
            request.transport.abortConnection()  # a cut-off file must not look complete
            return
        request.unregisterProducer()
        request.finish()


__all__ = ["SessionExports"]
