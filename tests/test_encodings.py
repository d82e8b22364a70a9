"""Content-Encoding decoding: each coding, stacked codings, broken bodies, bombs, and the
readers that show decoded bodies (HAR, Postman collections)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from typing import Any

import brotli
import zstandard
from twisted.trial.unittest import SynchronousTestCase

from postcap.encodings import (
    SUPPORTED_CODINGS,
    content_codings,
    content_encoding_of,
    decode,
    decode_file,
    decoded_json,
)
from postcap.export.har import entry_from_detail, har_document
from postcap.export.postman import collection_document, item_from_detail
from postcap.model import Body
from postcap.sinks.memory import MemoryHistoryStore
from postcap.testing import make_transaction
from tests.schemas import assert_valid

TEXT = ("Grüße, encoded world! " * 300).encode("utf-8")
MiB = 1024 * 1024


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def encode(data: bytes, coding: str) -> bytes:
    """``data`` in one coding, as a server would send it."""
    return {
        "gzip": gzip.compress,
        "x-gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }[coding](data)


def zeros_bomb(coding: str, size: int) -> bytes:
    """``size`` zero bytes in ``coding``, compressed a MiB at a time (never held whole)."""
    piece = bytes(MiB)
    if coding == "zstd":
        zstd = zstandard.ZstdCompressor(level=1).compressobj(size=size)
        return b"".join(zstd.compress(piece) for _ in range(size // MiB)) + zstd.flush()
    if coding == "br":
        compressor = brotli.Compressor(quality=1)
        return b"".join(compressor.process(piece) for _ in range(size // MiB)) + compressor.finish()
    wbits = {"gzip": 31, "deflate": 15}[coding]
    deflater = zlib.compressobj(1, zlib.DEFLATED, wbits)
    return b"".join(deflater.compress(piece) for _ in range(size // MiB)) + deflater.flush()


class HeaderTests(SynchronousTestCase):
    def test_codings_are_listed_lower_case_without_identity(self) -> None:
        self.assertEqual(content_codings(" GZIP ,identity, br,"), ["gzip", "br"])
        self.assertEqual(content_encoding_of([["Content-Type", "text/plain"]]), None)
        self.assertEqual(content_encoding_of([["content-encoding", "identity"]]), None)
        headers = [["Content-Encoding", "gzip"], ["X-Other", "br"], ["CONTENT-ENCODING", "Br"]]
        self.assertEqual(content_encoding_of(headers), "gzip, br")

    def test_details_carry_the_content_encoding(self) -> None:
        txn = make_transaction(
            response_headers=((b"Content-Encoding", b"gzip"), (b"Content-Type", b"text/plain")),
            response_body=gzip.compress(b"hi"),
        )
        detail = txn.detail()
        self.assertEqual(detail["response"]["body"]["content_encoding"], "gzip")
        self.assertIsNone(detail["request"]["body"]["content_encoding"])
        self.assertEqual(txn.content_encoding("response"), "gzip")
        self.assertIsNone(txn.content_encoding("request"))


class DecodeTests(SynchronousTestCase):
    def test_every_coding(self) -> None:
        for coding in SUPPORTED_CODINGS:
            with self.subTest(coding=coding):
                self.assertEqual(decode(encode(TEXT, coding), coding, MiB).data, TEXT)

    def test_raw_deflate_as_many_servers_send_it(self) -> None:
        self.assertEqual(decode(raw_deflate(TEXT), "deflate", MiB).data, TEXT)

    def test_stacked_codings_are_undone_last_first(self) -> None:
        stacked = zstandard.ZstdCompressor().compress(brotli.compress(gzip.compress(TEXT)))
        result = decode(stacked, "gzip, br, zstd", MiB)
        self.assertEqual((result.data, result.truncated, result.error), (TEXT, False, None))
        self.assertIsNotNone(decode(stacked, "zstd, br, gzip", MiB).error)

    def test_gzip_members_follow_each_other(self) -> None:
        data = gzip.compress(b"one ") + gzip.compress(b"two")
        self.assertEqual(decode(data, "gzip", MiB).data, b"one two")

    def test_small_reads_of_the_source(self) -> None:
        class Trickle:
            """Hands out one byte per read, as a slow source would."""

            def __init__(self, data: bytes) -> None:
                self.data = data

            def read(self, size: int = -1) -> bytes:
                piece, self.data = self.data[:1], self.data[1:]
                return piece

        for coding in ("gzip", "deflate", "br", "zstd"):
            with self.subTest(coding=coding):
                result = decode_file(Trickle(encode(TEXT[:2000], coding)), coding, MiB)
                self.assertEqual(result.data, TEXT[:2000])

    def test_broken_bodies_say_why(self) -> None:
        for coding in ("gzip", "deflate", "br", "zstd"):
            with self.subTest(coding=coding):
                result = decode(b"\x00 this is not compressed \xff" * 3, coding, MiB)
                self.assertEqual(result.data, b"")
                self.assertTrue(result.error.startswith(coding), result.error)
        self.assertEqual(decode(b"x", "compress", MiB).error,
                         "unsupported content coding 'compress'")

    def test_a_body_cut_short_decodes_as_far_as_it_goes(self) -> None:
        sent = gzip.compress(bytes(range(256)) * 100, compresslevel=0)
        result = decode(sent[: len(sent) // 2], "gzip", MiB)
        self.assertTrue(result.truncated)
        self.assertIsNone(result.error)
        self.assertEqual(result.data, (bytes(range(256)) * 100)[: len(result.data)])
        self.assertGreater(len(result.data), 10_000)
        self.assertIsNotNone(decode(sent[:12], "gzip", MiB).error)  # not a byte came out
        self.assertTrue(decode(sent[:12], "gzip", MiB, truncated_input=True).truncated)

    def test_output_stops_at_the_limit_for_every_coding(self) -> None:
        for coding in ("gzip", "deflate", "br", "zstd"):
            with self.subTest(coding=coding):
                bomb = zeros_bomb(coding, 64 * MiB)
                result = decode(bomb, coding, 100_000)
                self.assertEqual((len(result.data), result.truncated), (100_000, True))

    def test_a_decompression_bomb_costs_the_limit_not_its_size(self) -> None:
        # 1 GiB of zeros in zstd, gzipped again: 1 GiB out of about a hundred bytes.
        bomb = gzip.compress(zeros_bomb("zstd", 1024 * MiB), compresslevel=9)
        self.assertLess(len(bomb), 1024)
        limit = 4 * MiB
        tracemalloc.start()
        try:
            result = decode(bomb, "zstd, gzip", limit)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertEqual((len(result.data), result.truncated, result.error), (limit, True, None))
        self.assertLess(peak, 2 * limit + 2 * MiB)  # the copy kept, once more while handed out

    def test_zstd_windows_beyond_8_mib_are_refused(self) -> None:
        params = zstandard.ZstdCompressionParameters(window_log=25)
        compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
        big_window = compressor.compress(TEXT) + compressor.flush()  # size unknown: 32 MiB window
        self.assertIn("zstd", decode(big_window, "zstd", MiB).error)
        small_window = zstandard.ZstdCompressor(level=19).compressobj()
        self.assertEqual(decode(small_window.compress(TEXT) + small_window.flush(), "zstd", MiB).data,
                         TEXT)


def encoded_detail(sent: bytes, coding: str = "gzip", part: str = "response",
                   content_type: bytes = b"text/plain; charset=utf-8") -> dict[str, Any]:
    headers = ((b"Content-Type", content_type), (b"Content-Encoding", coding.encode()))
    if part == "response":
        txn = make_transaction(response_headers=headers, response_body=sent)
    else:
        txn = make_transaction(method="POST", request_headers=headers, request_body=sent)
    return txn.detail()


class ReaderTests(SynchronousTestCase):
    """HAR and Postman show decoded bodies, from a store's decoded copy or by decoding."""

    def stored_detail(self, detail_source: Any) -> dict[str, Any]:
        store = MemoryHistoryStore()
        store.transactionCompleted(detail_source)
        return self.successResultOf(store.get_transaction(detail_source.id))

    def test_decoded_json_uses_the_stored_copy_or_decodes(self) -> None:
        body = encoded_detail(gzip.compress(TEXT))["response"]["body"]
        self.assertEqual(decoded_json(body)["text"], TEXT.decode())
        self.assertEqual(decoded_json(dict(body, decoded={"size": 1, "truncated": False,
                                                         "encoding": "utf-8", "text": "x"}))["text"], "x")
        self.assertEqual(decoded_json(dict(body, decode_error="bad")), {"error": "bad"})
        self.assertIsNone(decoded_json(encoded_detail(b"")["response"]["body"]))
        plain = make_transaction(response_body=b"plain").detail()["response"]["body"]
        self.assertIsNone(decoded_json(plain))

    def test_har_content_is_decoded_with_compression(self) -> None:
        sent = brotli.compress(TEXT)
        entry = entry_from_detail(encoded_detail(sent, "br"))
        content = entry["response"]["content"]
        self.assertEqual(content["text"], TEXT.decode("utf-8"))
        self.assertNotIn("encoding", content)
        self.assertEqual(content["size"], len(TEXT))
        self.assertEqual(content["compression"], len(TEXT) - len(sent))
        self.assertEqual(entry["response"]["bodySize"], len(sent))
        assert_valid("har", har_document([entry]))

    def test_har_of_a_stored_detail(self) -> None:
        txn = make_transaction(
            response_headers=((b"Content-Encoding", b"zstd"), (b"Content-Type", b"image/svg+xml")),
            response_body=encode(TEXT, "zstd"))
        content = entry_from_detail(self.stored_detail(txn))["response"]["content"]
        self.assertEqual((content["text"], content["size"]), (TEXT.decode(), len(TEXT)))

    def test_har_binary_decoded_body_is_base64(self) -> None:
        binary = bytes(range(256)) * 4
        content = entry_from_detail(encoded_detail(gzip.compress(binary), "gzip",
                                                   content_type=b"application/octet-stream"))
        content = content["response"]["content"]
        self.assertEqual(content["encoding"], "base64")
        self.assertEqual(content["size"], len(binary))

    def test_har_keeps_an_undecodable_body_as_sent(self) -> None:
        entry = entry_from_detail(encoded_detail(b"definitely not gzip", "gzip"))
        content = entry["response"]["content"]
        self.assertEqual(content["text"], "definitely not gzip")
        self.assertIn("incorrect header check", content["_decodeError"])
        self.assertNotIn("compression", content)
        assert_valid("har", har_document([entry]))

    def test_har_request_bodies_stay_as_sent(self) -> None:
        sent = gzip.compress(b'{"a": 1}')
        entry = entry_from_detail(encoded_detail(sent, part="request"))
        self.assertEqual(entry["request"]["postData"]["_encoding"], "base64")

    def test_postman_bodies_and_examples_are_decoded(self) -> None:
        request = item_from_detail(encoded_detail(gzip.compress(b'{"a": 1}'), part="request",
                                                  content_type=b"application/json"))
        self.assertEqual(request["request"]["body"]["raw"], '{"a": 1}')
        names = [h["key"].lower() for h in request["request"]["header"]]
        self.assertNotIn("content-encoding", names)  # Postman sends the body plain
        example = item_from_detail(encoded_detail(brotli.compress(TEXT), "br"))["response"][0]
        self.assertEqual(example["body"], TEXT.decode())
        assert_valid("collection", collection_document("c0ffee", "decoded", [((), request)]))

    def test_postman_keeps_an_undecodable_request_as_sent(self) -> None:
        item = item_from_detail(encoded_detail(b"plain after all", part="request"))
        self.assertEqual(item["request"]["body"]["raw"], "plain after all")
        names = [h["key"].lower() for h in item["request"]["header"]]
        self.assertIn("content-encoding", names)


class MemoryStoreLimitTests(SynchronousTestCase):
    def test_decoded_copies_stop_at_the_store_limit(self) -> None:
        store = MemoryHistoryStore(decode_limit=1000)
        txn = make_transaction(
            response_headers=((b"Content-Encoding", b"gzip"),),
            response_body=Body(size=999, captured=True, content=gzip.compress(TEXT)))
        store.transactionCompleted(txn)
        decoded = self.successResultOf(store.get_transaction(txn.id))["response"]["body"]["decoded"]
        self.assertEqual((decoded["size"], decoded["truncated"]), (1000, True))
