"""Explain one prediction by occlusion: which overview words and which poster regions moved each genre.

Model-agnostic: it only calls the :class:`~movie_genres.predictor.Predictor`'s ``transform`` and ``scores``, so it
explains every model in the registry. A word's weight for a genre is the genre's probability minus its probability
with that word dropped from the overview; a poster cell's weight is the same with that cell greyed out. Positive
weights pushed the genre up. For a model that reads both inputs and a film that has both, it also gives the genre's
probability from the poster alone and from the overview alone.

Cost: all word-dropped overviews go through the featurizer together, all occluded posters together, and every
variant through the model in one ``scores`` call. Where the model reads both inputs, each variant is encoded for the
input it changes only, and the film's own poster and overview once each; the other input's model inputs are copied.

Example:
    >>> from movie_genres.explanation import word_spans
    >>> [(w["text"], w["start"], w["end"]) for w in word_spans("A ghost's house.")]
    [('A', 0, 1), ("ghost's", 2, 9), ('house', 10, 15)]
"""
from __future__ import annotations

import re

import numpy as np
from PIL import Image, ImageDraw

from movie_genres._names import did_you_mean
from movie_genres.data.text import has_surrogates
from movie_genres.predictor import SURROGATES

WORD = re.compile(r"\w+(?:['\u2019]\w+)*")  # a word, with inner apostrophes ("ghost's", "don't")
GRID = (5, 3)  # poster cells, rows x columns: near square on a 2:3 poster; 15 cells keep one explanation ~1 s of CPU
GREY = (128, 128, 128)  # an occluded cell's colour
MAX_WORDS = 200  # words explained per overview (the original BiLSTM reads 100 tokens; overviews have at most 68 words)


def word_spans(text: str | None) -> list[dict]:
    """The words of ``text`` with their character offsets (``text[start:end]`` is the word)."""
    return [{"text": m.group(), "start": m.start(), "end": m.end()} for m in WORD.finditer(text or "")]


def without_span(text: str, start: int, end: int) -> str:
    """``text`` with ``text[start:end]`` dropped (one space kept between its neighbours)."""
    return f"{text[:start].rstrip()} {text[end:].lstrip()}".strip()


def occluded_posters(image: Image.Image, grid: tuple[int, int] = GRID) -> list[Image.Image]:
    """One copy of ``image`` per grid cell (row by row), with that cell filled grey."""
    rows, cols = grid
    w, h = image.size
    out = []
    for r in range(rows):
        for c in range(cols):
            x0, x1 = c * w // cols, (c + 1) * w // cols
            y0, y1 = r * h // rows, (r + 1) * h // rows
            im = image.copy()
            ImageDraw.Draw(im).rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), fill=GREY)
            out.append(im)
    return out


def explain(predictor, poster=None, overview: str | None = None, genres=None, grid: tuple[int, int] = GRID,
            max_words: int = MAX_WORDS) -> dict:
    """Explain ``predictor``'s answer for one film.

    ``poster``: a PIL image (or a file path / bytes, opened with :func:`~movie_genres.features.posters.open_poster`)
    or None; ``overview``: text or None; ``genres``: a genre name or names to explain (default: the decided genres).

    Returns ``{"model", "version", "inputs_used", "genres" (decided), "words" (the overview's word spans:
    text, start, end), "grid" ([rows, cols] or None), "explanations": {genre: {"probability", "threshold",
    "decided", "words" (``{"i": index into words, "text", "weight"}``, largest weight first; [] without an overview),
    "heatmap" (rows x cols weights, or None without a poster), "by_modality" ({"poster", "overview", "both"}
    probabilities, or None unless the model read both inputs)}}}``. Words after the first ``max_words`` are not
    explained. A variant the model cannot read at all (an overview-only model, a one-word overview without its word)
    counts as probability 0.
    """
    rows, cols = _check_grid(grid)
    has_overview = bool((overview or "").strip())
    if poster is not None and not isinstance(poster, Image.Image):
        from movie_genres.features.posters import open_poster

        poster = open_poster(poster)
    reads_poster = poster is not None and "poster" in predictor.modalities
    reads_overview = has_overview and "overview" in predictor.modalities
    if not (reads_poster or reads_overview):
        need = " or ".join(sorted(predictor.modalities))
        raise ValueError(f"model '{predictor.model_name}' reads the {need}; this film has none to explain")
    both = reads_poster and reads_overview
    film_poster = poster if reads_poster else None
    film_overview = overview if reads_overview else None

    # the film, and (both inputs) each input alone
    base, base_ok, problems, poster_keys, overview_keys = _film_rows(predictor, film_poster, film_overview)
    if not base_ok[0]:
        raise ValueError(f"model '{predictor.model_name}' cannot read this film ({', '.join(problems.counts()) or 'no input'})")

    spans = word_spans(film_overview)[:max_words] if reads_overview else []
    parts = [(base, base_ok)]
    if spans:
        texts = [without_span(overview, s["start"], s["end"]) for s in spans]
        # the poster's model inputs are the film's own: encode only the overviews (unless inputs are not separable)
        parts.append(_variants(predictor, [None if poster_keys else film_poster] * len(texts), texts, base, poster_keys))
    if reads_poster:
        cells = occluded_posters(poster, (rows, cols))
        parts.append(_variants(predictor, cells, [None if overview_keys else film_overview] * len(cells), base, overview_keys))

    # every row the model can read, through the model at once
    inputs = {k: np.concatenate([p[0][k] for p in parts]) for k in base}
    ok = np.concatenate([p[1] for p in parts])
    probs = np.zeros((len(ok), len(predictor.genres)))
    probs[ok] = predictor.scores({k: v[ok] for k, v in inputs.items()})

    p_film = probs[0]
    start = len(base_ok)
    p_words, start = probs[start : start + len(spans)], start + len(spans)
    p_cells = probs[start:] if reads_poster else None

    decided = predictor.decide(p_film[None])[0]
    decided_names = [g for g, d in zip(predictor.genres, decided) if d]
    asked = decided_names if genres is None else _check_genres(predictor, genres)

    explanations = {}
    for g in asked:
        j = predictor.genres.index(g)
        weights = p_film[j] - p_words[:, j]
        order = np.argsort(-weights, kind="stable")
        explanations[g] = {
            "probability": _r(p_film[j]),
            "threshold": _r(predictor.thresholds_[j]),
            "decided": bool(decided[j]),
            "words": [{"i": int(i), "text": spans[i]["text"], "weight": _r(weights[i])} for i in order],
            "heatmap": None if p_cells is None else [[_r(v) for v in row] for row in (p_film[j] - p_cells[:, j]).reshape(rows, cols)],
            "by_modality": {"poster": _r(probs[1, j]), "overview": _r(probs[2, j]), "both": _r(p_film[j])} if both else None,
        }
    return {
        "model": predictor.model_name,
        "version": predictor.version,
        "inputs_used": (["poster"] if reads_poster else []) + (["overview"] if reads_overview else []),
        "genres": decided_names,
        "words": spans,
        "grid": [rows, cols] if reads_poster else None,
        "explanations": explanations,
        "warnings": [SURROGATES] if overview and has_surrogates(overview) else [],
    }


