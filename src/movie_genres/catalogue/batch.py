"""The one batch predictor: rows of a catalogue in, one output row per film out.

Every batch path goes through :class:`BatchPredictor` (the local engine, each Ray actor). A film is read as one-film
``predict`` reads it: its poster decoded by ``open_poster``, then the run's :class:`~movie_genres.predictor.Predictor`
(the same featurizer, its encoders run ``batch_size`` films at a time, the same model), so both give the same
probabilities. The disk feature cache is not read or written: a catalogue is new films. Posters are read and decoded in
threads (file reads and Pillow release the GIL), the next batch while the current one is encoded.

Output columns: ``Id``, ``prob_<genre>`` for every genre of the run (float32; null where skipped), ``genres`` (the
decided list, at the run's tuned thresholds), ``review`` (labels whose probability lies within ``review_band`` of their
threshold: sure tags can be applied, these sent to a person), ``inputs_used``, ``status`` (``ok``, ``partial: <reason>`` when the model
answered from fewer inputs than it reads, ``skipped: <reason>`` when it had none it could use), ``model``, ``version``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pyarrow as pa

from movie_genres.catalogue.read import read_poster
from movie_genres.features.posters import PosterError, open_poster

DEFAULT_BATCH = 64  # films decoded and encoded at once: MiniLM's batch, eight of EfficientNet's
REVIEW_BAND = 0.05  # a label within this distance of its threshold is listed under `review` (for a person to check)


def output_schema(genres: list[str]) -> pa.Schema:
    return pa.schema(
        [("Id", pa.string())]
        + [(f"prob_{g}", pa.float32()) for g in genres]
        + [("genres", pa.list_(pa.string())), ("review", pa.list_(pa.string())), ("inputs_used", pa.list_(pa.string())),
           ("status", pa.string()),
           ("model", pa.string()), ("version", pa.string()), ("_row", pa.int64())]
    )


def _decode(source: str | None):
    """(RGB image or None, reason or None) for one poster source."""
    if source is None:
        return None, "no poster"
    try:
        return open_poster(read_poster(source)), None
    except PosterError as exc:
        return None, exc.reason


class BatchPredictor:
    """A loaded run answering whole tables of films (``read.INPUT_SCHEMA`` in, :func:`output_schema` out)."""

    def __init__(self, predictor, batch_size: int = DEFAULT_BATCH, threads: int = 4, review_band: float = REVIEW_BAND):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if not 0 <= review_band < 1:
            raise ValueError(f"review band must be in [0, 1), got {review_band}")
        self.predictor, self.batch_size, self.review_band = predictor, int(batch_size), float(review_band)
        self.schema = output_schema(predictor.genres)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="movie-genres-decode")
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="movie-genres-next-batch")

    def predict(self, rows: pa.Table, on_batch: Callable[[int], None] | None = None) -> pa.Table:
        """Output rows for ``rows``, in order; ``on_batch(n)`` after each batch of ``n`` films."""
        n = rows.num_rows
        ids = rows.column("Id").to_pylist()
        posters = rows.column("poster").to_pylist()
        overviews = rows.column("overview").to_pylist()
        notes = rows.column("note").to_pylist()
        starts = list(range(0, n, self.batch_size))
        reads_poster = "poster" in self.predictor.modalities
        parts = []

        def decode(start: int):
            if not reads_poster:
                return None
            return list(self._pool.map(_decode, posters[start : start + self.batch_size]))

        pending = self._ahead.submit(decode, starts[0]) if starts else None
        for k, start in enumerate(starts):
            stop = min(n, start + self.batch_size)
            decoded = pending.result()
            pending = self._ahead.submit(decode, starts[k + 1]) if k + 1 < len(starts) else None
            images = [d[0] for d in decoded] if decoded else [None] * (stop - start)
            known = []  # what the reader and the decoder already know of each film's inputs
            for j, i in enumerate(range(start, stop)):
                why = {"overview": notes[i] if notes[i] and "overview" in notes[i] else "no overview"}
                if decoded:
                    why["poster"] = decoded[j][1]
                known.append(why)
            parts.append(self.predictor.answer(images, overviews[start:stop], known=known, cache=False))
            if on_batch is not None:
                on_batch(stop - start)
        genres = np.asarray(self.predictor.genres)
        probs = np.concatenate([a.probs for a in parts]) if parts else np.zeros((0, len(genres)), np.float32)
        decided = np.concatenate([a.decided for a in parts]) if parts else np.zeros((0, len(genres)), bool)
        ok = np.concatenate([a.usable for a in parts]) if parts else np.zeros(0, dtype=bool)
        cols = {"Id": pa.array(ids, pa.string())}
        for g, column in zip(self.predictor.genres, probs.T):
            cols[f"prob_{g}"] = pa.array(column, pa.float32(), mask=~ok)
        cols["genres"] = pa.array([genres[d].tolist() for d in decided], pa.list_(pa.string()))
        thr = np.asarray(self.predictor.thresholds_, dtype=np.float64)
        near = (np.abs(np.nan_to_num(probs, nan=-9.0) - thr) <= self.review_band) & self.predictor.trained & (thr <= 1.0)
        cols["review"] = pa.array([genres[r].tolist() for r in near], pa.list_(pa.string()))
        cols["inputs_used"] = pa.array([u for a in parts for u in a.inputs_used], pa.list_(pa.string()))
        cols["status"] = pa.array([st for a in parts for st in a.status], pa.string())
        cols["model"] = pa.array([self.predictor.model_name] * n, pa.string())
        cols["version"] = pa.array([self.predictor.version] * n, pa.string())
        cols["_row"] = rows.column("_row")
        return pa.table(cols, schema=self.schema)

    def close(self) -> None:
        self._ahead.shutdown(wait=False)
        self._pool.shutdown(wait=False)
