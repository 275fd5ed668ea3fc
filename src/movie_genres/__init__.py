"""movie-genres: tell a film's genres from its poster and its overview."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
# Sleep, don't spin, when an OpenMP worker waits: on a few shared cores torch's spinning threads made 2-thread
# EfficientNet ~7x slower than 1 thread under load, and Keras scoring next to the encoders 7x slower (4.4 against
# 0.6 ms a film). It only takes effect before torch (libgomp) loads, hence here, before anything imports it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from movie_genres._version import __version__  # noqa: E402
from movie_genres.api import (  # noqa: E402
    GenreClassifier,
    encode,
    evaluate,
    explain,
    predict,
    predict_batch,
    report,
    serve,
    train,
    train_all,
)
from movie_genres.predictor import Predictor  # noqa: E402

__all__ = ["GenreClassifier", "Predictor", "encode", "evaluate", "explain", "predict", "predict_batch", "report", "serve", "train",
           "train_all", "__version__"]
