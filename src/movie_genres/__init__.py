"""movie-genres: tell a film's genres from its poster and its overview."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"

from movie_genres.api import GenreClassifier, evaluate, explain, predict, report, serve, train, train_all  # noqa: E402
from movie_genres.predictor import Predictor  # noqa: E402

__all__ = ["GenreClassifier", "Predictor", "evaluate", "explain", "predict", "report", "serve", "train", "train_all", "__version__"]
