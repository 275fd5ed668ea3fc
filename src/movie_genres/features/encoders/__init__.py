"""Frozen pretrained feature extractors (all CPU, weights bundled in pip packages, nothing is downloaded) and the
name -> encoder registry.

One file per encoder family: ``minilm`` and ``mpnet`` (text), ``efficientnet_lite`` and ``open_nsfw`` (posters); ``base`` holds the
:class:`Encoder` interface and the ONNX / onnxruntime helpers, ``quantize`` the int8 graphs (``<name>-int8``),
``cache`` the on-disk feature cache. A new family is a
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
from movie_genres.features.encoders.quantize import PRECISIONS, QuantizationError

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
    "with_precision",
    "PRECISIONS",
    "QuantizationError",
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
    # int8 graphs made from the fp32 ones (quantize.py); ``with_precision`` names them
    "minilm-int8": lambda: MiniLMEncoder(precision="int8"),
    "mpnet-int8": lambda: MPNetEncoder(precision="int8"),
    "effnet-lite0-int8": lambda: EfficientNetLiteEncoder(0, "full", precision="int8"),
    "nsfw-resnet50-int8": lambda: OpenNSFWEncoder(precision="int8"),
}
_INSTANCES: dict[str, Encoder] = {}
_REGISTRY_LOCK = threading.Lock()


def known_encoders() -> list[str]:
    return list(ENCODERS)


def with_precision(name: str, precision: str) -> str:
    """The registered encoder that runs ``name`` at ``precision``: ``"int8"`` -> ``<name>-int8`` (an error where
    none is registered); ``"fp32"`` -> ``name`` as given (so a name that already ends in ``-int8`` keeps its graph,
    one encoder at a time)."""
    if precision not in PRECISIONS:
        raise ValueError(f"encoder_precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32" or name.endswith("-int8"):
        return name
    if f"{name}-int8" not in ENCODERS:
        int8 = [n for n in ENCODERS if n.endswith("-int8")]
        raise ValueError(f"encoder {name!r} has no int8 graph; encoders with one: {', '.join(n[:-5] for n in int8)}")
    return f"{name}-int8"


def get_encoder(name: str) -> Encoder:
    """The process-wide instance of encoder ``name`` (constructed once; the model itself loads on first use)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}{did_you_mean(name, known_encoders())}; known encoders: {', '.join(known_encoders())}")
    with _REGISTRY_LOCK:
        if name not in _INSTANCES:
            _INSTANCES[name] = ENCODERS[name]()
        return _INSTANCES[name]
