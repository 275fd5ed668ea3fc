"""Request bodies, read by hand: multipart/form-data streamed chunk by chunk, with a byte cap per part and per request.

An oversized upload is refused as soon as it crosses its limit, never buffered whole. Text must be UTF-8 (Starlette's
own form parser silently falls back to latin-1, so it is not used). The whole body must arrive within a deadline
(``timeout`` seconds) and, after its first few seconds, at a least rate (``min_rate``), 408 otherwise: a client that
sends a byte a second cannot hold a connection slot for long (the server's ``timeout_keep_alive`` does not cover
bodies). A field name longer than ``MAX_FIELD_NAME`` characters is
refused before it is looked at, so no message or log line ever echoes more than that. Every refusal is an
:class:`ApiError`.
"""
from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

MIB = 1024 * 1024
MAX_FIELD_NAME = 100  # characters; every field this service takes is far shorter
RATE_GRACE_SECONDS = 5.0  # a body's first seconds, before its rate is checked
MAX_FILE_NAME = 255  # characters of an upload's file name (the most most file systems allow)


class ApiError(Exception):
    """A request the service refuses: becomes ``{"detail": message}`` with ``status``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# classify(field name, file name or None) -> (the part's byte limit, the error to raise past it)
Classify = Callable[[str, "str | None"], "tuple[int, Callable[[], ApiError]]"]


@dataclass
class Part:
    """One form field as received: its name, its file name (None for a text field) and its bytes."""

    name: str
    filename: str | None
    limit: int
    too_big: Callable[[], ApiError]
    data: bytearray = field(default_factory=bytearray)


def mb(n: int) -> str:
    """A byte count for messages: ``10.0 MB``, ``98 KB``, ``12 bytes``."""
    return f"{n / MIB:.1f} MB" if n >= MIB else f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"


def field_name(name: str) -> str:
    """A field name as received, refused (422, shown cut short) when it is longer than ``MAX_FIELD_NAME``."""
    if len(name) > MAX_FIELD_NAME:
        raise ApiError(422, f"a field name of {len(name):,} characters ({name[:40]!r}...); field names are at most "
                            f"{MAX_FIELD_NAME} characters")
    return name


async def body_chunks(request: Request, timeout: float | None, min_rate: int | None = None) -> AsyncIterator[bytes]:
    """``request.stream()``, with the whole body due within ``timeout`` seconds and, after its first
    ``RATE_GRACE_SECONDS``, arriving at ``min_rate`` bytes a second on average at least (408 otherwise)."""
    loop = asyncio.get_running_loop()
    stream = request.stream().__aiter__()
    started, received = loop.time(), 0

    def allowed() -> float | None:  # seconds from the start the body may take, given what has come so far
        limits = [timeout] if timeout is not None else []
        if min_rate:
            limits.append(RATE_GRACE_SECONDS + received / min_rate)
        return min(limits) if limits else None

    while True:
        budget = allowed()
        try:
            if budget is None:
                chunk = await stream.__anext__()
            else:
                left = started + budget - loop.time()
                if left <= 0:
                    raise asyncio.TimeoutError
                chunk = await asyncio.wait_for(stream.__anext__(), left)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            if timeout is not None and budget is not None and budget >= timeout:
                raise ApiError(408, f"the request body did not arrive within {timeout:g} s; send it at once") from None
            raise ApiError(408, f"the request body is arriving at under {mb(min_rate or 0)}/s ({mb(received)} in "
                                f"{loop.time() - started:.0f} s); send it at once") from None
        received += len(chunk)
        yield chunk


def strict_utf8(raw: bytes | bytearray, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = bytes(raw[exc.start:exc.start + 1]).hex()
        raise ApiError(422, f"{what} is not valid UTF-8 (byte 0x{bad} at position {exc.start}); send UTF-8 text") \
            from None


class _FormReader:
    """Feed a python-multipart parser from the request stream; ``classify`` decides each part's byte limit."""

    def __init__(self, classify: Classify) -> None:
        self.classify = classify
        self.parts: dict[str, Part] = {}
        self.ended = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._hname = b""
        self._hvalue = b""
        self._current: Part | None = None

    # python-multipart callbacks; an ApiError raised here stops the parse at once
    def on_part_begin(self) -> None:
        self._headers, self._current = [], None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((self._hname.strip().lower(), self._hvalue))
        self._hname, self._hvalue = b"", b""

    def on_headers_finished(self) -> None:
        disposition = next((v for k, v in self._headers if k == b"content-disposition"), None)
        if disposition is None:
            raise ApiError(400, "a multipart part has no Content-Disposition header")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise ApiError(400, 'a multipart part has no field name (Content-Disposition: form-data; name="...")')
        name = field_name(strict_utf8(options[b"name"], "a form field name"))
        filename = strict_utf8(options[b"filename"], f"the file name of {name!r}") if b"filename" in options else None
        if filename is not None and len(filename) > MAX_FILE_NAME:
            raise ApiError(422, f"the file name of {name!r} has {len(filename):,} characters ({filename[:40]!r}...); "
                                f"file names are at most {MAX_FILE_NAME} characters")
        if name in self.parts:
            raise ApiError(422, f"field {name!r} was sent more than once")
        limit, too_big = self.classify(name, filename)
        self._current = self.parts[name] = Part(name, filename, limit, too_big)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current
        if part is None:  # data before headers finished: malformed
            raise ApiError(400, "malformed multipart body")
        if len(part.data) + (end - start) > part.limit:
            raise part.too_big()
        part.data += data[start:end]

    def on_part_end(self) -> None:
        self._current = None

    def on_end(self) -> None:
        self.ended = True

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_part_end", "on_end")}