def _r(x) -> float:
    return round(float(x), 4)


def _check_grid(grid) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be (rows, columns), got {grid!r}") from None
    if not (1 <= rows <= 32 and 1 <= cols <= 32):
        raise ValueError(f"grid must have 1 to 32 rows and columns, got {rows}x{cols}")
    return rows, cols


def _check_genres(predictor, genres) -> list[str]:
    names = [genres] if isinstance(genres, str) else list(genres)
    out = []
    for g in names:
        if g not in predictor.genres:
            raise ValueError(f"unknown genre '{g}'" + (did_you_mean(g, predictor.genres) or f" (genres: {', '.join(predictor.genres)})"))
        if not predictor.trained[predictor.genres.index(g)]:
            raise ValueError(f"genre '{g}' is not learned by this run (too few training films), so it is never predicted")
        if g not in out:
            out.append(g)
    return out


def _film_rows(predictor, poster, overview):
    """Model inputs of the film (row 0) and, where the model reads both inputs and the film has both, of the poster
    alone (row 1) and the overview alone (row 2); plus the input names that carry the poster and the overview.

    The names are read off the featurizer's output: an input that differs between the poster alone and no input at
    all is the poster's. Where each input has its own names (every featurizer here), the film's row is the two alone
    put together, so each input is encoded once; otherwise (no names: one input, or inputs that mix) it is encoded.
    """
    if poster is None or overview is None:
        inputs, ok, problems = predictor.transform([poster], [overview])
        return inputs, ok, problems, [], []
    alone, ok, problems = predictor.transform([poster, None, None], [None, overview, None])
    poster_keys = [k for k, v in alone.items() if not np.array_equal(v[0], v[2])]
    overview_keys = [k for k, v in alone.items() if not np.array_equal(v[1], v[2])]
    if set(poster_keys) & set(overview_keys):
        film, film_ok, problems = predictor.transform([poster], [overview])
        poster_keys, overview_keys = [], []
    else:
        film = {k: v[2:3].copy() for k, v in alone.items()}
        for keys, row in ((poster_keys, 0), (overview_keys, 1)):
            for k in keys:
                film[k] = alone[k][row : row + 1]
        film_ok = ok[:1] | ok[1:2]
    inputs = {k: np.concatenate([film[k], alone[k][:2]]) for k in alone}
    return inputs, np.concatenate([film_ok, ok[:2]]), problems, poster_keys, overview_keys


def _variants(predictor, posters: list, overviews: list, base: dict, keep: list[str]):
    """Model inputs for variants of the film, with the inputs named in ``keep`` copied from the film's row."""
    inputs, ok = _transform(predictor, posters, overviews)
    for k in keep:
        inputs[k] = np.repeat(base[k][:1], len(posters), axis=0)
    if keep:
        ok = np.ones(len(posters), dtype=bool)  # the kept input alone makes every variant readable
    return inputs, ok


def _transform(predictor, posters: list, overviews: list):
    """``predictor.transform`` in chunks below the featurizer's disk-cache size (``CACHE_FROM``): a request's
    variants are encoded directly, never written to (or looked up in) the feature cache of the whole dataset."""
    step = max(1, getattr(predictor.featurizer, "CACHE_FROM", len(posters) + 1) - 1)
    chunks = [predictor.transform(posters[i : i + step], overviews[i : i + step]) for i in range(0, len(posters), step)]
    inputs = {k: np.concatenate([c[0][k] for c in chunks]) for k in chunks[0][0]}
    return inputs, np.concatenate([c[1] for c in chunks])
