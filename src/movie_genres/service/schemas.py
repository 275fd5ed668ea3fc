"""What the service answers: pydantic response models, the OpenAPI text of each endpoint, and the check that turns a
predictor's answer into plain JSON."""
from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from movie_genres.service.limits import Limits


class Prediction(BaseModel):
    probabilities: dict[str, float] = Field(description="every genre's probability, in schema order")
    genres: list[str] = Field(description="the decided genres (probability over the genre's tuned threshold); "
                                          "at least one")
    inputs_used: list[str] = Field(description='the inputs the model read: "poster" and/or "overview"')
    status: str = Field(default="ok", description='"ok", or "partial: <reason>" when the model answered from fewer '
                                                  "inputs than it reads (a fusion model given only an overview)")
    model: str
    version: str


class BatchPrediction(BaseModel):
    model: str
    version: str
    count: int
    results: list[Prediction] = Field(description="one prediction per film, in index order")


class WordSpan(BaseModel):
    text: str
    start: int = Field(description="offset of the word's first character in the overview (code points)")
    end: int


class WordWeight(BaseModel):
    i: int = Field(description="index into the answer's words")
    text: str
    weight: float = Field(description="the genre's probability minus its probability without this word")


class GenreExplanation(BaseModel):
    probability: float
    threshold: float
    decided: bool
    words: list[WordWeight] = Field(description="the overview's words, largest weight first ([] without an overview)")
    heatmap: list[list[float]] | None = Field(description="rows x columns: the genre's probability minus its "
                                                          "probability with that poster cell greyed out")
    by_modality: dict[str, float] | None = Field(description="the genre's probability from the poster alone, the "
                                                             "overview alone and both (models reading both inputs)")


class Explanation(BaseModel):
    model: str
    version: str
    inputs_used: list[str]
    genres: list[str] = Field(description="the decided genres")
    words: list[WordSpan] = Field(description="the overview's words with their character offsets")
    grid: list[int] | None = Field(description="[rows, columns] of the poster heatmap, or null without a poster")
    explanations: dict[str, GenreExplanation] = Field(description="one per decided genre, or per genre asked for")


class Health(BaseModel):
    status: str = Field(description='"ok" once the model has answered a warm-up film; "loading" before that, '
                                    '"error" if the warm-up failed (both with HTTP 503)')
    model: str
    version: str
    modalities: list[str]
    genres: int
    limits: dict[str, int]
    detail: str | None = Field(default=None, description="why the status is not ok")


class Genres(BaseModel):
    genres: list[str]


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong, in words")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "malformed multipart body"},
    413: {"model": ErrorOut, "description": "upload, request or image (pixel count) over the limit"},
    415: {"model": ErrorOut, "description": "not a multipart/form-data request"},
    422: {"model": ErrorOut, "description": "no input, empty or unreadable image, overview too long or not UTF-8, "
                                            "unknown field, input the model cannot read"},
    500: {"model": ErrorOut, "description": "the model failed (the service keeps running)"},
}
HEALTH_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": Health, "description": "the model is still warming up, or its warm-up failed"},
}

PREDICT_DOC = """One film. Multipart form fields (send at least one):

* `poster`: an image file (JPEG, PNG, WebP, GIF, BMP; greyscale/CMYK/transparent images are converted to RGB),
  at most `max_upload_bytes` (default 10 MB) and `max_image_pixels` pixels.
* `overview`: the plot summary, UTF-8 text, at most `max_overview_chars` characters (default 5000).

`curl -F poster=@poster.jpg -F overview="A retired hitman..." http://127.0.0.1:8000/predict`

An overview-only request may also be url-encoded (`curl --data-urlencode overview="..." .../predict`).
"""

BATCH_DOC = """Several films in one multipart form. Film *i* (0, 1, 2, ...) is made of the fields
`poster_<i>` (image file) and/or `overview_<i>` (text); every index from 0 to the highest one must have at least one
of the two; at most `max_batch` films (default 32). The answer's `results[i]` is film *i*'s prediction. If any film is
bad the whole batch is refused and the message names the film.

`curl -F poster_0=@a.jpg -F overview_0="..." -F overview_1="..." -F poster_2=@c.png http://127.0.0.1:8000/predict/batch`
"""

EXPLAIN_DOC = """Why the model gave a film its genres, by occlusion: each overview word dropped and each cell of a grid
over the poster greyed out in turn, all in a few batched forward passes. The same form as `POST /predict`, plus an
optional `genre` field (one genre name or several, comma separated; default: the decided genres).

`curl -F poster=@poster.jpg -F overview="A retired hitman..." -F genre=Action http://127.0.0.1:8000/explain`
"""


def _multipart_body(properties: dict[str, Any], pattern: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if pattern:
        schema["patternProperties"] = pattern
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def predict_form(limits: Limits) -> dict[str, Any]:
    """OpenAPI request body of ``POST /predict`` (the overview's maxLength is this app's limit)."""
    return _multipart_body({
        "poster": {"type": "string", "format": "binary", "description": "poster image file"},
        "overview": {"type": "string", "maxLength": limits.max_overview_chars, "description": "plot summary (UTF-8)"}})


def explain_form(limits: Limits) -> dict[str, Any]:
    """OpenAPI request body of ``POST /explain``."""
    body = predict_form(limits)
    props = body["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    props["genre"] = {"type": "string", "description": "genre names to explain, comma separated (default: the "
                                                       "decided genres)"}
    return body


def batch_form(limits: Limits) -> dict[str, Any]:
    """OpenAPI request body of ``POST /predict/batch``."""
    return _multipart_body(
        {"poster_0": {"type": "string", "format": "binary", "description": "film 0's poster"},
         "overview_0": {"type": "string", "description": "film 0's overview"}},
        {"^poster_[0-9]+$": {"type": "string", "format": "binary"},
         "^overview_[0-9]+$": {"type": "string", "maxLength": limits.max_overview_chars}})


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


def answer_json(answer: Any) -> dict[str, Any]:
    """A predictor's answer for one film as plain JSON; ``ValueError`` if it is not a usable prediction."""
    out = _jsonable(answer)
    if not isinstance(out, dict) or not isinstance(out.get("probabilities"), dict) or "genres" not in out:
        raise ValueError(f"the predictor returned {type(answer).__name__}, not a dict with probabilities and genres")
    return out


def explanation_json(answer: Any) -> dict[str, Any]:
    """An explanation as plain JSON; ``ValueError`` if it is not one (or holds NaN/inf)."""
    out = _jsonable(answer)
    if not isinstance(out, dict) or not isinstance(out.get("explanations"), dict) or "words" not in out:
        raise ValueError(f"the explainer returned {type(answer).__name__}, not a dict with explanations and words")
    return out
