"""HTTP service: a FastAPI app around one loaded :class:`~movie_genres.predictor.Predictor`, plus a small web page.

Endpoints (see also ``GET /docs`` and ``GET /openapi.json``):

* ``POST /predict`` - multipart form with an optional ``poster`` file and an optional ``overview`` text (at least one);
  answers the Predictor's dict: every genre's probability, the decided genres, the inputs used, model and version.
* ``POST /predict/batch`` - multipart form with indexed fields ``poster_0``, ``overview_0``, ``poster_1``, ... ;
  film *i* is made of ``poster_<i>`` and/or ``overview_<i>``; answers ``{"results": [one dict per film, in order]}``.
* ``POST /explain`` - the same form plus an optional ``genre`` (names, comma separated): for each decided (or asked)
  genre, the overview's words and a grid over the poster weighted by occlusion, and the genre from each input alone.
* ``GET /health`` (503 ``"loading"`` until the model has answered a warm-up film), ``GET /genres``, ``GET /`` (the
  page), ``GET /docs`` (Swagger UI) and ``GET /redoc``, from local assets (:mod:`.docs`).

Hard to break: bodies are streamed with a size cap per part and per request and a deadline (:mod:`.multipart`);
images are checked for format and pixel count before decoding (:mod:`.routes`), and the pixels decoded at once are
bounded across requests; an explanation takes the model in short turns after predictions (:mod:`.resources`); every
failure is a JSON ``{"detail": "..."}`` with a 4xx status (5xx only if the model itself fails), and the service keeps
serving. Limits: :mod:`.limits`.

Run it with ``movie-genres serve RUN_DIR`` (``movie-genres serve --help`` lists the limits).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from movie_genres.io import available_cores
from movie_genres.service import routes
from movie_genres.service.docs import add_docs
from movie_genres.service.limits import DEFAULT_CONCURRENCY, make_limits
from movie_genres.service.multipart import ApiError
from movie_genres.service.resources import Budget, ModelLock
from movie_genres.service.schemas import (
    BATCH_DOC,
    ERRORS,
    EXPLAIN_DOC,
    HEALTH_ERRORS,
    PREDICT_DOC,
    BatchPrediction,
    Explanation,
    Genres,
    Health,
    Prediction,
    batch_form,
    explain_form,
    predict_form,
)

log = logging.getLogger("movie_genres.service")

WARM_UP_OVERVIEW = "A warm-up film: a quiet town, a stranger, and a secret that will not stay buried."


class _SecurityHeaders:
    """Pure ASGI middleware: nosniff everywhere, and a CSP that forbids anything not served by us (a page that sets
    its own, as /docs and /redoc do for their inline scripts, keeps it)."""

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
                if not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", self.CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    log.info("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.detail)
    # a body refused part way (too slow, too large) is not read to its end: the connection is closed after the
    # answer, or it would stay open waiting for the rest (and hold one of the server's connection slots)
    close = {"Connection": "close"} if exc.status in (408, 413) else None
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=close)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)


def warm_up(state: Any) -> None:
    """One dummy film through every input the model reads (a JPEG poster decoded as uploads are, and an overview),
    so that loading the encoders is paid here, not by the first request; then ``state.status`` is ``"ok"``."""
    started = time.perf_counter()
    try:
        poster = None
        if "poster" in state.modalities:
            buf = io.BytesIO()
            Image.new("RGB", (182, 268), (96, 110, 140)).save(buf, "JPEG")
            poster = routes.decode_poster(buf.getvalue(), state.limits)
        overview = WARM_UP_OVERVIEW if "overview" in state.modalities else None
        with state.model_lock:
            state.predictor.predict_one(poster=poster, overview=overview)
    except Exception as exc:  # noqa: BLE001 - reported by /health, the service keeps running
        log.exception("warm-up failed")
        state.status_detail = f"the warm-up prediction failed ({type(exc).__name__}: {exc})"
        state.status = "error"
        return
    state.status_detail = None
    state.status = "ok"
    log.info("warmed up in %.1f s", time.perf_counter() - started)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The warm-up runs beside the server, so /health can answer "loading" meanwhile; a request that comes first waits
    # for it on the model lock.
    threading.Thread(target=warm_up, args=(app.state,), name="movie-genres-warm-up", daemon=True).start()
    yield


def create_app(predictor: Any, **limits: int) -> FastAPI:
    """The FastAPI app around an already loaded ``predictor`` (the interface of ``movie_genres.predictor.Predictor``).

    ``limits``: the fields of :class:`~movie_genres.service.limits.Limits` (``max_upload_bytes``, ``max_batch``, ...).
    The warm-up starts with the app's lifespan (uvicorn and ``with TestClient(app)`` run it). Serving never writes
    the training feature cache.
    """
    checked = make_limits(**limits)
    featurizer = getattr(predictor, "featurizer", None)
    if featurizer is not None:
        featurizer.write_cache = False  # request features never go into the persistent feature cache
    genres = [str(g) for g in predictor.genres]
    model_name, version = str(predictor.model_name), str(predictor.version)
    reads = set(getattr(predictor, "modalities", None) or ("poster", "overview"))
    modalities = [m for m in ("poster", "overview") if m in reads]

    app = FastAPI(
        title="movie-genres",
        version=version,
        description=(f"Predicts a film's genres ({len(genres)} genres, multi-label) from its poster and/or overview. "
                     f"Model `{model_name}` {version}, reads: {', '.join(modalities)}.\n\n"
                     "`POST /predict` takes one film, `POST /predict/batch` several (indexed form fields "
                     "`poster_<i>` / `overview_<i>`), both as multipart/form-data; `POST /explain` says why (same form, optional "
                     "`genre`). The web page is at `/`.\n\n"
                     "Errors are JSON `{\"detail\": \"...\"}`: 400 malformed multipart, 408 body not sent in time, 413 "
                     "too large (upload, request, pixels), 415 not multipart, 422 bad input, 500 model failure. `/health` is 503 "
                     "until the model has warmed up."),
        docs_url=None, redoc_url=None,  # the default pages load Swagger/ReDoc from a CDN; add_docs serves them locally
        lifespan=_lifespan,
    )
    state = app.state
    state.predictor, state.limits = predictor, checked
    state.genres, state.model_name, state.version, state.modalities = genres, model_name, version, modalities
    state.model_lock = ModelLock()  # one model call at a time, predictions before an explanation's turns
    state.decode_slots = threading.BoundedSemaphore(max(1, min(4, available_cores())))  # decoding threads at once
    state.pixels = Budget(checked.max_decoding_pixels)  # decoded poster pixels held at once, all requests together
    state.explaining = Budget(1)  # explanations at once
    state.status, state.status_detail = "loading", "the model is warming up"

    app.add_middleware(_SecurityHeaders)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Exception, _unexpected)

    app.add_api_route("/predict", routes.predict, methods=["POST"], response_model=Prediction, responses=ERRORS,
                      summary="Genres of one film", description=PREDICT_DOC, openapi_extra=predict_form(checked))
    app.add_api_route("/predict/batch", routes.predict_batch, methods=["POST"], response_model=BatchPrediction,
                      responses=ERRORS, summary="Genres of several films", description=BATCH_DOC,
                      openapi_extra=batch_form(checked))
    app.add_api_route("/explain", routes.explain, methods=["POST"], response_model=Explanation, responses=ERRORS,
                      summary="Why one film got its genres", description=EXPLAIN_DOC,
                      openapi_extra=explain_form(checked))
    app.add_api_route("/health", routes.health, methods=["GET"], response_model=Health, responses=HEALTH_ERRORS,
                      summary="Is the service ready, and which model does it serve")
    app.add_api_route("/genres", routes.list_genres, methods=["GET"], response_model=Genres,
                      summary="All genre names, in schema order")
    app.add_api_route("/", routes.index, methods=["GET"], include_in_schema=False)
    add_docs(app)
    app.mount("/static", StaticFiles(directory=routes.STATIC_DIR), name="static")
    return app


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
          limit_concurrency: int = DEFAULT_CONCURRENCY, threshold=None, top_k: int | None = None, **limits: int) -> None:
    """Load the run folder once, then serve it with uvicorn until interrupted.

    ``limits``: ``max_upload_bytes``, ``max_overview_chars``, ``max_batch`` and the others of
    :class:`~movie_genres.service.limits.Limits`, checked before the run is loaded.
    ``limit_concurrency``: more open requests than this are answered 503 at once instead of piling up in memory.
    ``threshold`` / ``top_k``: decide otherwise than the run's thresholds (``Predictor.with_decisions``).
    """
    import uvicorn

    from movie_genres.predictor import Predictor  # lazy: the model stack is heavy, and this module imports without it

    make_limits(**limits)
    if not isinstance(limit_concurrency, int) or isinstance(limit_concurrency, bool) or limit_concurrency < 1:
        raise ValueError(f"limit_concurrency must be a positive integer, got {limit_concurrency!r}")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    predictor = Predictor.load(run_dir).with_decisions(threshold, top_k)
    log.info("loaded %s (%s %s) in %.1f s", run_dir, predictor.model_name, predictor.version,
             time.perf_counter() - started)
    app = create_app(predictor, **limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level, limit_concurrency=limit_concurrency,
                timeout_keep_alive=5)
