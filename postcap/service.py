"""The running server: wiring of store, sessions, proxy and control channel, and a
graceful stop (stop accepting, let exchanges finish, flush every sink)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import ILogObserver, Logger

from postcap._version import __version__
from postcap.capture import Spooler
from postcap.control.auth import load_or_create_token
from postcap.control.dispatch import JSONRPCDispatcher
from postcap.control.events_resource import EventsResource
from postcap.control.export_methods import ExportMethods
from postcap.control.har_resource import SessionExports
from postcap.control.history_methods import HistoryMethods
from postcap.control.guard import HealthResource
from postcap.control.methods import ControlMethods, ProxyUnavailable
from postcap.control.request_tools import RequestToolMethods
from postcap.events import EventHub, TransactionEvents
from postcap.filters import OptionError
from postcap.interceptor.cookies import BrowserCookieSync
from postcap.interceptor.methods import InterceptorMethods
from postcap.replay import Replayer
from postcap.memory import MemoryReturner
from postcap.retention import Retention
from postcap.web import install_web_app
from postcap.sinks.collections import CollectionSink, Collections
from postcap.sinks.cookies import CookieCapture, CookieJar, CookieSync
from postcap.control.web import ControlRoot, RPCResource, StaticBytes, control_site
from postcap.control.readiness import ReadinessResource, StatsMethods
from postcap.metrics import ReactorLagMonitor, Tally, build_registry, metrics_resource, metrics_site
from postcap.listening import (  # noqa: F401 - StartError is part of this module's API
    StartError,
    adopt_unix_lock,
    bind_endpoint,
    listen_paused,
    resume_accepting,
    unix_path,
)
from postcap.proxy.own import OwnEndpoints, machine_addresses
from postcap.proxy.server import ProxyFactory, ProxySettings
from postcap.session import SessionManager
from postcap.sinks.history import SQLiteHistoryStore
from postcap.tls.ca import load_or_create_ca
from postcap.tls.minting import LeafMinter


@dataclass(slots=True)
class PostcapConfig:
    """Everything ``twistd postcap`` was told (see :mod:`postcap.tap`)."""

    data_dir: str
    port: int = 5555
    interface: str = "0.0.0.0"
    control: str = "tcp:5556:interface=127.0.0.1"
    token_file: str | None = None
    storage_path: str | None = None
    proxy: ProxySettings = field(default_factory=ProxySettings)
    drain_timeout: float = 10.0
    #: Retention: stopped sessions older than this many seconds are deleted.
    history_max_age: float | None = None
    #: Retention: the oldest stopped sessions go while the history is larger.
    history_max_bytes: int | None = None
    retention_interval: float = 600.0
    #: Twisted endpoint serving ``GET /metrics`` without a token (``--metrics``).
    metrics: str | None = None
    #: ControlSite limits (``--control-max-connections``, ``--control-header-timeout``,
    #: ``--control-body-timeout``): attribute name → value.
    control_limits: dict[str, float] = field(default_factory=dict)

    @property
    def token_path(self) -> str:
        return self.token_file or os.path.join(self.data_dir, "control.token")

    @property
    def history_path(self) -> str:
        return self.storage_path or os.path.join(self.data_dir, "history.sqlite3")


class ProxyListener:
    """The proxy's listening port, which ``proxy.enable``/``disable`` open and close."""

    _log = Logger()

    def __init__(self, reactor: Any, factory: ProxyFactory, port: int, interface: str) -> None:
        self._reactor = reactor
        self.factory = factory
        self.port = port
        self.interface = interface
        self._listening: IListeningPort | None = None
        #: enable/disable one at a time: calls of one batch run concurrently, and a
        #: port stopped twice (or while another takes its place) breaks Twisted's Port.
        self._lock = DeferredLock()
        self.ca_sha256: str | None = None
        #: Called after the proxy starts or stops listening or moves port.
        self.on_change: Callable[[], None] | None = None

    @property
    def enabled(self) -> bool:
        return self._listening is not None

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "port": self.port, "ca_sha256": self.ca_sha256}

    def _endpoint(self, port: int) -> Any:
        if ipaddress.ip_address(self.interface).version == 6:
            return TCP6ServerEndpoint(self._reactor, port, interface=self.interface)
        return TCP4ServerEndpoint(self._reactor, port, interface=self.interface)

    def bind_paused(self) -> None:
        """Listen now, synchronously, but accept nothing until :meth:`enable`
        (twistd binds before it daemonises, so a taken port is reported at once)."""
        self._listening = listen_paused(self._endpoint(self.port), self.factory)
        self.port = self._listening.getHost().port

    async def enable(self, port: int | None = None) -> None:
        """Listen on ``port`` (the current one when None), then leave the old port."""
        await self._lock.acquire()
        try:
            await self._enable(port)
        finally:
            self._lock.release()

    async def disable(self) -> None:
        await self._lock.acquire()
        try:
            await self._disable()
        finally:
            self._lock.release()

    async def _enable(self, port: int | None) -> None:
        wanted = self.port if port is None else port
        previous = self._listening
        if previous is not None and wanted in (self.port, 0):
            resume_accepting(previous)
            return
        try:
            listening = await self._endpoint(wanted).listen(self.factory)
        except ierror.CannotListenError as exc:
            # The port in use (if any) keeps serving.
            raise ProxyUnavailable(wanted, str(exc.socketError)) from exc
        if previous is not None:
            await previous.stopListening()
            self._log.info("proxy stopped listening on port {port}", port=self.port)
        self._listening = listening
        self.port = listening.getHost().port
        self._log.info("proxy listening on {interface}:{port}", interface=self.interface, port=self.port)
        self._changed()

    async def _disable(self) -> None:
        listening, self._listening = self._listening, None
        if listening is not None:
            await listening.stopListening()
            self._log.info("proxy stopped listening on port {port}", port=self.port)
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class PostcapService(MultiService):
    """Starts everything in order and stops it gracefully."""

    _log = Logger()

    def __init__(self, config: PostcapConfig, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.config = config
        self.reactor = reactor
        self.data_dir = config.data_dir
        self.started_at = reactor.seconds()
        self.token = load_or_create_token(config.token_path)
        self.store = SQLiteHistoryStore(
            config.history_path, reactor=reactor, separate_process=True,
            decode_limit=config.proxy.max_capture_body,
        )
        # -- metrics: one tally for every layer, read when /metrics is scraped
        self.tally = Tally()
        self.metrics_registry = build_registry(self.tally, lambda: self.store.stats)
        self.lag_monitor = ReactorLagMonitor(reactor, self.tally.reactor_lag)
        self.metrics_port: IListeningPort | None = None
        # --
        self.sessions = SessionManager(reactor, self.store, tally=self.tally)
        self.spooler = Spooler(reactor, os.path.join(config.data_dir, "spool"))
        self.ca = load_or_create_ca(os.path.join(config.data_dir, "ca"))
        self.minter = LeafMinter(self.ca)
        self.own_endpoints = OwnEndpoints(machine_addresses())
        self.proxy_factory = ProxyFactory(
            reactor, config.proxy, self.sessions, spooler=self.spooler, minter=self.minter,
            tally=self.tally, own=self.own_endpoints,
        )
        self.proxy = ProxyListener(reactor, self.proxy_factory, config.port, config.interface)
        self.proxy.ca_sha256 = self.ca.sha256
        self.events = EventHub()
        self.sessions.add_listener(
            lambda change, record: self.events.session_changed(change, record, self.sessions.now())
        )
        self.sessions.add_sink(TransactionEvents(self.events))
        self.sessions.add_message_listener(self.events.message_captured)
        health = getattr(self.store, "health", None)
        if health is not None:
            health.listeners.append(
                lambda available, reason: self.events.storage_changed(self.store.stats.to_json()))
        self.events_resource = EventsResource(self.events, reactor)
        self.jar = CookieJar(self.store)
        self.cookie_sync = CookieSync(self.jar, self.store)
        self.sessions.add_observer(self.cookie_sync)
        self.cookie_capture = CookieCapture(self.store, self._captures_cookies)
        self.cookie_capture.add_listener(self.events.cookies_captured)
        self.sessions.add_sink(self.cookie_capture)
        self.collections = Collections(self.store)
        self.sessions.add_sink(CollectionSink(self.store, self._collection_of))
        self.replayer = Replayer(
            reactor, self.proxy_factory.connector, self.spooler,
            config.proxy.max_capture_body, timeout=config.proxy.upstream_timeout,
        )
        self.dispatcher = JSONRPCDispatcher(on_call=self.tally.rpc_call)
        StatsMethods(self.tally, lambda: self.store.stats, self.uptime_s).install(self.dispatcher)
        control = ControlMethods(self, self.sessions, self.proxy, self.ca)
        control.check_options = self._check_collection_option
        control.install(self.dispatcher)
        self.history_methods = HistoryMethods(self.sessions, self.replayer, cookie_source=self.jar)
        self.history_methods.install(self.dispatcher)
        RequestToolMethods(self.sessions).install(self.dispatcher)
        ExportMethods(self.sessions, self.jar, self.cookie_sync, self.collections).install(
            self.dispatcher)
        self.interceptor = InterceptorMethods(
            reactor, self.sessions, config.data_dir, config.proxy.max_capture_body
        )
        self.interceptor.install(self.dispatcher)
        self.interceptor.add_cookie_listener(BrowserCookieSync(self.jar, self.cookie_sync))
        self.retention = Retention(
            self.store, self.sessions, config.history_max_age, config.history_max_bytes
        )
        self.memory = MemoryReturner(reactor)
        self._retention_loop = LoopingCall(self.retention.run)
        self._retention_loop.clock = reactor
        self.control_port: IListeningPort | None = None
        self.ready: Deferred[None] = Deferred()

    def _captures_cookies(self, session_id: str) -> bool:
        options = self.sessions.active_options(session_id)
        return bool(options and options.get("capture_cookies"))

    def _collection_of(self, session_id: str) -> tuple[str, list[str]] | None:
        options = self.sessions.active_options(session_id)
        if not options or not options.get("collection"):
            return None
        return options["collection"], list(options.get("organize_by") or [])

    async def _check_collection_option(self, options: dict[str, Any]) -> None:
        collection = options.get("collection")
        if isinstance(collection, str) and not await self.collections.exists(collection):
            raise OptionError("collection", f"no collection with id {collection!r}")

    def uptime_s(self) -> float:
        return self.reactor.seconds() - self.started_at

    def counters(self) -> dict[str, Any]:
        counters = self.proxy_factory.counters()
        site = getattr(self.control_port, "factory", None)
        if hasattr(site, "channels"):
            counters["control"] = {"open_connections": len(site.channels),
                                   "slow_clients": site.slow_clients,
                                   "refused": site.busy_refused}
        return counters

    def readiness_problems(self) -> list[str]:
        """Why the server should get no traffic now (``GET /readyz``); empty when ready."""
        reasons = []
        if self.proxy_factory.draining:
            reasons.append("draining")
        if not self.proxy.enabled:
            reasons.append("proxy disabled")
        stats = self.store.stats
        if not stats.available:
            reasons.append(f"storage unavailable: {stats.reason}")
        return reasons

    #: The log observer twistd should use (postcap.logs); set by ``makeService``.
    log_observer: Any = None

    def setServiceParent(self, parent: Any) -> None:
        """twistd logs through the application's ILogObserver component when it has
        one: that is how ``--log-format`` reaches twistd's log."""
        if self.log_observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def storage_status(self) -> dict[str, Any]:
        """``server.info``'s ``storage``: whether the history store accepts writes, and why not."""
        return self.store.stats.to_json()

    def proxy_facts(self) -> dict[str, Any]:
        """``server.info``'s ``interface`` and ``mode`` (extensions: the proxy's
        ``--interface`` and ``--mode``)."""
        reverse = self.config.proxy.reverse
        return {"interface": self.config.interface,
                "mode": "regular" if reverse is None else f"reverse:{reverse.url}"}

    def startService(self) -> None:
        adopt_unix_lock(self.control_port)
        adopt_unix_lock(self.metrics_port)
        super().startService()
        self.reactor.callWhenRunning(self._handle_sigterm)
        ensureDeferred(self._start()).addCallbacks(self.ready.callback, self._start_failed)

    async def _start(self) -> None:
        self.spooler.start()
        recovered = await self.sessions.open()
        await self.jar.load()
        await self.cookie_sync.load()
        await self.interceptor.open()
        for session_id in recovered:
            self._log.info("session {session_id} was left active by a previous run; now stopped",
                           session_id=session_id)
        if self.control_port is None:
            self.control_port = await serverFromString(
                self.reactor, self.config.control).listen(self._control_site())
            self._guard_port(self.control_port)
        else:
            resume_accepting(self.control_port)
        self.lag_monitor.start()
        if self.metrics_port is not None:
            resume_accepting(self.metrics_port)
        elif self.config.metrics:
            self.metrics_port = await serverFromString(self.reactor, self.config.metrics).listen(
                metrics_site(self.metrics_registry))
            self._guard_port(self.metrics_port)
        await self.proxy.enable()
        if self.retention.enabled:
            self._retention_loop.start(self.config.retention_interval, now=True)
        self._write_state_file()
        self.proxy.on_change = self._write_state_file
        self.memory.start()
        control = self.control_port.getHost()
        self._log.info(
            "postcap {version} ready: proxy on {interface}:{port} ({mode}), control on {control_host}:{control_port}, data in {data_dir}",
            version=__version__,
            mode=self.proxy_facts()["mode"],
            interface=self.config.interface,
            port=self.proxy.port,
            control_host=getattr(control, "host", "?"),
            control_port=getattr(control, "port", "?"),
            data_dir=self.data_dir,
        )

    def _control_site(self) -> Any:
        root = ControlRoot(lambda: self.token)
        root.putChild(b"rpc", RPCResource(self.dispatcher))
        root.putChild(b"ca.pem", StaticBytes(self.ca.pem, b"application/x-pem-file"))
        root.putChild(b"events", self.events_resource)
        install_web_app(root)
        root.putChild(b"sessions", SessionExports(self.store))
        root.putChild(b"healthz", HealthResource(lambda: self.proxy_factory.draining))
        root.putChild(b"readyz", ReadinessResource(self.readiness_problems))
        root.putChild(b"metrics", metrics_resource(self.metrics_registry))
        site = control_site(root)
        for name, value in self.config.control_limits.items():
            setattr(site, name, value)
        return site

    def bind(self) -> None:
        """Listen on the control endpoint and the proxy port now, accepting nothing
        until the service has started: called by ``twistd`` before it daemonises, so
        a taken port is one line on stderr and a non-zero exit, not a stale pidfile.
        :class:`StartError` names the option."""
        description = self.config.control
        if description.startswith("unix:") and ":mode=" not in description:
            description += ":mode=600"  # only postcap's user may connect (Twisted's default: 666)
        self.control_port = bind_endpoint(self.reactor, "--control", description,
                                          self._control_site())
        self._guard_port(self.control_port)
        try:
            if self.config.metrics:
                self.metrics_port = bind_endpoint(self.reactor, "--metrics", self.config.metrics,
                                                  metrics_site(self.metrics_registry))
                self._guard_port(self.metrics_port)
            try:
                self.proxy.bind_paused()
            except StartError as exc:
                raise StartError(f"--port {self.config.port} (--interface "
                                 f"{self.config.interface}): cannot listen: {exc}") from None
        except StartError:
            for port in (self.control_port, self.metrics_port):
                if port is not None:
                    port.stopListening()
            self.control_port = self.metrics_port = None
            raise

    def _guard_port(self, port: Any) -> None:
        """Proxy clients may not reach this listening port of postcap through the proxy."""
        address = port.getHost() if port is not None else None
        self.own_endpoints.add(getattr(address, "port", None), getattr(address, "host", None))

    def _handle_sigterm(self) -> None:
        """SIGTERM is the normal way to stop a server: drain, flush and exit 0 (twistd
        would otherwise re-raise the signal and die with it)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, frame: object) -> None:
            self._log.info("SIGTERM received; stopping gracefully")
            self.reactor.callFromThread(self.reactor.stop)

        signal.signal(signal.SIGTERM, stop)

    def _write_state_file(self) -> None:
        """``DATA_DIR/server.json``: where this server listens, for scripts and postcapctl."""
        control = self.control_port.getHost() if self.control_port is not None else None
        state = {
            "pid": os.getpid(),
            "version": __version__,
            "proxy": {"interface": self.config.interface, "port": self.proxy.port,
                      "enabled": self.proxy.enabled},
            "control": {
                "host": getattr(control, "host", None),
                "port": getattr(control, "port", None),
                "unix": unix_path(control),
                "endpoint": self.config.control,
            },
            "token_file": os.path.abspath(self.config.token_path),
        }
        path = os.path.join(self.data_dir, "server.json")
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(path + ".tmp", path)

    def _start_failed(self, failure: Any) -> None:
        self._log.critical("postcap could not start: {message}", message=failure.getErrorMessage(),
                           log_failure=failure)
        self.ready.errback(failure)
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self.reactor.stop()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._log.info("postcap stopping: draining connections")
        self.proxy_factory.draining = True
        if self._retention_loop.running:
            self._retention_loop.stop()
        self.memory.stop()
        self.events_resource.close_all()
        await self.proxy.disable()
        await self.proxy_factory.drain(self.config.drain_timeout)
        self.proxy_factory.pool.close()
        if self.control_port is not None:
            await self.control_port.stopListening()
        if self.metrics_port is not None:
            await self.metrics_port.stopListening()
        self.lag_monitor.stop()
        await self.sessions.close()
        self.spooler.stop()
        self._remove_state_file()
        self._log.info("postcap stopped; history flushed")

    def _remove_state_file(self) -> None:
        """Clients find no ``server.json`` of a stopped server (see postcap.discovery)."""
        path = os.path.join(self.data_dir, "server.json")
        try:
            with open(path, encoding="utf-8") as handle:
                ours = json.load(handle).get("pid") == os.getpid()
            if ours:
                os.unlink(path)
        except (OSError, ValueError, AttributeError):
            pass
