"""HTTP service: a FastAPI app around one loaded :class:`~movie_genres.predictor.Predictor`, plus a small web page.

Endpoints (see also ``GET /docs`` and ``GET /openapi.json``):

* ``POST /predict`` - multipart form with an optional ``poster`` file and an optional ``overview`` text (at least one);
  answers the Predictor's dict: every genre's probability, the decided genres, the inputs used, model and version.
* ``POST /predict/batch`` - multipart form with indexed fields ``poster_0``, ``overview_0``, ``poster_1``, ... ;
  film *i* is made of ``poster_<i>`` and/or ``overview_<i>``; answers ``{"results": [one dict per film, in order]}``.
* ``GET /health``, ``GET /genres``, ``GET /`` (the page), ``GET /docs`` (offline API page).

Hard to break: the multipart body is parsed here, streamed chunk by chunk with a size cap per part and per request (an
oversized upload is refused as soon as it crosses the limit, never buffered whole); overviews must be UTF-8 (Starlette's
own form parser silently falls back to latin-1, so it is not used); images are opened lazily and their pixel count is
checked before decoding (decompression bombs); truncated or corrupt images are refused; every failure is a JSON
``{"detail": "..."}`` with a 4xx status (5xx only if the model itself fails), and the service keeps serving.

Run it with ``movie-genres serve RUN_DIR`` or ``python -m movie_genres.service.app RUN_DIR``.
"""
from __future__ import annotations

import argparse
import io
import logging
import math
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageOps, UnidentifiedImageError

from movie_genres.features.posters import to_rgb
from pydantic import BaseModel, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

log = logging.getLogger("movie_genres.service")

STATIC_DIR = Path(__file__).with_name("static")
MIB = 1024 * 1024

# Formats a poster may come in. Pillow can open many more (EPS shells out to Ghostscript, for one): not needed here.
_WANTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "AVIF")
Image.init()
POSTER_FORMATS = tuple(f for f in _WANTED_FORMATS if f in Image.OPEN)
_FORMAT_NAMES = ", ".join("WebP" if f == "WEBP" else f for f in POSTER_FORMATS)

_BATCH_FIELD = re.compile(r"^(poster|overview)_(\d{1,6})$")
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the payload


class ApiError(Exception):
    """A request the service refuses: becomes ``{"detail": message}`` with ``status``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 10 * MIB  # one poster file
    max_overview_chars: int = 5000  # one overview
    max_batch: int = 32  # films per /predict/batch request
    max_image_pixels: int = 40_000_000  # one poster, checked before decoding (Pillow's own bomb limit is ~89 MP)
    max_batch_bytes: int = 64 * MIB  # a whole /predict/batch body
    max_batch_pixels: int = 100_000_000  # all posters of one batch together (~300 MB once decoded to RGB)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def max_predict_body(self) -> int:
        return self.max_upload_bytes + 4 * self.max_overview_chars + _MULTIPART_OVERHEAD


# ----------------------------------------------------------------------------------------------------------------------
# multipart parsing (streamed, bounded, strict UTF-8)


@dataclass
class _Part:
    name: str
    filename: str | None
    limit: int
    too_big: Callable[[], ApiError]
    data: bytearray = field(default_factory=bytearray)


class _FormReader:
    """Feed a python-multipart parser from the request stream; ``classify`` decides each part's byte limit."""

    def __init__(self, classify: Callable[[str, str | None], tuple[int, Callable[[], ApiError]]]) -> None:
        self.classify = classify
        self.parts: dict[str, _Part] = {}
        self.ended = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._hname = b""
        self._hvalue = b""
        self._current: _Part | None = None

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
        name = _strict_utf8(options[b"name"], "a form field name")
        filename = _strict_utf8(options[b"filename"], f"the file name of {name!r}") if b"filename" in options else None
        if name in self.parts:
            raise ApiError(422, f"field {name!r} was sent more than once")
        limit, too_big = self.classify(name, filename)
        self._current = self.parts[name] = _Part(name, filename, limit, too_big)

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


