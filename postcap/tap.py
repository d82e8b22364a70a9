"""``twistd postcap``: the command-line options and :func:`makeService`."""

from __future__ import annotations

import gc
import ipaddress
import os
import re
import sys
from typing import Any

from twisted.python import usage

from postcap._version import __version__

DEFAULT_CONTROL = "tcp:5556:interface=127.0.0.1"
DEFAULT_MAX_CAPTURE_BODY = 10 * 1024 * 1024


def default_data_dir() -> str:
    return os.environ.get("POSTCAP_HOME") or os.path.join(os.path.expanduser("~"), ".postcap")


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number of seconds")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError("must be 0..65535")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be >= 1")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
               "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12,
               "tib": 2**40}


def duration_seconds(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or plain seconds, as seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text).lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError("must be a positive duration such as 30d, 12h, 90m or 3600")
    return float(match.group(1)) * _DURATION_UNITS.get(match.group(2) or "s", 1)


def size_bytes(text: str) -> int:
    """``"500MB"``, ``"2GiB"``, ``"10k"`` or plain bytes, as bytes (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(text).lower())
    if match is None or match.group(2) not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise ValueError("must be a positive size such as 500MB, 2GiB or 1048576")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def _named(name: str, coerce: Any) -> Any:
    """``coerce`` whose errors name the option and the value: ``--port 'x': ...``."""

    def named(value: str) -> Any:
        try:
            return coerce(value)
        except ValueError as exc:
            reason = str(exc)
            if reason.startswith(("invalid literal", "could not convert")):
                reason = "must be a number"
            raise ValueError(f"--{name} {value!r}: {reason}") from None

    named.coerceDoc = getattr(coerce, "coerceDoc", "")  # type: ignore[attr-defined]
    return named


class Options(usage.Options):
    """Options of ``twistd postcap`` (``twistd postcap --help`` lists them)."""

    synopsis = "[options]"
    longdesc = (
        "postcap: a capture proxy. Point clients at the proxy port, drive capture "
        "sessions through JSON-RPC on the control endpoint."
    )

    optParameters = [
        ["port", None, 5555, "Proxy port (0 picks a free one).", _port],
        ["interface", None, "0.0.0.0", "Proxy listen address (IPv4 or IPv6 literal)."],
        ["control", None, DEFAULT_CONTROL,
         "Twisted endpoint of the control channel (JSON-RPC, web page, CA download)."],
        ["data-dir", None, None, "History, CA, control token, collections "
         "[default: $POSTCAP_HOME or ~/.postcap]."],
        ["token-file", None, None, "Bearer token file [default: DATA_DIR/control.token]."],
        ["upstream-proxy", None, None, "Chain upstream connections through this HTTP proxy URL."],
        ["max-capture-body", None, DEFAULT_MAX_CAPTURE_BODY,
         "Bytes of each body kept in the capture (bodies still stream in full).",
         _non_negative_int],
        ["storage", None, None, "History store URL [default: sqlite:DATA_DIR/history.sqlite3]."],
        ["upstream-timeout", None, 60.0,
         "Seconds to wait on a silent upstream before answering 504.", _positive_float],
        ["connect-timeout", None, 10.0, "Seconds to wait for an upstream connection (504).",
         _positive_float],
        ["header-timeout", None, 30.0, "Seconds a client has to send request headers (408).",
         _positive_float],
        ["idle-timeout", None, 120.0, "Seconds an idle keep-alive client connection stays open.",
         _positive_float],
        ["max-client-connections", None, 256,
         "Open proxy connections one client address may hold; more are refused (503).",
         _positive_int],
        ["max-connections", None, None,
         "Open proxy connections in all; more are refused (503) "
         "[default: (file descriptor limit - 64) / 2].", _positive_int],
        ["control-max-connections", None, 128,
         "Open control channel connections; more are answered 503.", _positive_int],
        ["control-header-timeout", None, 10.0,
         "Seconds a control client has to send a request's headers (408).", _positive_float],
        ["control-body-timeout", None, 30.0,
         "Seconds a control client has to send a request's body (408).", _positive_float],
        ["drain-timeout", None, 10.0, "Seconds in-flight exchanges get to finish on shutdown.",
         _positive_float],
        ["history-max-age", None, None,
         "Delete stopped sessions that ended longer ago than this (e.g. 30d, 12h).",
         duration_seconds],
        ["history-max-bytes", None, None,
         "Delete the oldest stopped sessions while the history is larger than this "
         "(e.g. 2GiB, 500MB).", size_bytes],
        ["retention-interval", None, 600.0,
         "Seconds between retention checks (with --history-max-age/--history-max-bytes).",
         _positive_float],
        ["metrics", None, None, "Twisted endpoint serving GET /metrics (Prometheus) without "
         "a token, e.g. tcp:9464:interface=127.0.0.1."],
        ["log-format", None, "text", "text (twistd's lines) or json (one object per line)."],
        ["mode", None, "regular",
         "regular (forward proxy) or reverse:URL (stand in front of the server at URL)."],
        ["certs", None, None,
         "Reverse mode: serve TLS to clients with this PEM file (certificate chain + key)."],
    ]
    optFlags = [
        ["insecure-upstream", None, "Do not verify upstream TLS certificates."],
        ["keep-host", None, "Reverse mode: forward the client's Host header unchanged."],
        ["reverse-tls", None,
         "Reverse mode: serve TLS to clients with a certificate minted by postcap's CA."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["allow"] = []
        self["ignore-hosts"] = []

    def parseOptions(self, options: Any = None) -> None:
        """Parse.  Under twistd (``parent`` set), a bad option is one line on stderr
        naming it and exit status 2, instead of twistd's whole usage text; used alone,
        :class:`usage.UsageError` is raised as usual."""
        try:
            super().parseOptions(options)
        except usage.UsageError as exc:
            if getattr(self, "parent", None) is None:
                raise
            message = str(exc).replace("Parameter type enforcement failed: ", "")
            print(f"twistd postcap: {message} (see twistd postcap --help)", file=sys.stderr)
            raise SystemExit(2) from None

    def opt_version(self) -> None:
        """Print the postcap version and exit."""
        print(f"postcap {__version__}")
        sys.exit(0)

    def opt_allow(self, cidr: str) -> None:
        """Proxy clients allowed (CIDR, repeatable) [default: loopback and private ranges]."""
        try:
            self["allow"].append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise usage.UsageError(f"--allow {cidr!r}: {exc}")

    def opt_ignore_hosts(self, pattern: str) -> None:
        """CONNECT to hosts matching this regex (RE2 syntax) are tunnelled blind (repeatable)."""
        from postcap.patterns import PatternError, compile_pattern

        try:
            compile_pattern(pattern)
        except PatternError as exc:
            raise usage.UsageError(f"--ignore-hosts {pattern!r}: {exc.reason}")
        self["ignore-hosts"].append(pattern)

    def postOptions(self) -> None:
        self["data-dir"] = os.path.abspath(self["data-dir"] or default_data_dir())
        try:
            ipaddress.ip_address(self["interface"])
        except ValueError:
            raise usage.UsageError(f"--interface {self['interface']!r} is not an IP address")
        self["storage-path"] = storage_path(self["storage"], self["data-dir"])
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError(f"--log-format {self['log-format']!r}: use text or json")
        if self["metrics"]:
            check_endpoint("--metrics", self["metrics"])
        if self["upstream-proxy"]:
            self["upstream-proxy-origin"] = upstream_proxy_origin(self["upstream-proxy"])
        self["reverse"] = reverse_options(self)


Options.optParameters = [
    [*spec[:4], _named(spec[0], spec[4])] if len(spec) > 4 else spec
    for spec in Options.optParameters
]


def storage_path(url: str | None, data_dir: str) -> str:
    """The SQLite file of a ``--storage`` URL (``sqlite:PATH`` or ``sqlite:///PATH``)."""
    if url is None:
        return os.path.join(data_dir, "history.sqlite3")
    scheme, colon, rest = url.partition(":")
    if scheme != "sqlite" or not colon or not rest:
        raise usage.UsageError(f"--storage {url!r}: only sqlite:PATH is supported")
    if rest.startswith("///"):
        rest = rest[2:]
    elif rest.startswith("//"):
        raise usage.UsageError(f"--storage {url!r}: use sqlite:PATH or sqlite:///ABSOLUTE/PATH")
    return os.path.abspath(os.path.expanduser(rest))


def check_endpoint(option: str, description: str) -> None:
    """Refuse a server endpoint string Twisted cannot parse (before anything starts)."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as exc:
        raise usage.UsageError(f"{option} {description!r} is not a Twisted endpoint: {exc}")


def upstream_proxy_origin(url: str) -> Any:
    from postcap.proxy.framing import ProtocolError
    from postcap.proxy.targets import parse_absolute_target

    try:
        target = parse_absolute_target(url.encode("ascii"))
    except (ProtocolError, UnicodeEncodeError):
        raise usage.UsageError(f"--upstream-proxy {url!r} is not an http://host:port URL")
    if target.origin.scheme != "http":
        raise usage.UsageError("--upstream-proxy must be an http:// proxy")
    return target.origin


def reverse_options(options: "Options") -> Any:
    """``--mode`` with ``--keep-host``, ``--certs``, ``--reverse-tls`` as a
    :class:`~postcap.proxy.reverse.ReverseTarget` (None in regular mode)."""
    import dataclasses

    from postcap.proxy.reverse import CertificateServerCreator, ModeError, parse_mode

    try:
        reverse = parse_mode(options["mode"])
    except ModeError as exc:
        raise usage.UsageError(f"--mode: {exc}")
    extras = [name for name in ("keep-host", "reverse-tls", "certs") if options[name]]
    if reverse is None:
        if extras:
            raise usage.UsageError(f"--{extras[0]} needs --mode reverse:URL")
        return None
    if options["certs"] and options["reverse-tls"]:
        raise usage.UsageError("--certs and --reverse-tls exclude each other")
    if options["certs"]:
        path = os.path.abspath(options["certs"])
        try:
            CertificateServerCreator(path)
        except ValueError as exc:
            raise usage.UsageError(f"--certs: {exc}")
        return dataclasses.replace(reverse, keep_host=bool(options["keep-host"]),
                                   client_tls="certs", certs_file=path)
    return dataclasses.replace(reverse, keep_host=bool(options["keep-host"]),
                               client_tls="minted" if options["reverse-tls"] else None)


def prepare_data_dir(path: str) -> None:
    """Create the data dir (mode 0700; an existing looser one is tightened, see
    :mod:`postcap.startup`) and check it is writable; exit with one line if not."""
    from postcap.startup import secure_data_dir

    try:
        secure_data_dir(path)
        probe = os.path.join(path, ".write-test")
        with open(probe, "wb") as handle:
            handle.write(b"ok")
        os.unlink(probe)
    except OSError as exc:
        raise SystemExit(f"postcap: data dir {path} is not usable: {exc.strerror or exc}")


def makeService(options: Options) -> Any:
    from postcap.patterns import compile_pattern
    from postcap.proxy.server import ProxySettings
    from postcap.service import PostcapConfig, PostcapService

    from postcap.service import StartError
    from postcap.startup import default_max_connections, raise_fd_limit, restrict_file_modes

    restrict_file_modes()
    prepare_data_dir(options["data-dir"])
    settings = ProxySettings(
        max_capture_body=options["max-capture-body"],
        upstream_timeout=options["upstream-timeout"],
        connect_timeout=options["connect-timeout"],
        header_timeout=options["header-timeout"],
        idle_timeout=options["idle-timeout"],
        upstream_proxy=options.get("upstream-proxy-origin"),
        insecure_upstream=bool(options["insecure-upstream"]),
        ignore_hosts=[compile_pattern(pattern) for pattern in options["ignore-hosts"]],
        max_client_connections=options["max-client-connections"],
        max_connections=max_connections(options["max-connections"], raise_fd_limit(),
                                        default_max_connections),
        reverse=options.get("reverse"),
        reverse_listen_host=options["interface"],
    )
    if options["allow"]:
        settings.allow = list(options["allow"])
    config = PostcapConfig(
        data_dir=options["data-dir"],
        port=options["port"],
        interface=options["interface"],
        control=options["control"],
        token_file=options["token-file"],
        storage_path=options["storage-path"],
        proxy=settings,
        drain_timeout=options["drain-timeout"],
        history_max_age=options["history-max-age"],
        history_max_bytes=options["history-max-bytes"],
        retention_interval=options["retention-interval"],
        metrics=options["metrics"],
        control_limits={
            "max_connections": options["control-max-connections"],
            "header_timeout": options["control-header-timeout"],
            "body_timeout": options["control-body-timeout"],
        },
    )
    try:
        service = PostcapService(config)
        service.bind()
    except StartError as exc:
        raise SystemExit(f"postcap: cannot start: {exc}")
    except OSError as exc:
        raise SystemExit(f"postcap: cannot start: {exc}")
    service.ready.addCallback(lambda _: tune_garbage_collector())
    service.log_observer = _log_observer(options, service)
    return service


def _log_observer(options: Options, service: Any) -> Any:
    """The observer for ``--log-format`` (written where twistd's ``--logfile`` says)."""
    from postcap.logs import observer_for

    parent = getattr(options, "parent", None)
    twistd_options = None if parent is None or "logfile" not in parent else parent
    return observer_for(twistd_options, options["log-format"], lambda: (service.token,))


def max_connections(given: int | None, fd_limit: int, default: Any) -> int:
    """``--max-connections``, kept within what ``fd_limit`` descriptors allow."""
    from twisted.logger import Logger

    ceiling = default(fd_limit)
    if given is None:
        return ceiling
    if given > ceiling:
        Logger(namespace="postcap.tap").warn(
            "--max-connections {given} lowered to {ceiling}: the file descriptor limit is "
            "{limit}", given=given, ceiling=ceiling, limit=fd_limit)
        return ceiling
    return given


#: Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Keep the cyclic GC off the hot path of a long-running server: move everything
    alive after start-up (modules, the service) to the permanent generation, so that
    collections walk only what traffic creates, and collect the young generation less
    often.  Measured in docs/performance.md (1 KiB wrk, session running: +20-60 % req/s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
