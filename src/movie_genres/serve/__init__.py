"""FastAPI service and web page: ``create_app(predictor)`` for tests and embedding, ``serve(run_dir)`` to run it."""
from movie_genres.serve.app import ApiError, Limits, create_app, decode_poster, serve

__all__ = ["ApiError", "Limits", "create_app", "decode_poster", "serve"]
