"""Content-Encoding: gzip, deflate, br and zstd, decoded as a stream with an output cap.

Bodies are stored as sent; readers that promise decoded content (HAR, collections,
search, the web page) use :func:`decode` on the stored bytes.  Decoding pulls the
encoded bytes through one reader per coding (``Content-Encoding: gzip, br`` was
gzipped first, so br is undone first), a piece at a time, and stops once ``limit``
decoded bytes are out: a decompression bomb costs ``limit`` bytes of memory, never
its inflated size.  A body that cannot be decoded comes back with ``error`` set
(the caller keeps the raw bytes).

This module imports nothing else of postcap.
"""

from __future__ import annotations

import base64
import io
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Protocol, Sequence

import brotli
import zstandard

__all__ = [
    "DEFAULT_DECODE_LIMIT",
    "DecodedBody",
    "SUPPORTED_CODINGS",
    "content_codings",
    "content_encoding_of",
    "decode",
    "decode_file",
    "decoded_json",
]

#: Decoded copies stop here unless told otherwise (``--max-capture-body``'s default).
DEFAULT_DECODE_LIMIT = 10 * 1024 * 1024
#: Encoded bytes read from the source at a time.
PIECE = 64 * 1024
#: zstd windows above this are refused (RFC 9659 asks decoders for 8 MiB at most).
ZSTD_MAX_WINDOW = 8 * 1024 * 1024


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ContentDecodeError(ValueError):
    """The body is not valid in the coding its headers name."""


@dataclass(frozen=True, slots=True)
class DecodedBody:
    """The outcome of decoding a body: at most ``limit`` bytes of ``data``.

    ``truncated``: decoding stopped at the limit, or the encoded bytes ended early.
    ``error``: why the body could not be decoded (``data`` is then empty).
    """

    data: bytes = b""
    truncated: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The detail's ``decoded`` shape (``text`` as utf-8, else base64)."""
        try:
            text, encoding = self.data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.data).decode("ascii"), "base64"
        return {"size": len(self.data), "truncated": self.truncated,
                "encoding": encoding, "text": text}

    def fields(self) -> dict[str, Any]:
        """What a detail's body gains: ``decoded``, or ``decode_error``."""
        if self.error is not None:
            return {"decode_error": self.error}
        return {"decoded": self.to_json()}

    def row(self) -> tuple[bytes, bool, str | None]:
        """``(data, truncated, error)``, as stored."""
        return self.data, self.truncated, self.error


# --- headers ---------------------------------------------------------------------


def content_codings(value: str) -> list[str]:
    """``"gzip, BR"`` → ``["gzip", "br"]`` (lower-cased, ``identity`` left out)."""
    codings = (token.strip().lower() for token in value.split(","))
    return [coding for coding in codings if coding and coding != "identity"]


def content_encoding_of(headers: Iterable[Sequence[str]]) -> str | None:
    """The codings of every ``Content-Encoding`` header as one value (``"gzip, br"``),
    or None when there is none."""
    codings: list[str] = []
    for name, value in headers:
        if name.lower() == "content-encoding":
            codings.extend(content_codings(value))
    return ", ".join(codings) if codings else None


# --- one reader per coding -------------------------------------------------------


class _Layer:
    """Pulls encoded bytes from ``source``; :meth:`read` hands out decoded ones.

    Subclasses implement :meth:`_step` (decode what was given, at most ``size``
    bytes; ``b""`` when more input is needed) and :meth:`_give` (take input).
    """

    name = ""

    def __init__(self, source: _Readable) -> None:
        self.source = source
        self.finished = False
        #: The encoded bytes ended before the coding's end.
        self.incomplete = False

    def read(self, size: int) -> bytes:
        while not self.finished:
            out = self._step(size)
            if out:
                return out
            if self.finished:
                break
            data = self.source.read(PIECE)
            if not data:
                self.finished = True
                self.incomplete = not self._at_end()
                break
            self._give(data)
        return b""

    def _step(self, size: int) -> bytes:
        raise NotImplementedError

    def _give(self, data: bytes) -> None:
        raise NotImplementedError

    def _at_end(self) -> bool:
        raise NotImplementedError


class _ZlibLayer(_Layer):
    """gzip (several members allowed), and deflate with or without its zlib header."""

    def __init__(self, source: _Readable, gzip: bool) -> None:
        super().__init__(source)
        self.gzip = gzip
        self.name = "gzip" if gzip else "deflate"
        self._decoder: Any = zlib.decompressobj(31) if gzip else None
        self._input = b""

    def _give(self, data: bytes) -> None:
        self._input += data

    def _step(self, size: int) -> bytes:
        decoder = self._decoder
        if decoder is None:
            if len(self._input) < 2:
                return b""
            # RFC 9110 "deflate" is zlib-wrapped; many servers send raw deflate.
            first, second = self._input[0], self._input[1]
            wrapped = first & 0x0F == 8 and (first << 8 | second) % 31 == 0
            decoder = self._decoder = zlib.decompressobj(15 if wrapped else -15)
        if decoder.eof:
            rest = decoder.unused_data + self._input
            if not rest:
                return b""  # more input may hold another gzip member
            if not (self.gzip and rest[:2] == b"\x1f\x8b"):
                self.finished = True  # anything after the end is ignored, as browsers do
                return b""
            decoder = self._decoder = zlib.decompressobj(31)
            self._input = rest
        if not self._input:
            return b""
        try:
            out = decoder.decompress(self._input, size)
        except zlib.error as problem:
            raise ContentDecodeError(f"{self.name}: {problem}") from None
        self._input = decoder.unconsumed_tail
        return out

    def _at_end(self) -> bool:
        return self._decoder is not None and self._decoder.eof


