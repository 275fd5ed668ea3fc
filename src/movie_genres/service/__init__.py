"""FastAPI service and web page: ``create_app(predictor, **limits)`` to embed or test, ``serve(run_dir)`` to run it.

Names are loaded lazily, so that ``movie_genres.service.limits`` (the CLI's options) imports without FastAPI.
"""
from __future__ import annotations

from typing import Any

_WHERE = {"ApiError": "multipart", "Limits": "limits", "create_app": "app", "decode_poster": "routes", "serve": "app"}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"movie_genres.service.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'movie_genres.service' has no attribute {name!r}")
