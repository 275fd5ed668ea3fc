"""FastAPI service and web page: ``create_app(predictor)`` for tests and embedding, ``serve(run_dir)`` to run it.

Names are loaded lazily so that ``python -m movie_genres.service.app`` runs the module once, cleanly.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "Limits", "create_app", "decode_poster", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from movie_genres.service import app

        return getattr(app, name)
    raise AttributeError(f"module 'movie_genres.service' has no attribute {name!r}")
