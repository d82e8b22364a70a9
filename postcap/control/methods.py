"""The contract's JSON-RPC methods, over the session manager, the store and the proxy.

Each public coroutine here is one method; :meth:`ControlMethods.install`
registers them under their dotted names.  Domain errors (session state,
options, ports) are translated to the contract's codes in one place,
:func:`_translated`.
"""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, Protocol as TypingProtocol, TypeVar

from postcap._version import __version__
from postcap.control.params import Int, Str, takes
from postcap.control.method_group import MethodGroup
from postcap.control.dispatch import (
    INVALID_OPTION,
    InvalidState,
    NotFound,
    PortUnavailable,
    RPCError,
    SessionActive,
)
from postcap.filters import OptionError
from postcap.tls.ca import CertificateAuthority
from postcap.session import (
    InvalidSessionState,
    SessionAlreadyActive,
    SessionManager,
    SessionNotFound,
)

MAX_PAGE = 1000
#: Ids of sessions, transactions, collections… are short; longer strings are refused.
ID = Str(max_length=200)
OPTIONAL_ID = Str(max_length=200, optional=True)


class ProxyUnavailable(Exception):
    """The proxy could not listen on the port asked for."""

    def __init__(self, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on proxy port {port}: {reason}")
        self.port = port
        self.reason = reason


class ProxyControl(TypingProtocol):
    """What the control channel needs of the proxy listener."""

    enabled: bool
    port: int

    def status(self) -> dict[str, Any]: ...

    async def enable(self, port: int | None = None) -> None: ...

    async def disable(self) -> None: ...


class ServerFacts(TypingProtocol):
    data_dir: str

    def uptime_s(self) -> float: ...

    def counters(self) -> dict[str, Any]: ...

    def proxy_facts(self) -> dict[str, Any]: ...

    def storage_status(self) -> dict[str, Any]: ...


_M = TypeVar("_M", bound=Callable[..., Awaitable[Any]])


def _translated(method: _M) -> _M:
    """Turn session, option and proxy errors into the contract's JSON-RPC errors."""

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except OptionError as exc:
            raise RPCError(exc.code, exc.message, {"field": exc.field}) from exc
        except SessionAlreadyActive as exc:
            raise SessionActive(str(exc), {"active_session": exc.active.id}) from exc
        except InvalidSessionState as exc:
            raise InvalidState(str(exc), {"state": exc.record.state}) from exc
        except SessionNotFound as exc:
            if exc.session_id is None:
                raise NotFound("session", "(active)") from exc
            raise NotFound("session", exc.session_id) from exc
        except ProxyUnavailable as exc:
            raise PortUnavailable(exc.port, exc.reason) from exc

    return call  # type: ignore[return-value]


class ControlMethods(MethodGroup):
    """The methods of the control channel, bound to the running server."""

    def __init__(
        self,
        server: ServerFacts,
        sessions: SessionManager,
        proxy: ProxyControl,
        ca: CertificateAuthority,
    ) -> None:
        self.server = server
        self.sessions = sessions
        self.proxy = proxy
        self.ca = ca
        #: Checks options against the server's state (e.g. that a collection exists);
        #: raises OptionError.
        self.check_options: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    async def _checked(self, options: dict[str, Any]) -> dict[str, Any]:
        if self.check_options is not None:
            await self.check_options(options)
        return options

    def methods(self) -> dict[str, Callable[..., Any]]:
        return {
            "server.info": self.server_info,
            "proxy.status": self.proxy_status,
            "proxy.enable": self.proxy_enable,
            "proxy.disable": self.proxy_disable,
            "session.start": self.session_start,
            "session.pause": self.session_pause,
            "session.resume": self.session_resume,
            "session.stop": self.session_stop,
            "session.clear": self.session_clear,
            "session.update": self.session_update,
            "session.get": self.session_get,
            "session.list": self.session_list,
            "session.delete": self.session_delete,
            "ca.get": self.ca_get,
        }

    # -- server and proxy ------------------------------------------------------------

    async def server_info(self) -> dict[str, Any]:
        active = self.sessions.active
        return {
            "version": __version__,
            "uptime_s": round(self.server.uptime_s(), 3),
            "data_dir": self.server.data_dir,
            "proxy": {"port": self.proxy.port, "enabled": self.proxy.enabled},
            **self.server.proxy_facts(),
            "active_session": None if active is None else active.to_json(self.sessions.now()),
            "counters": self.server.counters(),
            "storage": self.server.storage_status(),
        }

    async def ca_get(self) -> dict[str, Any]:
        return self.ca.to_json()

    async def proxy_status(self) -> dict[str, Any]:
        return self.proxy.status()

    @_translated
    @takes(port=Int(0, 65535, optional=True))
    async def proxy_enable(self, port: int | None = None) -> dict[str, Any]:
        await self.proxy.enable(port)
        return self.proxy.status()

    async def proxy_disable(self) -> dict[str, Any]:
        await self.proxy.disable()
        return self.proxy.status()

    # -- sessions --------------------------------------------------------------------

    def _session(self, record: Any) -> dict[str, Any]:
        return record.to_json(self.sessions.now())

    @_translated
    async def session_start(self, **options: Any) -> dict[str, Any]:
        return self._session(await self.sessions.start(await self._checked(options)))

    @_translated
    @takes(id=OPTIONAL_ID)
    async def session_pause(self, id: str | None = None) -> dict[str, Any]:
        return self._session(await self.sessions.pause(id))

    @_translated
    @takes(id=OPTIONAL_ID)
    async def session_resume(self, id: str | None = None) -> dict[str, Any]:
        return self._session(await self.sessions.resume(id))

    @_translated
    @takes(id=OPTIONAL_ID)
    async def session_stop(self, id: str | None = None) -> dict[str, Any]:
        return self._session(await self.sessions.stop(id))

    @_translated
    @takes(id=OPTIONAL_ID)
    async def session_clear(self, id: str | None = None) -> dict[str, Any]:
        return self._session(await self.sessions.clear(id))

    @_translated
    @takes(id=OPTIONAL_ID)
    async def session_update(self, id: str | None = None, **changes: Any) -> dict[str, Any]:
        return self._session(await self.sessions.update(id, await self._checked(changes)))

    @_translated
    @takes(id=ID)
    async def session_get(self, id: str) -> dict[str, Any]:
        return self._session(await self.sessions.get(id))

    @_translated
    @takes(id=ID)
    async def session_delete(self, id: str) -> bool:
        return await self.sessions.delete(id)

    @takes(limit=Int(1, MAX_PAGE, default=50), offset=Int(0, default=0))
    async def session_list(self, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        total, records = await self.sessions.list(limit, offset)
        return {"total": total, "items": [self._session(r) for r in records]}


__all__ = ["ControlMethods", "ID", "OPTIONAL_ID", "ProxyControl", "ProxyUnavailable", "INVALID_OPTION"]