def _strict_utf8(raw: bytes | bytearray, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = bytes(raw[exc.start:exc.start + 1]).hex()
        raise ApiError(422, f"{what} is not valid UTF-8 (byte 0x{bad} at position {exc.start}); send UTF-8 text") \
            from None


async def _read_form(request: Request, classify: Callable[..., Any], max_body: int) -> dict[str, _Part]:
    """The request's form fields (multipart/form-data, or url-encoded for text-only forms), bounded and strict."""
    mime, params = parse_options_header(request.headers.get("content-type"))
    if mime not in (b"multipart/form-data", b"application/x-www-form-urlencoded"):
        got = request.headers.get("content-type") or "no Content-Type"
        raise ApiError(415, f"send the inputs as multipart/form-data (a form upload), not {got}")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, f"bad Content-Length: {length!r}")
        if int(length) > max_body:  # refused before reading a byte of the body
            raise ApiError(413, f"the request is {_mb(int(length))}; the limit is {_mb(max_body)}")
    if mime == b"application/x-www-form-urlencoded":
        return await _read_urlencoded(request, classify, max_body)
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
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise ApiError(413, f"the request is larger than the limit of {_mb(max_body)}")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before the upload finished") from None
    if not reader.ended:
        raise ApiError(400, "the multipart body is incomplete (no closing boundary)")
    return reader.parts


async def _read_urlencoded(request: Request, classify: Callable[..., Any], max_body: int) -> dict[str, _Part]:
    """``curl -d overview=...`` / ``requests.post(data=...)`` without files: text fields only."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise ApiError(413, f"the request is larger than the limit of {_mb(max_body)}")
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before the request finished") from None
    text = _strict_utf8(body, "the form body")
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ApiError(422, "a form value is not valid UTF-8 once percent-decoded; send UTF-8 text") from None
    parts: dict[str, _Part] = {}
    for name, value in pairs:
        if name in parts:
            raise ApiError(422, f"field {name!r} was sent more than once")
        limit, too_big = classify(name, None)
        data = value.encode("utf-8")
        if len(data) > limit:
            raise too_big()
        parts[name] = _Part(name, None, limit, too_big, bytearray(data))
    return parts


def _mb(n: int) -> str:
    return f"{n / MIB:.1f} MB" if n >= MIB else f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"


# ----------------------------------------------------------------------------------------------------------------------
# inputs


@dataclass
class _Film:
    label: str  # "" for /predict, "film 3: " in a batch
    poster: bytes | None = None
    poster_name: str | None = None
    overview: str | None = None
    image: Image.Image | None = None

    def provided(self) -> list[str]:
        return [m for m, v in (("poster", self.poster), ("overview", self.overview)) if v is not None]


def _film_from_parts(label: str, poster: _Part | None, overview: _Part | None, limits: Limits) -> _Film:
    film = _Film(label)
    if poster is not None:
        if poster.filename is None:
            raise ApiError(422, f"{label}'{poster.name}' must be a file upload (curl -F {poster.name}=@poster.jpg), "
                                "not a text field")
        # A browser form with no file chosen sends an empty part with an empty file name: that is "no poster".
        if poster.data or poster.filename:
            if not poster.data:
                raise ApiError(422, f"{label}the poster file {poster.filename!r} is empty (0 bytes)")
            film.poster, film.poster_name = bytes(poster.data), poster.filename
    if overview is not None:
        text = _strict_utf8(overview.data, f"{label}the overview").lstrip("\ufeff")
        if len(text) > limits.max_overview_chars:
            raise ApiError(422, f"{label}the overview has {len(text)} characters; the limit is "
                                f"{limits.max_overview_chars}")
        if text.strip():
            film.overview = text.strip()
    return film


def _too_big_upload(label: str, name: str, limits: Limits) -> Callable[[], ApiError]:
    return lambda: ApiError(413, f"{label}'{name}' is larger than the upload limit of {_mb(limits.max_upload_bytes)}")


def _too_long_overview(label: str, limits: Limits) -> Callable[[], ApiError]:
    return lambda: ApiError(422, f"{label}the overview is longer than the limit of {limits.max_overview_chars} "
                                 "characters")


def decode_poster(data: bytes, limits: Limits, label: str = "") -> Image.Image:
    """Bytes -> RGB ``PIL.Image`` or :class:`ApiError` (413 for oversized, 422 for unreadable images)."""
    if not data:
        raise ApiError(422, f"{label}the poster is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=POSTER_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ApiError(413, f"{label}the poster is too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ApiError(422, f"{label}the poster is not an image this service reads (accepted: {_FORMAT_NAMES})") \
            from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on garbage
        raise ApiError(422, f"{label}the poster cannot be read as an image ({type(exc).__name__}: {exc})") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ApiError(422, f"{label}the poster has no pixels ({width}x{height})")
    if width * height > limits.max_image_pixels:
        raise ApiError(413, f"{label}the poster is {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
                            f"the limit is {limits.max_image_pixels / 1e6:.0f} MP")
    try:
        img.load()  # a truncated file raises here (ImageFile.LOAD_TRUNCATED_IMAGES is left alone)
        img = ImageOps.exif_transpose(img) or img  # what the browser shows is what the model sees
        img = to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
        raise ApiError(413, f"{label}the poster is too large to decode ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001
        raise ApiError(422, f"{label}the poster {img.format or ''} file is truncated or corrupt "
                            f"({type(exc).__name__}: {exc})") from None
    return img


# ----------------------------------------------------------------------------------------------------------------------
# answers


def _jsonable(obj: Any, where: str = "answer") -> Any:
    """Predictor output -> plain JSON types (numpy scalars/arrays included); NaN/inf are a model failure."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj) if isinstance(obj, (set, frozenset)) else obj
        return [_jsonable(v, where) for v in items]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy array or scalar
        return _jsonable(obj.tolist(), where)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"the model returned {obj} in {where}")
        return obj
    return str(obj)