class _BrotliLayer(_Layer):
    name = "br"

    def __init__(self, source: _Readable) -> None:
        super().__init__(source)
        self._decoder = brotli.Decompressor()
        self._input = b""
        self._extra = b""

    def _give(self, data: bytes) -> None:
        self._input += data

    def _step(self, size: int) -> bytes:
        if self._extra:
            out, self._extra = self._extra[:size], self._extra[size:]
            return out
        decoder = self._decoder
        try:
            if not decoder.can_accept_more_data():
                out = decoder.process(b"", output_buffer_limit=size)
            elif self._input and not decoder.is_finished():
                data, self._input = self._input, b""
                out = decoder.process(data, output_buffer_limit=size)
            else:
                self.finished = decoder.is_finished()
                return b""
        except brotli.error as problem:
            raise ContentDecodeError(f"br: {problem or 'invalid data'}") from None
        # The output buffer may overshoot the limit a little: keep the overshoot.
        out, self._extra = out[:size], out[size:]
        return out

    def _at_end(self) -> bool:
        return bool(self._decoder.is_finished())


class _ZstdLayer(_Layer):
    """zstd frames, one after another, each window at most :data:`ZSTD_MAX_WINDOW`."""

    name = "zstd"

    def __init__(self, source: _Readable) -> None:
        super().__init__(source)
        decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self._reader = decompressor.stream_reader(source, read_size=PIECE, read_across_frames=True)

    def read(self, size: int) -> bytes:
        if self.finished:
            return b""
        try:
            out = self._reader.read(size)
        except zstandard.ZstdError as problem:
            raise ContentDecodeError(f"zstd: {problem}") from None
        if not out:
            self.finished = True
        return bytes(out)


_LAYERS: dict[str, Callable[[_Readable], _Layer]] = {
    "gzip": lambda source: _ZlibLayer(source, gzip=True),
    "x-gzip": lambda source: _ZlibLayer(source, gzip=True),
    "deflate": lambda source: _ZlibLayer(source, gzip=False),
    "br": _BrotliLayer,
    "zstd": _ZstdLayer,
}
#: The codings postcap decodes (``x-gzip`` is gzip).
SUPPORTED_CODINGS = tuple(_LAYERS)


# --- decoding --------------------------------------------------------------------


def decode_file(source: BinaryIO | _Readable, content_encoding: str, limit: int,
                truncated_input: bool = False) -> DecodedBody:
    """Decode what ``source`` holds, in ``content_encoding``, up to ``limit`` bytes.

    ``truncated_input``: the stored encoded copy was itself cut short, so the
    decoded result is flagged truncated too.
    """
    codings = content_codings(content_encoding)
    unknown = [coding for coding in codings if coding not in _LAYERS]
    if unknown:
        return DecodedBody(error=f"unsupported content coding {unknown[0]!r}")
    layers: list[_Layer] = []
    reader: _Readable = source
    for coding in reversed(codings):
        layer = _LAYERS[coding](reader)
        layers.append(layer)
        reader = layer
    out = bytearray()
    try:
        while len(out) <= limit:
            piece = reader.read(min(PIECE, limit + 1 - len(out)))
            if not piece:
                break
            out += piece
    except ContentDecodeError as problem:
        return DecodedBody(error=str(problem))
    cut = len(out) > limit
    if cut:
        del out[limit:]
    incomplete = any(layer.incomplete for layer in layers)
    if incomplete and not out and not truncated_input:
        names = ", ".join(layer.name for layer in layers if layer.incomplete)
        return DecodedBody(error=f"{names}: the body ends before its encoded data does")
    return DecodedBody(bytes(out), cut or incomplete or truncated_input)


def decode(data: bytes, content_encoding: str, limit: int,
           truncated_input: bool = False) -> DecodedBody:
    """:func:`decode_file` of bytes in memory."""
    return decode_file(io.BytesIO(data), content_encoding, limit, truncated_input)


def decoded_json(body: dict[str, Any], limit: int = DEFAULT_DECODE_LIMIT) -> dict[str, Any] | None:
    """A detail body's decoded form for readers: its ``decoded`` shape, or
    ``{"error": why}``; None when it has no content coding or nothing stored.

    Uses what the store attached; otherwise decodes the stored bytes here (details
    built outside a store, or stored before decoded copies were kept).
    """
    coding = body.get("content_encoding")
    if not coding or not body.get("captured") or not body.get("text"):
        return None
    if body.get("decoded") is not None:
        return dict(body["decoded"])
    if body.get("decode_error"):
        return {"error": body["decode_error"]}
    text = body["text"]
    raw = base64.b64decode(text) if body.get("encoding") == "base64" else text.encode("utf-8")
    result = decode(raw, coding, limit, bool(body.get("truncated")))
    return {"error": result.error} if result.error is not None else result.to_json()
