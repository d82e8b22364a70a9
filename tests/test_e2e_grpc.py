"""gRPC end to end through postcap: a real grpcio client (through ``grpc_proxy``,
trusting postcap's CA) and a real grpcio server over TLS; unary and streaming
calls, with the grpc-status trailers captured."""

from __future__ import annotations

import os
from concurrent import futures
from typing import Any, Iterator

import grpc
import pytest

from tests.certs import OriginPKI
from tests.postcap_process import PostcapProcess

SERVICE = "postcap.test.Echo"
CALL_TIMEOUT = 20.0


def _identity(data: bytes) -> bytes:
    return data


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    return b"echo:" + request


def _server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for index in range(5):
        yield b"%s-%d" % (request, index)


def _client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return b"+".join(requests)


def _bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield request.upper()


@pytest.fixture(scope="module")
def grpc_origin(pki: OriginPKI) -> Iterator[int]:
    """A grpcio server over TLS with the test PKI's good certificate."""
    handlers = grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, _identity, _identity),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream, _identity, _identity),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream, _identity, _identity),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi, _identity, _identity),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handlers,))
    with open(pki.good.key, "rb") as key, open(pki.good.cert, "rb") as cert:
        credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port
    server.stop(grace=None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI) -> Iterator[PostcapProcess]:
    data_dir = tmp_path_factory.mktemp("postcap-grpc")
    with PostcapProcess(data_dir, env={"SSL_CERT_FILE": pki.ca_cert}) as running:
        yield running


@pytest.fixture
def channel(server: PostcapProcess, grpc_origin: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[grpc.Channel]:
    """A channel to the origin through postcap (grpc_proxy), trusting postcap's CA."""
    for name in ("no_proxy", "NO_PROXY", "no_grpc_proxy", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("grpc_proxy", server.proxy_url)
    with open(server.ca_path, "rb") as handle:
        credentials = grpc.ssl_channel_credentials(root_certificates=handle.read())
    with grpc.secure_channel(f"127.0.0.1:{grpc_origin}", credentials) as opened:
        yield opened


@pytest.fixture
def session(server: PostcapProcess) -> Iterator[dict[str, Any]]:
    started = server.rpc("session.start", name="grpc")
    yield started
    server.rpc("session.stop")


def _method(channel: grpc.Channel, kind: str, name: str) -> Any:
    factory = getattr(channel, kind)
    return factory(f"/{SERVICE}/{name}", request_serializer=_identity, response_deserializer=_identity)


def _trailers(detail: dict[str, Any]) -> dict[str, str]:
    return dict(detail["response"]["trailers"])


def test_unary_call_and_its_trailers_are_captured(
    server: PostcapProcess, channel: grpc.Channel, session: dict[str, Any]
) -> None:
    assert _method(channel, "unary_unary", "Unary")(b"hi", timeout=CALL_TIMEOUT) == b"echo:hi"
    with pytest.raises(grpc.RpcError) as failed:
        _method(channel, "unary_unary", "Unary")(b"fail", timeout=CALL_TIMEOUT)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert failed.value.details() == "no such thing"
    items = server.requests(session["id"])
    assert [i["url"].rsplit("/", 1)[-1] for i in items] == ["Unary", "Unary"]
    ok = server.rpc("request.get", id=items[0]["id"])
    assert ok["request"]["http_version"] == "HTTP/2"
    assert ok["response"]["http_version"] == "HTTP/2"
    assert ["content-type", "application/grpc"] in ok["request"]["headers"]
    assert _trailers(ok)["grpc-status"] == "0"
    # A call that fails at once is answered "trailers-only": one HEADERS frame that ends the stream.
    failed_detail = server.rpc("request.get", id=items[1]["id"])
    assert dict(failed_detail["response"]["headers"])["grpc-status"] == str(grpc.StatusCode.NOT_FOUND.value[0])


def test_streaming_calls(server: PostcapProcess, channel: grpc.Channel, session: dict[str, Any]) -> None:
    streamed = list(_method(channel, "unary_stream", "ServerStream")(b"n", timeout=CALL_TIMEOUT))
    assert streamed == [b"n-0", b"n-1", b"n-2", b"n-3", b"n-4"]
    joined = _method(channel, "stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=CALL_TIMEOUT)
    assert joined == b"a+b+c"
    answers = list(_method(channel, "stream_stream", "Bidi")(iter([b"x", b"y"]), timeout=CALL_TIMEOUT))
    assert answers == [b"X", b"Y"]
    items = server.requests(session["id"])
    assert len(items) == 3
    for item in items:
        detail = server.rpc("request.get", id=item["id"])
        assert _trailers(detail)["grpc-status"] == "0"
