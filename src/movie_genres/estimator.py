"""``GenreClassifier``: a scikit-learn estimator over :func:`~movie_genres.training.train.train` and the Predictor.

Parameters are explicit keyword arguments, so ``get_params`` / ``set_params`` / ``sklearn.base.clone`` (and so
``GridSearchCV``) work as for any estimator:

* ``model``: a model name (``cnn``, ``bilstm``, ``text``, ``gmu``, ...);
* ``out``: where the run folder goes (default ``runs/<model>``; an existing folder is never overwritten, ``out2``,
  ``out3``, ... are used); ``fit(..., out=...)`` overrides it for one call;
* ``reuse``: copy an identical finished run from the run cache instead of training (``False``: train anyway);
* every :class:`~movie_genres.config.Config` key (``epochs``, ``learning_rate``, ``cache_dir``, ...), default
  ``None``: the config's default for the model. They are stored as given and checked when ``fit`` runs.

``fit(X, y)``: ``X`` is a DataFrame (or a list of dicts) with a ``poster`` column (a path, the file's bytes, a PIL
image, or None) and an ``overview`` column (text or None), optionally ``Id``; ``y`` is one list of genre names per
film, or a 0/1 matrix: a DataFrame whose columns are the labels, or an array (its labels are its column numbers).
The labels are yours: any names (checked as every label set is: :func:`~movie_genres.data.dataset.check_label_names`).
``fit`` writes the films as a dataset-format folder in a temporary directory (posters linked, not copied,
where they are files), trains on it and removes it; the run folder is then complete on its own, but its
``config.json`` names a data folder that is gone, so an interrupted ``fit`` is fitted again rather than resumed.
``fit(folder)`` trains on a dataset folder as ``movie-genres train --data`` does.

After ``fit`` (or :meth:`GenreClassifier.from_run`): ``classes_`` are the labels the run learned (in the run's order;
genres with fewer than ``min_positives`` training films are not learned), ``predict_proba(X)`` /
``predict(X)`` give one column per class, ``score(X, y)`` is micro-F1 over all genres, and ``run_dir_`` is the run
folder. Films follow the one-film poster policy: a poster named that is missing or will not decode raises
``PosterError``, and a film with no usable input raises ``ValueError`` (never a silent NaN row). A fitted estimator pickles
without its model, which is loaded again from ``run_dir_`` (so the run folder must still be there).
"""
from __future__ import annotations

import csv
import difflib
import inspect
import io
import logging
import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from movie_genres._names import did_you_mean
from movie_genres.config import MODEL_DEFAULTS, Config, make_config
from movie_genres.data.dataset import CSV_NAME, IMAGES_DIR, check_label_names
from movie_genres.training.train import train

log = logging.getLogger(__name__)

# The Config keys that are estimator parameters (``model`` is the first, positional one).
CONFIG_KEYS = tuple(f.name for f in fields(Config) if f.name != "model")