async def read_form(request: Request, classify: Classify, max_body: int, timeout: float | None = None,
                    min_rate: int | None = None) -> dict[str, Part]:
    """The request's form fields (multipart/form-data, or url-encoded for text-only forms), bounded and strict; the
    body is due within ``timeout`` seconds, at ``min_rate`` bytes a second at least (:func:`body_chunks`; 408)."""
    mime, params = parse_options_header(request.headers.get("content-type"))
    if mime not in (b"multipart/form-data", b"application/x-www-form-urlencoded"):
        got = request.headers.get("content-type") or "no Content-Type"
        raise ApiError(415, f"send the inputs as multipart/form-data (a form upload), not {got}")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, f"bad Content-Length: {length!r}")
        if int(length) > max_body:  # refused before reading a byte of the body
            raise ApiError(413, f"the request is {mb(int(length))}; the limit is {mb(max_body)}")
    if mime == b"application/x-www-form-urlencoded":
        return await _read_urlencoded(request, classify, max_body, timeout, min_rate)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "the multipart/form-data Content-Type has no boundary")
    reader = _FormReader(classify)
    try:
        parser = MultipartParser(boundary, reader.callbacks())
    except (FormParserError, ValueError) as exc:
        raise ApiError(400, f"bad multipart boundary: {exc}") from None
    received = 0
    try:
        async for chunk in body_chunks(request, timeout, min_rate):
            received += len(chunk)
            if received > max_body:
                raise ApiError(413, f"the request is larger than the limit of {mb(max_body)}")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before the upload finished") from None
    if not reader.ended:
        raise ApiError(400, "the multipart body is incomplete (no closing boundary)")
    return reader.parts


async def _read_urlencoded(request: Request, classify: Classify, max_body: int, timeout: float | None,
                           min_rate: int | None) -> dict[str, Part]:
    """``curl -d overview=...`` / ``requests.post(data=...)`` without files: text fields only."""
    body = bytearray()
    try:
        async for chunk in body_chunks(request, timeout, min_rate):
            body += chunk
            if len(body) > max_body:
                raise ApiError(413, f"the request is larger than the limit of {mb(max_body)}")
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before the request finished") from None
    text = strict_utf8(body, "the form body")
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ApiError(422, "a form value is not valid UTF-8 once percent-decoded; send UTF-8 text") from None
    parts: dict[str, Part] = {}
    for name, value in pairs:
        field_name(name)
        if name in parts:
            raise ApiError(422, f"field {name!r} was sent more than once")
        limit, too_big = classify(name, None)
        data = value.encode("utf-8")
        if len(data) > limit:
            raise too_big()
        parts[name] = Part(name, None, limit, too_big, bytearray(data))
    return parts
