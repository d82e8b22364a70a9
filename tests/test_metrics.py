"""Unit tests of postcap.metrics, the store's write health, /readyz, the dispatcher's
call hook and the log formats (Clock, StringTransport, in-memory requests)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import error, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest

from postcap._version import __version__
from postcap.control.dispatch import JSONRPCDispatcher, NotFound
from postcap.control.readiness import ReadinessResource, StatsMethods
from postcap.logs import REDACTED, Redactor, json_line, observer_for
from postcap.metrics import (
    Histogram,
    ReactorLagMonitor,
    StorageStats,
    Tally,
    build_registry,
    status_class,
)
from postcap.sinks import history
from postcap.sinks.availability import WriteHealth
from postcap.sinks.history import HistoryStoreClosed, SQLiteHistoryStore
from postcap.tap import Options
from postcap.testing import make_session, make_transaction
from tests.test_proxy_unit import OK_HELLO, ProxyTestCase, request


def scratch_path(case: SynchronousTestCase) -> str:
    """A path in a fresh temporary directory, removed after the test."""
    directory = tempfile.mkdtemp(prefix="postcap-metrics-")
    case.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "scratch")


def families(registry: Any) -> dict[str, Any]:
    text = generate_latest(registry).decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(family: Any, suffix: str = "", **labels: str) -> float:
    for entry in family.samples:
        if entry.name == family.name + suffix and entry.labels == labels:
            return entry.value
    raise KeyError((family.name + suffix, labels))


class TallyTests(SynchronousTestCase):
    def test_status_classes(self) -> None:
        self.assertEqual([status_class(s) for s in (101, 200, 304, 404, 599, None, 42, 600)],
                         ["1xx", "2xx", "3xx", "4xx", "5xx", "none", "none", "none"])

    def test_label_values_stay_in_fixed_sets(self) -> None:
        tally = Tally()
        tally.request_answered(200, "HTTP/1.1")
        tally.request_answered(200, "HTTP/9")
        tally.request_answered(None, "HTTP/2")
        tally.upstream_error("refused")
        tally.upstream_error("something.example.com")
        self.assertEqual(tally.requests, {("2xx", "HTTP/1.1"): 1, ("2xx", "other"): 1,
                                          ("none", "HTTP/2"): 1})
        self.assertEqual(tally.upstream_errors, {"refused": 1, "other": 1})

    def test_connections_by_kind(self) -> None:
        tally = Tally()
        tally.connection_opened("websocket")
        tally.connection_opened("client")
        tally.connection_closed("client")
        self.assertEqual(tally.connections, {"client": 0, "tunnel": 0, "websocket": 1})

    def test_histogram_buckets_and_quantiles(self) -> None:
        histogram = Histogram((0.1, 1.0))
        for observed in (0.05, 0.1, 0.5, 3.0):
            histogram.observe(observed)
        self.assertEqual(histogram.cumulative(), [("0.1", 2), ("1.0", 3), ("+Inf", 4)])
        self.assertEqual(histogram.count, 4)
        self.assertAlmostEqual(histogram.sum, 3.65)
        self.assertEqual(histogram.quantile(0.5), 0.1)
        self.assertEqual(histogram.quantile(0.99), 1.0)  # +Inf: the largest finite bound
        self.assertIsNone(Histogram().quantile(0.5))


class CollectorTests(SynchronousTestCase):
    def test_every_contract_metric_is_exported_from_the_tally_and_the_store(self) -> None:
        tally, storage = Tally(), StorageStats()
        tally.request_answered(204, "HTTP/2")
        tally.bytes_upstream, tally.bytes_downstream = 10, 20
        tally.connection_opened("tunnel")
        tally.upstream_error("tls")
        tally.capture_filtered()
        tally.rpc_call("session.start", None)
        tally.rpc_call("other", -32601)
        tally.reactor_lag.observe(0.2)
        storage.written, storage.dropped, storage.pending = 5, 2, 3
        storage.available = False
        storage.write_seconds.observe(0.004)
        found = families(build_registry(tally, lambda: storage))

        self.assertEqual(sample(found["postcap_proxy_requests"], "_total",
                                status_class="2xx", http_version="HTTP/2"), 1)
        self.assertEqual(sample(found["postcap_proxy_requests"], "_total",
                                status_class="5xx", http_version="HTTP/1.1"), 0)
        self.assertEqual(sample(found["postcap_proxy_bytes"], "_total", direction="downstream"), 20)
        self.assertEqual(sample(found["postcap_proxy_connections"], kind="tunnel"), 1)
        self.assertEqual(found["postcap_proxy_connections"].type, "gauge")
        self.assertEqual(sample(found["postcap_upstream_errors"], "_total", cause="tls"), 1)
        captures = found["postcap_capture_transactions"]
        self.assertEqual([sample(captures, "_total", outcome=o) for o in
                          ("stored", "filtered", "dropped")], [5, 1, 2])
        self.assertEqual(sample(found["postcap_storage_available"]), 0)
        self.assertEqual(sample(found["postcap_storage_pending"]), 3)
        self.assertEqual(sample(found["postcap_storage_write_seconds"], "_bucket", le="0.005"), 1)
        self.assertEqual(found["postcap_reactor_lag_seconds"].type, "histogram")
        self.assertEqual(sample(found["postcap_reactor_lag_seconds"], "_bucket", le="0.1"), 0)
        self.assertEqual(sample(found["postcap_reactor_lag_seconds"], "_count"), 1)
        self.assertEqual(sample(found["postcap_rpc_calls"], "_total",
                                method="other", code="-32601"), 1)
        self.assertEqual(sample(found["postcap_build_info"], version=__version__), 1)
        self.assertIn("process_open_fds", found)
        self.assertIn("process_max_fds", found)


class ReactorLagTests(SynchronousTestCase):
    def test_on_time_calls_show_no_lag_and_a_late_one_shows_how_late(self) -> None:
        clock, histogram = Clock(), Histogram()
        monitor = ReactorLagMonitor(clock, histogram, interval=0.1)
        monitor.start()
        clock.pump([0.1] * 5)
        self.assertEqual(histogram.count, 5)
        self.assertAlmostEqual(histogram.sum, 0.0)
        clock.advance(0.35)  # the reactor was blocked: the call due at +0.1 runs at +0.35
        self.assertEqual(histogram.count, 6)
        self.assertAlmostEqual(histogram.sum, 0.25)
        clock.advance(0.05)  # back on its schedule
        self.assertEqual(histogram.count, 7)
        self.assertAlmostEqual(histogram.sum, 0.25)
        monitor.stop()
        self.assertFalse(clock.getDelayedCalls())


class WriteHealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.stats = StorageStats()
        self.probes: list[Deferred[None]] = []
        self.changes: list[tuple[bool, str | None]] = []

        def probe() -> Deferred[None]:
            self.probes.append(Deferred())
            return self.probes[-1]

        self.health = WriteHealth(self.clock, probe, self.stats, "test.sqlite3")
        self.health.listeners.append(lambda *change: self.changes.append(change))

    def test_a_failed_write_makes_it_unavailable_until_a_probe_passes(self) -> None:
        self.health.write_failed("database is locked")
        self.assertEqual((self.stats.available, self.stats.reason), (False, "database is locked"))
        self.clock.advance(WriteHealth.probe_interval)
        self.probes[0].errback(RuntimeError("disk I/O error"))
        self.assertEqual(self.stats.reason, "disk I/O error")
        self.clock.advance(WriteHealth.probe_interval)
        self.assertEqual(len(self.probes), 2)
        self.probes[1].callback(None)
        self.assertTrue(self.stats.available)
        self.assertEqual(self.changes, [(False, "database is locked"), (True, None)])
        self.clock.advance(10 * WriteHealth.probe_interval)
        self.assertEqual(len(self.probes), 2)  # no probing while available

    def test_a_write_that_succeeds_ends_the_probing(self) -> None:
        self.health.write_failed("locked")
        self.health.write_succeeded()
        self.assertTrue(self.stats.available)
        self.clock.advance(WriteHealth.probe_interval)
        self.assertEqual(self.probes, [])

    def test_close_stops_probing(self) -> None:
        self.health.write_failed("locked")
        self.health.close()
        self.assertFalse(self.stats.available)
        self.assertFalse(self.clock.getDelayedCalls())


class ReadinessTests(SynchronousTestCase):
    def render(self, reasons: list[str]) -> tuple[int, Any]:
        request = DummyRequest([b""])
        body = ReadinessResource(lambda: reasons).render_GET(request)
        return request.responseCode or 200, json.loads(body)

    def test_ready_and_not_ready(self) -> None:
        self.assertEqual(self.render([]), (200, {"ready": True}))
        self.assertEqual(self.render(["draining", "proxy disabled"]),
                         (503, {"ready": False, "reasons": ["draining", "proxy disabled"]}))

    def test_server_stats_sums_the_tally(self) -> None:
        tally, storage = Tally(), StorageStats()
        tally.request_answered(200, "HTTP/1.1")
        tally.request_answered(502, "HTTP/1.1")
        tally.upstream_error("refused")
        tally.reactor_lag.observe(0.003)
        stats = StatsMethods(tally, lambda: storage, lambda: 12.5).server_stats()
        self.assertEqual(stats["requests"], {"total": 2, "by_status_class": {"2xx": 1, "5xx": 1},
                                             "by_http_version": {"HTTP/1.1": 2}})
        self.assertEqual(stats["upstream_errors"], {"total": 1, "by_cause": {"refused": 1}})
        self.assertEqual(stats["reactor_lag"]["p99_s"], 0.005)
        self.assertTrue(stats["storage"]["available"])
        json.dumps(stats)


class DispatcherHookTests(SynchronousTestCase):
    def test_calls_are_reported_with_known_names_only(self) -> None:
        calls: list[tuple[str, int | None]] = []
        dispatcher = JSONRPCDispatcher(on_call=lambda *call: calls.append(call))
        dispatcher.register("a.ok", lambda: 1)

        def missing() -> None:
            raise NotFound("session", "x")

        dispatcher.register("a.missing", missing)
        dispatcher.register("a.bug", lambda: 1 / 0)
        for method in ("a.ok", "a.missing", "a.bug", "made.up"):
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method}).encode()
            self.successResultOf(Deferred.fromCoroutine(dispatcher.handle(body)))
        self.flushLoggedErrors(ZeroDivisionError)
        self.assertEqual(calls, [("a.ok", None), ("a.missing", -32004), ("a.bug", -32603),
                                 ("other", -32601)])


class LogTests(SynchronousTestCase):
    def event(self, **fields: Any) -> dict[str, Any]:
        return {"log_level": LogLevel.warn, "log_time": time.time(),
                "log_namespace": "postcap.test", **fields}

    def test_json_line_is_flat(self) -> None:
        line = json_line(self.event(log_format="{status} for {url}", status=502, url="http://x/",
                                    unserializable=object()))
        record = json.loads(line)
        self.assertEqual(line.count("\n"), 1)
        self.assertEqual(record["level"], "warn")
        self.assertEqual(record["namespace"], "postcap.test")
        self.assertEqual(record["message"], "502 for http://x/")
        self.assertEqual((record["status"], record["url"]), (502, "http://x/"))
        self.assertNotIn("unserializable", record)
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+0000$")

    def test_secrets_are_redacted_in_fields_and_text(self) -> None:
        redactor = Redactor(lambda: ["TOKEN1234567"])
        clean = redactor.event(self.event(
            log_format="{line} {headers} {query}",
            line="Authorization: Basic dXNlcjpwYXNz",
            headers=[(b"Cookie", b"sid=1"), (b"Set-Cookie", b"a=b; Path=/"),
                     (b"Accept", b"text/html")],
            query="/rpc?token=TOKEN1234567"))
        record = json.loads(json_line(clean))
        for secret in ("dXNlcjpwYXNz", "sid=1", "a=b", "TOKEN1234567"):
            self.assertNotIn(secret, json.dumps(record))
        self.assertEqual(record["headers"][2], ["Accept", "text/html"])
        self.assertIn(f"Authorization: {REDACTED}", record["message"])
        self.assertEqual(redactor.text("Bearer abc4defghijkl now"), f"Bearer {REDACTED} now")
        self.assertEqual(redactor.text("basic authentication failed"), "basic authentication failed")

    def test_observer_follows_twistd_options(self) -> None:
        self.assertIsNone(observer_for(None, "json", lambda: ()))
        self.assertIsNone(observer_for({"syslog": True, "logfile": None}, "text", lambda: ()))
        path = scratch_path(self)
        observer = observer_for({"logfile": path, "nodaemon": True}, "json", lambda: ["s3cr3t"])
        observer(self.event(log_format="token {t}", t="s3cr3t"))
        with open(path, encoding="utf-8") as written:
            record = json.loads(written.read())
        self.assertEqual(record["message"], f"token {REDACTED}")


class OptionTests(SynchronousTestCase):
    def test_log_format_and_metrics_endpoint_are_checked(self) -> None:
        options = Options()
        options.parseOptions(["--metrics", "tcp:9464:interface=127.0.0.1", "--log-format", "json",
                              "--data-dir", scratch_path(self)])
        self.assertEqual((options["metrics"], options["log-format"]),
                         ("tcp:9464:interface=127.0.0.1", "json"))
        from twisted.python.usage import UsageError

        for argv in (["--log-format", "xml"], ["--metrics", "nonsense:1"]):
            with self.assertRaises(UsageError):
                Options().parseOptions(argv + ["--data-dir", scratch_path(self)])



class StoreStatsTests(TestCase):
    """The history store reports its own figures (real SQLite, in-process pool)."""

    async def open_store(self) -> SQLiteHistoryStore:
        directory = tempfile.mkdtemp(prefix="postcap-metrics-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.patch(history, "BUSY_TIMEOUT_MS", 20)
        store = SQLiteHistoryStore(os.path.join(directory, "history.sqlite3"))
        self.addCleanup(store.close)
        await store.open()
        await store.save_session(make_session(id="s1"))
        return store

    async def test_written_pending_and_latency(self) -> None:
        store = await self.open_store()
        writes = [store.transactionCompleted(make_transaction(session_id="s1")) for _ in range(3)]
        self.assertEqual(store.stats.pending, 3)
        await store.flush()
        for write in writes:
            await write
        self.assertEqual((store.stats.pending, store.stats.written, store.stats.dropped), (0, 3, 0))
        self.assertEqual(store.stats.write_seconds.count, 1)
        self.assertTrue(store.stats.available)

    async def test_a_locked_database_is_unavailable_until_the_lock_goes(self) -> None:
        store = await self.open_store()
        store.health.probe_interval = 0.05
        blocker = sqlite3.connect(store.path, isolation_level=None)
        self.addCleanup(blocker.close)
        blocker.execute("BEGIN EXCLUSIVE")
        failed = store.transactionCompleted(make_transaction(session_id="s1"))
        await self.assertFailure(store.flush(), sqlite3.OperationalError)
        await self.assertFailure(failed, sqlite3.OperationalError)
        self.assertEqual((store.stats.available, store.stats.dropped, store.stats.pending),
                         (False, 1, 0))
        self.assertIn("locked", store.stats.reason)
        blocker.execute("ROLLBACK")
        for _ in range(100):
            if store.stats.available:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertTrue(store.stats.available)
        self.assertIsNone(store.stats.reason)
        self.flushLoggedErrors(sqlite3.OperationalError)

    async def test_a_closed_store_drops(self) -> None:
        store = await self.open_store()
        await store.close()
        await self.assertFailure(store.transactionCompleted(make_transaction(session_id="s1")),
                                 HistoryStoreClosed)
        self.assertEqual(store.stats.dropped, 1)
        self.assertFalse(store.stats.available)


class DocumentedQueriesTests(SynchronousTestCase):
    """The Grafana dashboard and the alert rules in docs/ name only exported metrics."""

    def test_every_metric_named_in_the_docs_is_exported(self) -> None:
        import re
        from pathlib import Path

        docs = Path(__file__).resolve().parents[1] / "docs"
        dashboard = json.loads((docs / "grafana-dashboard.json").read_text("utf-8"))
        expressions = [target["expr"] for panel in dashboard["panels"]
                       for target in panel["targets"]]
        self.assertGreaterEqual(len(expressions), 12)
        operations = (docs / "operations.md").read_text("utf-8")
        exported = set()
        tally = Tally()
        tally.rpc_call("server.info", None)
        for name, family in families(build_registry(tally, StorageStats)).items():
            exported.add(name)
            exported.update(sample.name for sample in family.samples)
        named = set(re.findall(r"\b((?:postcap|process)_[a-z_]+)\b",
                               " ".join(expressions) + operations))
        named.discard("process_")
        self.assertFalse(sorted(named - exported))
        for alert in ("PostcapStorageUnavailable", "PostcapCapturesDropped", "PostcapReactorLag",
                      "PostcapFileDescriptors", "PostcapUpstreamErrorRatio"):
            self.assertIn(alert, operations)


class ProxyTallyTests(ProxyTestCase):
    """The proxy counts into its tally (StringTransport, fake network)."""

    def test_requests_errors_bytes_and_connections(self) -> None:
        tally = self.factory.tally
        client = self.client()
        client.send(request())
        self.network.last.respond(OK_HELLO)
        self.network.failures["down.test"] = error.ConnectionRefusedError()
        client.send(request(target=b"http://down.test/"))
        old = self.client()
        old.send(b"GET http://example.test/ HTTP/1.0\r\nHost: example.test\r\n\r\n")
        self.network.last.respond(OK_HELLO)
        bad = self.client()
        bad.send(b"GET http://example.test/ HTTP/1.1\r\nX: \x00\r\n\r\n")
        self.assertEqual(tally.requests, {("2xx", "HTTP/1.1"): 1, ("5xx", "HTTP/1.1"): 1,
                                          ("2xx", "HTTP/1.0"): 1, ("4xx", "HTTP/1.1"): 1})
        self.assertEqual(tally.upstream_errors, {"refused": 1})
        self.assertEqual(tally.bytes_downstream, 2 * len(OK_HELLO))
        self.assertEqual(tally.bytes_upstream, self.factory.counters()["bytes_from_clients"])
        self.assertEqual(tally.connections["client"], len(self.factory.connections))
        for each in (client, old, bad):
            each.lose()
        self.assertEqual(tally.connections["client"], 0)

    def test_a_tunnel_is_a_request_and_a_connection_while_open(self) -> None:
        tally = self.factory.tally
        client = self.client()
        client.send(b"CONNECT example.test:443 HTTP/1.1\r\n\r\n")
        upstream = self.network.connections[-1]
        self.assertEqual(tally.connections["tunnel"], 1)
        self.assertEqual(tally.requests, {("2xx", "HTTP/1.1"): 1})
        upstream.respond(b"0123456789")
        self.assertEqual(tally.bytes_downstream, 10)
        upstream.close()
        self.assertEqual(tally.connections["tunnel"], 0)

    def test_a_client_leaving_mid_exchange_is_a_request_without_status(self) -> None:
        self.network.hanging.add("slow.test")
        client = self.client()
        client.send(request(target=b"http://slow.test/"))
        client.lose()
        self.assertEqual(self.factory.tally.requests, {("none", "HTTP/1.1"): 1})


class StatsCommandTests(SynchronousTestCase):
    """``postcapctl stats`` against a fake client: rates, the terminal refresh, once."""

    def setUp(self) -> None:
        self.uptime = 10.0
        self.requests = 0

    def call(self, method: str) -> dict[str, Any]:
        assert method == "server.stats"
        tally, storage = Tally(), StorageStats()
        tally.requests[("2xx", "HTTP/1.1")] = self.requests
        stats = StatsMethods(tally, lambda: storage, lambda: self.uptime).server_stats()
        self.uptime += 2.0
        self.requests += 50
        return stats

    def args(self, **given: Any) -> Any:
        import argparse

        return argparse.Namespace(**{"interval": 2.0, "json": False, "once": False, **given})

    def test_once_when_not_a_terminal(self) -> None:
        import io

        from postcap.ctl_stats import cmd_stats

        result, render = cmd_stats(self, self.args(), stdout=io.StringIO(), sleep=lambda s: None)
        self.assertEqual(result["rates"]["requests_per_s"], 25.0)
        self.assertIn("requests      25.0/s   total 50", render(result))
        self.assertIn("storage       available", render(result))

    def test_refreshes_on_a_terminal_until_interrupted(self) -> None:
        import io

        from postcap.ctl_stats import cmd_stats

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        screen, naps = Terminal(), []

        def sleep(seconds: float) -> None:
            naps.append(seconds)
            if len(naps) == 3:
                raise KeyboardInterrupt

        result, _ = cmd_stats(self, self.args(), stdout=screen, sleep=sleep)
        self.assertEqual(screen.getvalue().count("\x1b[H\x1b[2J"), 2)
        self.assertEqual(naps, [2.0, 2.0, 2.0])
        self.assertEqual(result["requests"]["total"], 100)