def _check_answer(answer: Any) -> dict[str, Any]:
    out = _jsonable(answer)
    if not isinstance(out, dict) or not isinstance(out.get("probabilities"), dict) or "genres" not in out:
        raise ValueError(f"the predictor returned {type(answer).__name__}, not a dict with probabilities and genres")
    return out


class Prediction(BaseModel):
    probabilities: dict[str, float] = Field(description="every genre's probability, in schema order")
    genres: list[str] = Field(description="the decided genres (probability over the genre's tuned threshold); "
                                          "at least one")
    inputs_used: list[str] = Field(description='the inputs the model read: "poster" and/or "overview"')
    model: str
    version: str


class BatchPrediction(BaseModel):
    model: str
    version: str
    count: int
    results: list[Prediction] = Field(description="one prediction per film, in index order")


class Health(BaseModel):
    status: str
    model: str
    version: str
    modalities: list[str]
    genres: int
    limits: dict[str, int]


class Genres(BaseModel):
    genres: list[str]


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong, in words")


_ERRORS = {
    400: {"model": ErrorOut, "description": "malformed multipart body"},
    413: {"model": ErrorOut, "description": "upload, request or image (pixel count) over the limit"},
    415: {"model": ErrorOut, "description": "not a multipart/form-data request"},
    422: {"model": ErrorOut, "description": "no input, empty or unreadable image, overview too long or not UTF-8, "
                                            "unknown field, input the model cannot read"},
    500: {"model": ErrorOut, "description": "the model failed (the service keeps running)"},
}

_PREDICT_DOC = """One film. Multipart form fields (send at least one):

* `poster`: an image file (JPEG, PNG, WebP, GIF, BMP; greyscale/CMYK/transparent images are converted to RGB),
  at most `max_upload_bytes` (default 10 MB) and `max_image_pixels` pixels.
* `overview`: the plot summary, UTF-8 text, at most `max_overview_chars` characters (default 5000).

`curl -F poster=@poster.jpg -F overview="A retired hitman..." http://127.0.0.1:8000/predict`

An overview-only request may also be url-encoded (`curl --data-urlencode overview="..." .../predict`).
"""

_BATCH_DOC = """Several films in one multipart form. Film *i* (0, 1, 2, ...) is made of the fields
`poster_<i>` (image file) and/or `overview_<i>` (text); every index from 0 to the highest one must have at least one
of the two; at most `max_batch` films (default 32). The answer's `results[i]` is film *i*'s prediction. If any film is
bad the whole batch is refused and the message names the film.

`curl -F poster_0=@a.jpg -F overview_0="..." -F overview_1="..." -F poster_2=@c.png http://127.0.0.1:8000/predict/batch`
"""


