"""The server's end of the interceptor link: JSON-RPC methods and the link state.

Public methods (contract §4): ``interceptor.status``, ``interceptor.set_key``;
added: ``interceptor.clear_key``.  Used by ``postcap-bridge`` (the token is
required like for every method): ``interceptor.bridge`` (a bridge started or
ended), ``interceptor.submit`` (one sealed frame from the extension) and
``interceptor.config`` (the sealed filter settings the bridge pushes to the
extension).

Decryption happens here, not in the bridge: the key lives only in the server's
memory (and ``DATA_DIR/interceptor.key``, mode 0600) and in the extension, the
bridge is a dumb pipe that never holds it, and rejected frames are counted
where ``interceptor.status`` reports them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from postcap.control.params import Enum, Obj, Str, takes
from postcap.control.dispatch import InvalidParams
from postcap.control.json_values import first_bad_value
from postcap.control.method_group import MethodGroup
from postcap.interceptor import crypto
from postcap.interceptor.extension_id import EXTENSION_ID
from postcap.interceptor.records import BadRecord, method_and_url, transaction_from_record
from postcap.session import SessionManager

#: A bridge that has not been heard from for this long counts as gone.
BRIDGE_STALE_S = 10.0
KEY_FILE = "interceptor.key"

#: Receives every cookie change the extension reports
#: (see :meth:`InterceptorMethods.add_cookie_listener`).
CookieListener = Callable[["BrowserCookieChange"], Any]
KeyDeriver = Callable[[str], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class BrowserCookieChange:
    """One ``chrome.cookies.onChanged`` event, for the active interceptor session."""

    session_id: str | None
    removed: bool
    cause: str
    cookie: dict[str, Any]


@dataclass(slots=True)
class LinkState:
    bridges: dict[str, float] = field(default_factory=dict)
    authenticated_frames: int = 0
    rejected_frames: int = 0
    #: Authentic frames refused as repeats or too old (see crypto.ReplayGuard).
    replayed_frames: int = 0
    captured_requests: int = 0
    ignored_requests: int = 0
    bad_records: int = 0
    cookies_received: int = 0
    last_frame_ok: bool | None = None
    last_error: str | None = None
    last_frame_at: float | None = None
    extension: dict[str, Any] | None = None


class InterceptorMethods(MethodGroup):
    """Holds the link key and state; turns extension messages into transactions."""

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        sessions: SessionManager,
        data_dir: str,
        body_limit: int,
        derive: KeyDeriver | None = None,
    ) -> None:
        self._reactor = reactor
        self.sessions = sessions
        self.key_path = os.path.join(data_dir, KEY_FILE)
        self.body_limit = body_limit
        self._derive = derive or self._derive_in_thread
        self.custom_key = False
        self._key: bytes | None = None
        self.state = LinkState()
        #: Counters of the extension's links (frames replayed are refused).
        self.replay_guard = crypto.ReplayGuard()
        #: This server's own link to the extension: counters in the frames it seals.
        self.counter = crypto.LinkCounter()
        self._cookie_listeners: list[CookieListener] = []

    def _derive_in_thread(self, passphrase: str) -> Deferred[bytes]:
        return deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), crypto.derive_key, passphrase
        )

    async def open(self) -> None:
        """Load the custom key from ``DATA_DIR/interceptor.key``, if any, and derive the key."""
        passphrase = None
        try:
            with open(self.key_path, encoding="ascii") as handle:
                passphrase = handle.read().strip()
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            self._log.error("cannot read {path}: {error}; using the default key",
                            path=self.key_path, error=exc)
        if passphrase is not None and not crypto.is_valid_custom_key(passphrase):
            self._log.error("{path} holds no valid key; using the default key", path=self.key_path)
            passphrase = None
        self.custom_key = passphrase is not None
        self._key = await self._derive(passphrase or crypto.DEFAULT_KEY)

    def add_cookie_listener(self, listener: CookieListener) -> None:
        """Hand browser cookies to the cookie store (the cookie issue wires its jar here)."""
        self._cookie_listeners.append(listener)

    def methods(self) -> dict[str, Callable[..., Any]]:
        return {
            "interceptor.status": self.status,
            "interceptor.set_key": self.set_key,
            "interceptor.clear_key": self.clear_key,
            "interceptor.bridge": self.bridge,
            "interceptor.submit": self.submit,
            "interceptor.config": self.config,
        }

    # -- public methods -----------------------------------------------------------------

    def connected(self) -> bool:
        now = self._reactor.seconds()
        return any(now - seen <= BRIDGE_STALE_S for seen in self.state.bridges.values())

    async def status(self) -> dict[str, Any]:
        state = self.state
        connected = self.connected()
        return {
            "connected": connected,
            "secure": connected and state.last_frame_ok is True,
            "custom_key": self.custom_key,
            "bridges": sum(1 for _ in state.bridges),
            "extension_id": EXTENSION_ID,
            "extension": state.extension,
            "authenticated_frames": state.authenticated_frames,
            "rejected_frames": state.rejected_frames,
            "replayed_frames": state.replayed_frames,
            "captured_requests": state.captured_requests,
            "ignored_requests": state.ignored_requests,
            "bad_records": state.bad_records,
            "cookies_received": state.cookies_received,
            "last_error": state.last_error,
        }

    @takes(key=Str(max_length=1024, optional=True))
    async def set_key(self, key: Any = None) -> dict[str, Any]:
        if not crypto.is_valid_custom_key(key):
            raise InvalidParams("key", "must be alphanumeric (A-Z, a-z, 0-9) and at least 10 characters")
        derived = await self._derive(key)
        self._write_key_file(key)
        self._key, self.custom_key = derived, True
        self.state.last_frame_ok = None
        self._log.info("interceptor key changed; the extension must be given the same key")
        return {"secure": True, "custom_key": True}

    async def clear_key(self) -> dict[str, Any]:
        """Go back to the default key (and delete ``DATA_DIR/interceptor.key``)."""
        derived = await self._derive(crypto.DEFAULT_KEY)
        try:
            os.unlink(self.key_path)
        except FileNotFoundError:
            pass
        self._key, self.custom_key = derived, False
        self.state.last_frame_ok = None
        return {"secure": True, "custom_key": False}

    def _write_key_file(self, key: str) -> None:
        temporary = self.key_path + ".tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
        os.replace(temporary, self.key_path)

    # -- methods for postcap-bridge -------------------------------------------------------

    @takes(event=Enum(("connect", "disconnect")), bridge_id=Str(max_length=100),
           origin=Str(max_length=200, allow_empty=True, optional=True))
    async def bridge(self, event: str, bridge_id: str, origin: str | None = None) -> dict[str, Any]:
        if event == "connect":
            self.state.bridges[bridge_id] = self._reactor.seconds()
            self._log.info("interceptor bridge {bridge_id} connected for {origin}",
                           bridge_id=bridge_id, origin=origin)
        else:
            self.state.bridges.pop(bridge_id, None)
            self._log.info("interceptor bridge {bridge_id} disconnected", bridge_id=bridge_id)
        return {"extension_id": EXTENSION_ID}

    def _seen(self, bridge_id: str | None) -> None:
        if bridge_id is not None:
            self.state.bridges[bridge_id] = self._reactor.seconds()

    @takes(bridge_id=Str(max_length=100, optional=True))
    async def config(self, bridge_id: str | None = None) -> dict[str, Any]:
        """The sealed settings for the extension and a digest of them (push on change)."""
        self._seen(bridge_id)
        settings = self._settings()
        digest = hashlib.sha256(
            json.dumps([settings, self.custom_key], sort_keys=True).encode()
        ).hexdigest()[:16]
        return {"digest": digest, "frame": self.counter.seal(self._require_key(), settings)}

    @takes(frame=Obj(extra=True), bridge_id=Str(max_length=100, optional=True))
    async def submit(self, frame: dict[str, Any], bridge_id: str | None = None) -> dict[str, Any]:
        """One frame from the extension; ``{reply}`` is the frame to send back, or null."""
        self._seen(bridge_id)
        state = self.state
        state.last_frame_at = self._reactor.seconds()
        try:
            message = crypto.open_sealed(self._require_key(), frame)
        except crypto.FrameRejected as exc:
            state.rejected_frames += 1
            state.last_frame_ok = False
            state.last_error = str(exc)
            self._log.warn("interceptor frame rejected: {reason}", reason=str(exc))
            return {"reply": {"type": "error", "code": "authentication_failed", "message": str(exc)}}
        try:
            self.replay_guard.check(message)
        except crypto.FrameRejected as exc:
            # Authentic but seen before (or too old): someone replays captured frames.
            state.replayed_frames += 1
            state.last_error = str(exc)
            self._log.warn("interceptor frame refused: {reason}", reason=str(exc))
            return {"reply": {"type": "error", "code": "replayed_frame", "message": str(exc)}}
        state.authenticated_frames += 1
        state.last_frame_ok = True
        if state.last_error is not None and "authentication" in state.last_error:
            state.last_error = None
        kind = message.get("type")
        bad = first_bad_value(message)
        if bad is not None and kind in ("request", "cookie"):
            # Nothing the store cannot hold (a lone surrogate, a 100-digit number) gets in.
            state.bad_records += 1
            state.last_error = f"bad {kind} message from the extension: '{bad[0]}' {bad[1]}"
            return {"reply": None}
        if kind == "request":
            self._record(message.get("record"))
        elif kind == "cookie":
            self._cookie(message)
        elif kind in ("hello", "ping"):
            if kind == "hello":
                state.extension = {
                    "version": str(message.get("extension_version", ""))[:50],
                    "user_agent": str(message.get("user_agent", ""))[:300],
                }
            return {"reply": self.counter.seal(self._require_key(), self._settings())}
        else:
            state.last_error = f"unknown message type {kind!r} from the extension"
        return {"reply": None}

    # -- captured traffic -----------------------------------------------------------------

    def _require_key(self) -> bytes:
        if self._key is None:
            raise RuntimeError("the interceptor key is not loaded yet")
        return self._key

    def _settings(self) -> dict[str, Any]:
        """What the extension needs to filter early (the server filters again)."""
        active = self.sessions.active
        capturing = active is not None and active.source == "interceptor" and active.state == "running"
        filters = active.options["filters"] if capturing and active is not None else {}
        return {
            "type": "config",
            "session_active": capturing,
            "filters": {
                "url_contains": filters.get("url_contains"),
                "url_excludes": filters.get("url_excludes"),
                "methods": filters.get("methods", []),
            },
        }

    def _record(self, record: Any) -> None:
        try:
            method, url = method_and_url(record)
            ticket = self.sessions.begin(method, url, source="interceptor")
            if ticket is None and not self.sessions.observes_all:
                self.state.ignored_requests += 1
                return
            session_id = None if ticket is None else ticket.session_id
            transaction = transaction_from_record(record, session_id, self.body_limit)
        except BadRecord as exc:
            self.state.bad_records += 1
            self.state.last_error = f"bad request record from the extension: {exc}"
            return
        if ticket is None or not ticket.wants_response(transaction.status, transaction.content_type):
            self.state.ignored_requests += 1
            # Observers (cookie sync) still see it, as they see uncaptured proxy traffic.
            self.sessions.complete(None, transaction)
            return
        self.state.captured_requests += 1
        self.sessions.complete(ticket, transaction)

    def _cookie(self, message: dict[str, Any]) -> None:
        cookie = message.get("cookie")
        if not isinstance(cookie, dict):
            self.state.bad_records += 1
            return
        active = self.sessions.active
        session_id = active.id if active is not None and active.source == "interceptor" else None
        change = BrowserCookieChange(
            session_id=session_id,
            removed=bool(message.get("removed")),
            cause=str(message.get("cause", "")),
            cookie=cookie,
        )
        self.state.cookies_received += 1
        for listener in self._cookie_listeners:
            with self._log.failuresHandled("cookie listener failed"):
                listener(change)
