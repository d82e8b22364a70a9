"""History retention (``--history-max-age``, ``--history-max-bytes``): a periodic purge
of the oldest stopped sessions.  The active session is never touched."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from postcap.session import SessionManager


class Retention:
    """One purge pass per :meth:`run` (driven by a LoopingCall in the service)."""

    _log = Logger()

    def __init__(
        self,
        store: Any,
        sessions: SessionManager,
        max_age: float | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.max_age = max_age
        self.max_bytes = max_bytes

    @property
    def enabled(self) -> bool:
        return self.max_age is not None or self.max_bytes is not None

    def run(self) -> Deferred[list[str]]:
        """Purge now; fires with the deleted session ids (errors are logged, not raised,
        so the loop goes on)."""
        return Deferred.fromCoroutine(self._run())

    async def _run(self) -> list[str]:
        if not self.enabled:
            return []
        older_than = None if self.max_age is None else self.sessions.now() - self.max_age
        active = self.sessions.active
        keep = [] if active is None else [active.id]
        try:
            deleted: list[str] = await self.store.purge(older_than, self.max_bytes, keep)
        except Exception:
            self._log.failure("history retention pass failed")
            return []
        if deleted:
            self._log.info(
                "retention deleted {count} stopped session(s): {session_ids}",
                count=len(deleted), session_ids=", ".join(deleted),
            )
        return deleted


__all__ = ["Retention"]