def _multipart_body(properties: dict[str, Any], pattern: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if pattern:
        schema["patternProperties"] = pattern
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


# ----------------------------------------------------------------------------------------------------------------------
# the app


class _SecurityHeaders:
    """Pure ASGI middleware: nosniff everywhere, and a CSP that forbids anything not served by us."""

    CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"content-security-policy", self.CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(predictor: Any, max_upload_bytes: int = 10 * MIB, max_overview_chars: int = 5000,
               max_batch: int = 32, **more_limits: int) -> FastAPI:
    """The FastAPI app around an already loaded ``predictor`` (the interface of ``movie_genres.predictor.Predictor``).

    ``more_limits``: ``max_image_pixels``, ``max_batch_bytes``, ``max_batch_pixels`` (see :class:`Limits`).
    """
    limits = Limits(max_upload_bytes=max_upload_bytes, max_overview_chars=max_overview_chars, max_batch=max_batch,
                    **more_limits)
    genres = [str(g) for g in predictor.genres]
    model_name, version = str(predictor.model_name), str(predictor.version)
    modalities = [m for m in ("poster", "overview") if m in set(getattr(predictor, "modalities", None)
                                                                   or ("poster", "overview"))]
    model_lock = threading.Lock()  # one inference at a time: models are not promised to be thread-safe
    decode_slots = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))  # bounds decode memory

    app = FastAPI(
        title="movie-genres",
        version=version,
        description=(f"Predicts a film's genres ({len(genres)} genres, multi-label) from its poster and/or overview. "
                     f"Model `{model_name}` {version}, reads: {', '.join(modalities)}.\n\n"
                     "`POST /predict` takes one film, `POST /predict/batch` several (indexed form fields "
                     "`poster_<i>` / `overview_<i>`), both as multipart/form-data. The web page is at `/`.\n\n"
                     "Errors are JSON `{\"detail\": \"...\"}`: 400 malformed multipart, 413 too large (upload, "
                     "request, pixels), 415 not multipart, 422 bad input, 500 model failure."),
        docs_url=None, redoc_url=None,  # the default pages load Swagger/ReDoc from a CDN; /docs is served locally
    )
    app.state.predictor = predictor
    app.state.limits = limits
    app.add_middleware(_SecurityHeaders)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        log.info("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.detail)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    def check_modalities(film: _Film) -> None:
        provided = film.provided()
        if not provided:
            raise ApiError(422, f"{film.label}send a poster, an overview or both")
        if not set(provided) & set(modalities):
            raise ApiError(422, f"{film.label}this model ({model_name}) reads only the {' and '.join(modalities)}; "
                                f"you sent only the {provided[0]}")

    def decode(film: _Film) -> None:
        if film.poster is not None:
            with decode_slots:
                film.image = decode_poster(film.poster, limits, film.label)

    def decode_all(films: list[_Film]) -> None:
        pixels = 0
        for film in films:
            decode(film)
            if film.image is not None:
                pixels += film.image.width * film.image.height
                if pixels > limits.max_batch_pixels:
                    raise ApiError(413, f"the batch's posters have over {limits.max_batch_pixels / 1e6:.0f} MP "
                                        "together (the limit): send fewer or smaller posters per batch")

    def run_model(call: Callable[[], Any], what: str) -> Any:
        try:
            with model_lock:
                return call()
        except ValueError as exc:  # the Predictor's way of saying "cannot use this input"
            log.info("predictor refused %s: %s", what, exc)
            raise ApiError(422, f"the model cannot use this input: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a model failure must not take the service down
            log.exception("predictor failed on %s", what)
            raise ApiError(500, f"the model failed on this input ({type(exc).__name__}: {exc})") from None

    def finish(answer: Any) -> dict[str, Any]:
        try:
            return _check_answer(answer)
        except ValueError as exc:
            log.error("bad predictor answer: %s", exc)
            raise ApiError(500, f"the model gave an unusable answer: {exc}") from None

    # ------------------------------------------------------------------ prediction

    @app.post("/predict", response_model=Prediction, responses=_ERRORS, summary="Genres of one film",
              description=_PREDICT_DOC, openapi_extra=_multipart_body({
                  "poster": {"type": "string", "format": "binary", "description": "poster image file"},
                  "overview": {"type": "string", "maxLength": limits.max_overview_chars,
                               "description": "plot summary (UTF-8)"}}))
    async def predict(request: Request) -> JSONResponse:
        def classify(name: str, filename: str | None) -> tuple[int, Callable[[], ApiError]]:
            if name == "poster":
                return limits.max_upload_bytes, _too_big_upload("", name, limits)
            if name == "overview":
                return 4 * limits.max_overview_chars + 8, _too_long_overview("", limits)
            raise ApiError(422, f"unknown field {name!r}; send 'poster' (file) and/or 'overview' (text)")

        parts = await _read_form(request, classify, limits.max_predict_body)
        film = _film_from_parts("", parts.get("poster"), parts.get("overview"), limits)
        check_modalities(film)
        await run_in_threadpool(decode, film)
        answer = await run_in_threadpool(
            run_model, lambda: predictor.predict_one(poster=film.image, overview=film.overview), "one film")
        return JSONResponse(finish(answer))

    @app.post("/predict/batch", response_model=BatchPrediction, responses=_ERRORS, summary="Genres of several films",
              description=_BATCH_DOC, openapi_extra=_multipart_body(
                  {"poster_0": {"type": "string", "format": "binary", "description": "film 0's poster"},
                   "overview_0": {"type": "string", "description": "film 0's overview"}},
                  {"^poster_[0-9]+$": {"type": "string", "format": "binary"},
                   "^overview_[0-9]+$": {"type": "string", "maxLength": limits.max_overview_chars}}))
    async def predict_batch(request: Request) -> JSONResponse:
        def classify(name: str, filename: str | None) -> tuple[int, Callable[[], ApiError]]:
            match = _BATCH_FIELD.match(name)
            if not match:
                raise ApiError(422, f"unknown field {name!r}; film i is sent as 'poster_<i>' (file) and/or "
                                    "'overview_<i>' (text), i = 0, 1, 2, ...")
            kind, index = match.group(1), int(match.group(2))
            if index >= limits.max_batch:
                raise ApiError(422, f"too many films: at most {limits.max_batch} per batch (indices 0 to "
                                    f"{limits.max_batch - 1}), got {name!r}")
            if kind == "poster":
                return limits.max_upload_bytes, _too_big_upload(f"film {index}: ", name, limits)
            return 4 * limits.max_overview_chars + 8, _too_long_overview(f"film {index}: ", limits)

        parts = await _read_form(request, classify, limits.max_batch_bytes)
        indices = {int(_BATCH_FIELD.match(name).group(2)) for name in parts}  # type: ignore[union-attr]
        if not indices:
            raise ApiError(422, "the batch is empty: send poster_0 and/or overview_0, poster_1 ...")
        films = [_film_from_parts(f"film {i}: ", parts.get(f"poster_{i}"), parts.get(f"overview_{i}"), limits)
                 for i in range(max(indices) + 1)]
        for film in films:
            check_modalities(film)
        await run_in_threadpool(decode_all, films)
        items = [(f.image, f.overview) for f in films]
        answers = await run_in_threadpool(run_model, lambda: predictor.predict_many(items), f"{len(films)} films")
        if not isinstance(answers, (list, tuple)) or len(answers) != len(films):
            raise ApiError(500, f"the model gave {len(answers) if hasattr(answers, '__len__') else '?'} answers "
                                f"for {len(films)} films")
        results = [finish(a) for a in answers]
        return JSONResponse({"model": model_name, "version": version, "count": len(results), "results": results})

    # ------------------------------------------------------------------ information

    @app.get("/health", response_model=Health, summary="Is the service up, and which model does it serve")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "version": version, "modalities": modalities,
                "genres": len(genres), "limits": vars(limits)}

    @app.get("/genres", response_model=Genres, summary="All genre names, in schema order")
    def list_genres() -> dict[str, Any]:
        return {"genres": genres}

    # ------------------------------------------------------------------ pages

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


# ----------------------------------------------------------------------------------------------------------------------
# running it


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
          limit_concurrency: int = 64, **limits: int) -> None:
    """Load the run folder once, then serve it with uvicorn until interrupted.

    ``limits``: ``max_upload_bytes``, ``max_overview_chars``, ``max_batch`` and the others of :class:`Limits`.
    ``limit_concurrency``: more open requests than this are answered 503 at once instead of piling up in memory.
    """
    import uvicorn

    from movie_genres.predictor import Predictor  # lazy: the model stack is heavy, and this module imports without it

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    predictor = Predictor.load(run_dir)
    log.info("loaded %s (%s %s) in %.1f s", run_dir, predictor.model_name, predictor.version,
             time.perf_counter() - started)
    app = create_app(predictor, **limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level, limit_concurrency=limit_concurrency,
                timeout_keep_alive=5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m movie_genres.service.app", description=serve.__doc__)
    parser.add_argument("run_dir", help="a run folder written by `movie-genres train`")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest poster file (default: 10)")
    parser.add_argument("--max-overview-chars", type=int, default=5000, help="longest overview (default: 5000)")
    parser.add_argument("--max-batch", type=int, default=32, help="most films per /predict/batch (default: 32)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    try:
        serve(args.run_dir, host=args.host, port=args.port, log_level=args.log_level,
              max_upload_bytes=int(args.max_upload_mb * MIB), max_overview_chars=args.max_overview_chars,
              max_batch=args.max_batch)
    except (ValueError, OSError) as exc:  # RunError (not a run folder), bad limits, port in use
        parser.exit(2, f"cannot serve {args.run_dir}: {exc}\n")


if __name__ == "__main__":
    main()