class GenreClassifier(ClassifierMixin, BaseEstimator):
    """Multi-label genre classifier for films (poster and/or overview); see the module docstring for the parameters.

    Example:
        >>> clf = GenreClassifier("text", epochs=5, out="runs/text").fit(films, labels)  # doctest: +SKIP
        >>> clf.predict_proba([{"poster": None, "overview": "A haunted house."}]).shape  # doctest: +SKIP
        (1, 20)
        >>> clf.classes_[:3]  # doctest: +SKIP
        array(['Action', 'Adventure', 'Animation'], dtype=object)
    """

    def __init__(self, model: str = "cnn", *, out=None, reuse: bool = True, **config):
        self.model = model
        self.out = out
        self.reuse = reuse
        unknown = [k for k in config if k not in CONFIG_KEYS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], CONFIG_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(CONFIG_KEYS)}"
            raise TypeError(f"GenreClassifier got an unknown config key '{unknown[0]}'{hint}")
        for key in CONFIG_KEYS:
            setattr(self, key, config.get(key))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # films: rows of poster + overview, not a numeric matrix
        tags.input_tags.dict = True
        tags.input_tags.string = True
        tags.target_tags.required = True
        tags.target_tags.two_d_labels = True
        tags.classifier_tags.multi_label = True
        return tags

    # -- fitting
    def config_overrides(self) -> dict:
        """The config keys set on this estimator (the others take the config's default for the model)."""
        return {k: getattr(self, k) for k in CONFIG_KEYS if getattr(self, k) is not None}

    def fit(self, X, y=None, *, out=None) -> "GenreClassifier":
        """Train a run on films ``X`` with labels ``y`` (or on the dataset folder ``X``); returns ``self``."""
        from movie_genres.models.registry import check_model_name

        out = out if out is not None else self.out
        overrides = self.config_overrides()
        make_config(model=check_model_name(self.model), **overrides)  # a bad setting fails before any films are written
        if isinstance(X, (str, os.PathLike)):
            if y is not None:
                raise ValueError("fit(folder) reads the labels from the folder's CSV; give y only with films (a DataFrame or a list of dicts)")
            self._fitted(train(self.model, X, out, reuse=self.reuse, **overrides))
            return self
        if y is None:
            raise ValueError("fit(X, y) needs y: one list of genre names per film, or a 0/1 matrix of genres")
        posters, overviews, ids = films_of(X)
        labels, names = label_matrix(y, len(posters))
        with tempfile.TemporaryDirectory(prefix="movie-genres-fit-") as tmp:
            folder = write_dataset(Path(tmp), posters, overviews, labels, names, ids)
            run = train(self.model, folder, out, reuse=self.reuse, **overrides)
        self._fitted(run)
        unlearned = [g for g, n in zip(names, labels.sum(axis=0)) if n and g not in set(self.classes_)]
        if unlearned:
            log.warning("labels in y the run did not learn (fewer than min_positives training films): %s", ", ".join(unlearned))
        return self

    def _fitted(self, run_dir) -> None:
        from movie_genres.predictor import Predictor

        self.predictor_ = Predictor.load(run_dir)
        self.run_dir_ = self.predictor_.run_dir
        self._columns = np.flatnonzero(self.predictor_.trained)
        self.classes_ = np.array([self.predictor_.genres[i] for i in self._columns], dtype=object)
        self.thresholds_ = self.predictor_.thresholds_[self._columns]

    def __getstate__(self) -> dict:
        """Pickled without the loaded model (a Keras model and its traced graph): it is loaded again from ``run_dir_``."""
        state = super().__getstate__()
        state.pop("predictor_", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "run_dir_" in state:
            from movie_genres.predictor import Predictor

            self.predictor_ = Predictor.load(self.run_dir_)

    @classmethod
    def from_run(cls, run_dir) -> "GenreClassifier":
        """The estimator of a finished run folder (or a folder of runs: its best), fitted; its parameters are the
        run's settings that differ from the model's defaults, so ``clone(...).fit(X, y)`` trains the same way."""
        from movie_genres import runs

        run_dir = runs.resolve_run(run_dir)
        saved = runs.read_config(run_dir)
        model = saved.get("model", "cnn")
        defaults = make_config(model=model, **MODEL_DEFAULTS.get(model, {})).to_dict()
        params = {k: saved[k] for k in CONFIG_KEYS if k in saved and saved[k] != defaults[k]}
        self = cls(model, **{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
        self._fitted(run_dir)
        return self

    # -- scoring
    def predict_proba(self, X) -> np.ndarray:
        """Probabilities ``(n_films, len(classes_))``; a film the model cannot read raises (see the module docstring)."""
        check_is_fitted(self)
        posters, overviews, _ = films_of(X)
        return self.predictor_.predict_proba(posters, overviews)[:, self._columns]

    def predict(self, X) -> np.ndarray:
        """0/1 decisions ``(n_films, len(classes_))`` at the run's tuned thresholds (at least one genre a film,
        unless the film cannot be read)."""
        check_is_fitted(self)
        posters, overviews, _ = films_of(X)
        return self.predictor_.predict(posters, overviews)[:, self._columns]

    def score(self, X, y, sample_weight=None) -> float:
        """Micro-F1 of ``predict(X)`` against ``y`` over every genre (a true genre the run did not learn counts as missed)."""
        from sklearn.metrics import f1_score

        check_is_fitted(self)
        posters, overviews, _ = films_of(X)
        truth, _ = label_matrix(y, len(posters), self.predictor_.genres)
        decided = self.predictor_.predict(posters, overviews)
        return float(f1_score(truth, decided, average="micro", sample_weight=sample_weight, zero_division=0.0))


# sklearn reads the parameters from the constructor's signature: every config key is an explicit keyword parameter.
GenreClassifier.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="cnn"),
     inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None),
     inspect.Parameter("reuse", inspect.Parameter.KEYWORD_ONLY, default=True),
     *(inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in CONFIG_KEYS)]
)
_CLASHES = set(CONFIG_KEYS) & {n for n in dir(GenreClassifier) if not n.startswith("_")}
assert not _CLASHES, f"config keys shadow GenreClassifier attributes: {_CLASHES}"


