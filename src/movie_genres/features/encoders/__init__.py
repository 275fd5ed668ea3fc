"""Frozen pretrained feature extractors (all CPU, weights bundled in pip packages, nothing is downloaded) and the
name -> encoder registry.

One file per encoder family: ``minilm`` and ``mpnet`` (text), ``efficientnet_lite`` and ``open_nsfw`` (posters); ``base`` holds the
:class:`Encoder` interface and the ONNX / onnxruntime helpers, ``cache`` the on-disk feature cache. A new family is a
new module with an :class:`Encoder` subclass, imported and named in ``ENCODERS`` below.

``get_encoder(name)`` is cheap: models load on the first ``encode`` and once per process.

Example:
    >>> enc = get_encoder("minilm")                                       # doctest: +SKIP
    >>> X = cached_features(enc, overviews, "~/.cache/movie-genres")      # doctest: +SKIP
    >>> X.shape                                                           # doctest: +SKIP
    (5060, 384)
"""
from __future__ import annotations

import threading
from typing import Callable

from movie_genres._names import did_you_mean
from movie_genres.features.encoders.base import Encoder, PosterEncoder, default_threads, onnx_cache_path
from movie_genres.features.encoders.cache import add_to_cache, cache_path, cached_features, content_key, load_cache
from movie_genres.features.encoders.efficientnet_lite import EfficientNetLiteEncoder
from movie_genres.features.encoders.minilm import MiniLMEncoder
from movie_genres.features.encoders.mpnet import MPNetEncoder
from movie_genres.features.encoders.open_nsfw import OpenNSFWEncoder

__all__ = [
    "Encoder",
    "PosterEncoder",
    "MiniLMEncoder",
    "MPNetEncoder",
    "EfficientNetLiteEncoder",
    "OpenNSFWEncoder",
    "ENCODERS",
    "get_encoder",
    "known_encoders",
    "content_key",
    "cached_features",
    "add_to_cache",
    "onnx_cache_path",
    "cache_path",
    "load_cache",
    "default_threads",
]

ENCODERS: dict[str, Callable[[], Encoder]] = {
    "minilm": MiniLMEncoder,
    "mpnet": MPNetEncoder,
    "effnet-lite0": lambda: EfficientNetLiteEncoder(0, "full"),
    "effnet-lite0-160": lambda: EfficientNetLiteEncoder(0, "full", size=160),  # 160x320: half the work of 224x448
    "nsfw-resnet50": OpenNSFWEncoder,
}
_INSTANCES: dict[str, Encoder] = {}
_REGISTRY_LOCK = threading.Lock()


def known_encoders() -> list[str]:
    return list(ENCODERS)


def get_encoder(name: str) -> Encoder:
    """The process-wide instance of encoder ``name`` (constructed once; the model itself loads on first use)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}{did_you_mean(name, known_encoders())}; known encoders: {', '.join(known_encoders())}")
    with _REGISTRY_LOCK:
        if name not in _INSTANCES:
            _INSTANCES[name] = ENCODERS[name]()
        return _INSTANCES[name]
