"""What every group of JSON-RPC methods shares: registration, and finding the
session a method is about."""

from __future__ import annotations

from typing import Any, Callable

from postcap.control import params
from postcap.control.dispatch import InvalidParams, JSONRPCDispatcher, NotFound
from postcap.session import SessionManager


class MethodGroup:
    """A set of methods: :meth:`methods` names them, :meth:`install` registers them."""

    def methods(self) -> dict[str, Callable[..., Any]]:
        raise NotImplementedError

    def install(self, dispatcher: JSONRPCDispatcher) -> None:
        for name, method in self.methods().items():
            dispatcher.register(name, method)


async def session_id_param(sessions: SessionManager, name: str, value: Any) -> str:
    """The session a parameter names, defaulting to the active one; it must exist
    (``-32602`` when omitted with no active session, ``-32004`` when unknown)."""
    session_id = params.string(name, value, optional=True)
    if session_id is None:
        if sessions.active is None:
            raise InvalidParams(name, "required when no session is active")
        session_id = sessions.active.id
    if await sessions.store.get_session(session_id) is None:
        raise NotFound("session", session_id)
    return session_id


__all__ = ["MethodGroup", "session_id_param"]