# -- films and labels in, a dataset folder out
def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def films_of(X) -> tuple[list, list[str], list[str] | None]:
    """(posters, overviews, ids or None) of a DataFrame or a list of dicts with ``poster`` and ``overview``."""
    if hasattr(X, "to_dict") and hasattr(X, "columns"):  # a pandas DataFrame
        rows = X.to_dict("records")
    elif isinstance(X, dict):
        raise ValueError("X is one dict; give a list of dicts (one per film) or a DataFrame")
    else:
        try:
            rows = list(X)
        except TypeError:
            raise ValueError(f"X must be a DataFrame or a list of dicts with 'poster' and 'overview', got {type(X).__name__}") from None
    posters, overviews, ids = [], [], []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"film {i}: expected a dict with 'poster' and/or 'overview', got {type(row).__name__}")
        if "poster" not in row and "overview" not in row:
            raise ValueError(f"film {i} has neither a 'poster' nor an 'overview' field (fields: {', '.join(map(str, row)) or 'none'})")
        poster, overview = row.get("poster"), row.get("overview")
        posters.append(None if _missing(poster) else poster)
        overviews.append("" if _missing(overview) else str(overview))
        ids.append(None if _missing(row.get("Id")) else str(row["Id"]).strip())
    return posters, overviews, (ids if any(i is not None for i in ids) else None)


def label_matrix(y, n: int, names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """``y`` -> ``(0/1 int8 matrix (n, labels), label names)``.

    ``y``: one list of label names per film (the names: every one used, sorted), a DataFrame of 0/1 columns (the
    names: its columns), or a 0/1 array (the names: its column numbers, ``"0"``, ``"1"``, ...). With ``names`` (a run's
    labels, for ``score``) the matrix follows them, and a label ``y`` uses that they lack is an error.
    """
    if hasattr(y, "columns") and hasattr(y, "to_numpy"):  # a DataFrame: its columns are the labels
        given, values = [str(c) for c in y.columns], _zero_one(y.to_numpy())
    else:
        items = list(y)
        if all(isinstance(v, str) or (isinstance(v, (list, tuple, set, frozenset, np.ndarray)) and all(isinstance(g, str) for g in v)) for v in items):
            lists = [[v.strip()] if isinstance(v, str) else [str(g).strip() for g in v] for v in items]
            given = sorted({g for labels in lists for g in labels if g}, key=lambda g: (g.casefold(), g))
            index = {g: j for j, g in enumerate(given)}
            values = np.zeros((len(lists), len(given)), dtype=np.int8)
            for i, labels in enumerate(lists):
                values[i, [index[g] for g in labels if g]] = 1
        else:
            values = _zero_one(items)
            if values.ndim != 2:
                raise ValueError(f"a 0/1 label matrix must be 2-D (films x labels), got shape {values.shape}")
            given = [str(j) for j in range(values.shape[1])]
    if len(values) != n:
        raise ValueError(f"y has {len(values)} rows for {n} films")
    given = check_label_names(given, "y")
    if names is None:
        return values, given
    unknown = [g for g in given if g not in names]
    if unknown:
        raise ValueError(f"label(s) {', '.join(map(repr, unknown))}{did_you_mean(unknown[0], names)} are not the run's "
                         f"(its labels: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''})")
    out = np.zeros((len(values), len(names)), dtype=np.int8)
    out[:, [names.index(g) for g in given]] = values
    return out, list(names)


def _zero_one(values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("y must be one list of label names per film, or a 0/1 matrix of labels") from None
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError("a label matrix must hold only 0 and 1")
    return arr.astype(np.int8)


def write_dataset(root: Path, posters: list, overviews: list[str], labels: np.ndarray, names: list[str],
                  ids: list[str | None] | None = None) -> Path:
    """Films as a dataset-format folder: ``CSV_NAME`` (Id, one 0/1 column per label of ``names``, Overview) and
    ``Images/<Id>.jpg`` for each poster (a link to a poster file, else its bytes or the image saved as PNG; the
    decoder reads the content, not the name)."""
    from PIL import Image

    ids = [fid if fid is not None else f"film{i:06d}" for i, fid in enumerate(ids or [None] * len(posters))]
    for fid in ids:
        if not fid or fid in (".", "..") or "/" in fid or "\\" in fid or "\0" in fid:
            raise ValueError(f"film Id {fid!r} cannot name a poster file; use Ids without path separators")
    images = root / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["Id", *names, "Overview"])
    for fid, row, overview in zip(ids, labels, overviews):
        w.writerow([fid, *(int(v) for v in row), overview])
    (root / CSV_NAME).write_text(buf.getvalue(), encoding="utf-8")
    for fid, poster in zip(ids, posters):
        dest = images / f"{fid}.jpg"
        if poster is None or dest.exists():  # a repeated Id: the dataset counts it as a duplicate
            continue
        if isinstance(poster, (str, os.PathLike)):
            src = Path(poster).resolve()
            if not src.is_file():
                continue  # counted as "poster missing" when the folder is read
            try:
                dest.symlink_to(src)
            except OSError:
                shutil.copyfile(src, dest)
        elif isinstance(poster, (bytes, bytearray, memoryview)):
            dest.write_bytes(bytes(poster))
        elif isinstance(poster, Image.Image):
            poster.save(dest, format="PNG")
        else:
            raise ValueError(f"film {fid}: a poster must be a path, bytes or a PIL image, got {type(poster).__name__}")
    return root
