"""The endpoints: plain functions over ``request.app.state``, which :func:`~movie_genres.service.app.create_app` fills
(``predictor``, ``limits``, ``model_lock``, ``decode_slots``, ``pixels``, ``explaining``, ``status``, ...) and wires
to paths.

Posters are decoded by the package's one poster decode, :func:`movie_genres.features.posters.open_poster`, as in
training; before that, the service reads only the image header, to refuse formats it does not take and pixel counts
over its limit (decompression bombs) before a byte is decoded.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from movie_genres.features import posters
from movie_genres.features.posters import PosterError
from movie_genres.service.limits import Limits
from movie_genres.service.multipart import ApiError, Part, mb, read_form, strict_utf8
from movie_genres.service.resources import TRIM_FROM_PIXELS, Turns, trim_heap
from movie_genres.service.schemas import answer_json, explanation_json

log = logging.getLogger("movie_genres.service")

STATIC_DIR = Path(__file__).with_name("static")

# Formats a poster may come in. Pillow can open many more (EPS shells out to Ghostscript, for one): not needed here.
_WANTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "AVIF")
Image.init()
POSTER_FORMATS = tuple(f for f in _WANTED_FORMATS if f in Image.OPEN)
_FORMAT_NAMES = ", ".join("WebP" if f == "WEBP" else f for f in POSTER_FORMATS)

_BATCH_FIELD = re.compile(r"^(poster|overview)_(\d{1,6})$")


# ----------------------------------------------------------------------------------------------------------------------
# inputs


@dataclass
class Film:
    label: str  # "" for /predict, "film 3: " in a batch
    poster: bytes | None = None
    poster_name: str | None = None
    overview: str | None = None
    image: Image.Image | None = None

    def provided(self) -> list[str]:
        return [m for m, v in (("poster", self.poster), ("overview", self.overview)) if v is not None]


def film_from_parts(label: str, poster: Part | None, overview: Part | None, limits: Limits) -> Film:
    film = Film(label)
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
        text = strict_utf8(overview.data, f"{label}the overview").lstrip("\ufeff")
        if len(text) > limits.max_overview_chars:
            raise ApiError(422, f"{label}the overview has {len(text)} characters; the limit is "
                                f"{limits.max_overview_chars}")
        if text.strip():
            film.overview = text.strip()
    return film


def _too_big_upload(label: str, name: str, limits: Limits) -> Callable[[], ApiError]:
    return lambda: ApiError(413, f"{label}'{name}' is larger than the upload limit of {mb(limits.max_upload_bytes)}")


def _too_long_overview(label: str, limits: Limits) -> Callable[[], ApiError]:
    return lambda: ApiError(422, f"{label}the overview is longer than the limit of {limits.max_overview_chars} "
                                 "characters")


def pixel_count(data: bytes, limits: Limits, label: str = "") -> int:
    """The poster's pixel count from its header alone, or :class:`ApiError` (format not taken, over the limit)."""
    if not data:
        raise ApiError(422, f"{label}the poster is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=POSTER_FORMATS) as img:
            width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ApiError(413, f"{label}the poster is too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ApiError(422, f"{label}the poster is not an image this service reads (accepted: {_FORMAT_NAMES})") \
            from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on garbage
        raise ApiError(422, f"{label}the poster cannot be read as an image ({type(exc).__name__}: {exc})") from None
    if width < 1 or height < 1:
        raise ApiError(422, f"{label}the poster has no pixels ({width}x{height})")
    if width * height > limits.max_image_pixels:
        raise ApiError(413, f"{label}the poster is {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
                            f"the limit is {limits.max_image_pixels / 1e6:.0f} MP")
    return width * height


def open_checked(data: bytes, label: str = "") -> Image.Image:
    """``open_poster(data)``, its :class:`PosterError` reasons mapped to HTTP: 413 too large, 422 anything else."""
    try:
        return posters.open_poster(data)
    except PosterError as exc:
        if exc.reason == "poster too large":
            raise ApiError(413, f"{label}the poster is too large to decode safely ({exc})") from None
        if exc.reason == "poster not an image":
            raise ApiError(422, f"{label}the poster is not an image this service reads (accepted: {_FORMAT_NAMES})") \
                from None
        if exc.reason in ("poster truncated", "poster unreadable"):
            raise ApiError(422, f"{label}the poster file is truncated or corrupt ({exc})") from None
        raise ApiError(422, f"{label}the poster cannot be used ({exc})") from None


def decode_poster(data: bytes, limits: Limits, label: str = "") -> Image.Image:
    """Bytes -> RGB ``PIL.Image`` or :class:`ApiError` (413 for oversized, 422 for unreadable images)."""
    pixel_count(data, limits, label)
    return open_checked(data, label)


def _check_headers(state: Any, films: list[Film], pixel_budget: int | None = None) -> int:
    """Every poster's header checked (and the batch's budget counted) before any decoding; returns the pixels."""
    pixels = 0
    for film in films:
        if film.poster is not None:
            pixels += pixel_count(film.poster, state.limits, film.label)
            if pixel_budget is not None and pixels > pixel_budget:
                raise ApiError(413, f"the batch's posters have over {pixel_budget / 1e6:.0f} MP together (the "
                                    "limit): send fewer or smaller posters per batch")
    return pixels


def _decode_images(state: Any, films: list[Film]) -> None:
    for film in films:
        if film.poster is not None:
            with state.decode_slots:
                film.image = open_checked(film.poster, film.label)


@contextlib.asynccontextmanager
async def _decoded(state: Any, films: list[Film], pixel_budget: int | None = None) -> AsyncIterator[None]:
    """The films' posters decoded in place for the block, within the service's budget of decoded pixels (a request
    waits for its whole need before decoding); afterwards the images are dropped and, after large ones, the heap
    trimmed (resources.py)."""
    pixels = await run_in_threadpool(_check_headers, state, films, pixel_budget)
    async with state.pixels.hold(pixels):
        try:
            await run_in_threadpool(_decode_images, state, films)
            yield
        finally:
            for film in films:
                film.image = None
    if pixels >= TRIM_FROM_PIXELS:
        await run_in_threadpool(trim_heap)


def _check_modalities(state: Any, film: Film) -> None:
    provided = film.provided()
    if not provided:
        raise ApiError(422, f"{film.label}send a poster, an overview or both")
    if not set(provided) & set(state.modalities):
        raise ApiError(422, f"{film.label}this model ({state.model_name}) reads only the "
                            f"{' and '.join(state.modalities)}; you sent only the {provided[0]}")


def _run_model(state: Any, call: Callable[[], Any], what: str, lock: bool = True) -> Any:
    """``call()`` with the model lock held (``lock=False``: the call takes it itself, in turns); errors mapped."""
    try:
        # one inference at a time: models are not promised to be thread-safe
        with state.model_lock if lock else contextlib.nullcontext():
            return call()
    except ValueError as exc:  # the Predictor's way of saying "cannot use this input"
        log.info("predictor refused %s: %s", what, exc)
        raise ApiError(422, f"the model cannot use this input: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a model failure must not take the service down
        log.exception("predictor failed on %s", what)
        raise ApiError(500, f"the model failed on this input ({type(exc).__name__}: {exc})") from None


def _finish(answer: Any) -> dict[str, Any]:
    try:
        return answer_json(answer)
    except ValueError as exc:
        log.error("bad predictor answer: %s", exc)
        raise ApiError(500, f"the model gave an unusable answer: {exc}") from None


# ----------------------------------------------------------------------------------------------------------------------
# prediction


def _film_field(name: str, limits: Limits) -> tuple[int, Callable[[], ApiError]]:
    """The byte limit and the error past it of a one-film form's ``poster`` or ``overview`` field (/predict, /explain)."""
    if name == "poster":
        return limits.max_upload_bytes, _too_big_upload("", name, limits)
    return 4 * limits.max_overview_chars + 8, _too_long_overview("", limits)


async def predict(request: Request) -> JSONResponse:
    state = request.app.state
    limits: Limits = state.limits

    def classify(name: str, filename: str | None) -> tuple[int, Callable[[], ApiError]]:
        if name in ("poster", "overview"):
            return _film_field(name, limits)
        raise ApiError(422, f"unknown field {name!r}; send 'poster' (file) and/or 'overview' (text)")

    parts = await read_form(request, classify, limits.max_predict_body, limits.body_timeout_seconds,
                            limits.min_body_rate_bytes)
    film = film_from_parts("", parts.get("poster"), parts.get("overview"), limits)
    _check_modalities(state, film)
    async with _decoded(state, [film]):
        answer = await run_in_threadpool(
            _run_model, state, lambda: state.predictor.predict_one(poster=film.image, overview=film.overview), "one film")
    return JSONResponse(_finish(answer))


async def predict_batch(request: Request) -> JSONResponse:
    state = request.app.state
    limits: Limits = state.limits

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

    parts = await read_form(request, classify, limits.max_batch_bytes, limits.body_timeout_seconds,
                            limits.min_body_rate_bytes)
    indices = {int(_BATCH_FIELD.match(name).group(2)) for name in parts}  # type: ignore[union-attr]
    if not indices:
        raise ApiError(422, "the batch is empty: send poster_0 and/or overview_0, poster_1 ...")
    films = [film_from_parts(f"film {i}: ", parts.get(f"poster_{i}"), parts.get(f"overview_{i}"), limits)
             for i in range(max(indices) + 1)]
    for film in films:
        _check_modalities(state, film)
    async with _decoded(state, films, limits.max_batch_pixels):
        items = [(f.image, f.overview) for f in films]
        answers = await run_in_threadpool(_run_model, state, lambda: state.predictor.predict_many(items),
                                          f"{len(films)} films")
        items.clear()  # the decoded images go before the heap is trimmed
    if not isinstance(answers, (list, tuple)) or len(answers) != len(films):
        raise ApiError(500, f"the model gave {len(answers) if hasattr(answers, '__len__') else '?'} answers "
                            f"for {len(films)} films")
    results = [_finish(a) for a in answers]
    return JSONResponse({"model": state.model_name, "version": state.version, "count": len(results),
                         "results": results})


# ----------------------------------------------------------------------------------------------------------------------
# explanation


def _genre_names(part: Part | None, state: Any) -> list[str] | None:
    """The ``genre`` field: one name or several separated by commas; None (the decided genres) when absent or blank."""
    if part is None:
        return None
    names = [g.strip() for g in strict_utf8(part.data, "the genre field").split(",") if g.strip()]
    for g in names:
        if g not in state.genres:
            raise ApiError(422, f"unknown genre {g!r}; GET /genres lists them")
    return names or None


async def explain(request: Request) -> JSONResponse:
    """Same form as /predict, plus an optional ``genre``: why the model gave each (decided or asked) genre."""
    from movie_genres.explanation import explain as explain_film  # lazy: needs numpy and the features stack

    state = request.app.state
    limits: Limits = state.limits

    def classify(name: str, filename: str | None) -> tuple[int, Callable[[], ApiError]]:
        if name in ("poster", "overview"):
            return _film_field(name, limits)
        if name == "genre":
            return 4096, lambda: ApiError(422, "the genre field is too long; send genre names from GET /genres")
        raise ApiError(422, f"unknown field {name!r}; send 'poster' (file) and/or 'overview' (text), and optionally "
                            "'genre' (names, comma separated)")

    parts = await read_form(request, classify, limits.max_predict_body, limits.body_timeout_seconds,
                            limits.min_body_rate_bytes)
    film = film_from_parts("", parts.get("poster"), parts.get("overview"), limits)
    genres = _genre_names(parts.get("genre"), state)
    _check_modalities(state, film)
    # one explanation at a time, its model calls in turns at low priority: predictions go in between (resources.py)
    model = Turns(state.predictor, state.model_lock)
    async with state.explaining.hold(1), _decoded(state, [film]):
        answer = await run_in_threadpool(
            _run_model, state, lambda: explain_film(model, film.image, film.overview, genres,
                                                    max_words=limits.max_explain_words), "an explanation", False)
    try:
        return JSONResponse(explanation_json(answer))
    except ValueError as exc:
        log.error("bad explanation: %s", exc)
        raise ApiError(500, f"the model gave an unusable explanation: {exc}") from None


# ----------------------------------------------------------------------------------------------------------------------
# information and pages


def health(request: Request) -> JSONResponse:
    """200 ``"ok"`` once the model has answered a warm-up film; 503 ``"loading"`` before, ``"error"`` if it failed."""
    state = request.app.state
    body: dict[str, Any] = {"status": state.status, "model": state.model_name, "version": state.version,
                            "modalities": list(state.modalities), "genres": len(state.genres),
                            "limits": asdict(state.limits)}
    if state.status != "ok":
        body["detail"] = state.status_detail
    return JSONResponse(body, status_code=200 if state.status == "ok" else 503,
                        headers={"Cache-Control": "no-store"})


def list_genres(request: Request) -> dict[str, Any]:
    return {"genres": request.app.state.genres}


def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
