"""Load a run folder once and answer films (poster image and/or overview text) with it.

:meth:`Predictor.answer` is the one answer for films: probabilities, decisions at the run's thresholds, the inputs
used, a status (``ok``, ``partial: <reason>``, ``skipped: <reason>``) and warnings, per film (:class:`Answers`). One-film
predict, ``predict_many``, the catalogue (local and Ray), ``evaluate``, explanations, the service and the report read it;
nothing else rebuilds it.

Scores and decisions stay separate, in the scikit-learn spirit: :meth:`Predictor.predict_proba` gives a probability
per genre, :meth:`Predictor.predict` the decisions at the run's tuned thresholds (every film gets at least one genre).

A poster the caller names must be usable: on the one-film and estimator paths (``predict_one``, ``predict_many``,
``predict_proba``, ``predict``) a poster path that does not exist, or a file that will not decode, raises
:class:`~movie_genres.features.posters.PosterError` (the CLI exits 2, HTTP answers 422). Catalogues and ``evaluate``
instead count such a film (``partial`` or ``skipped`` with the reason) and go on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movie_genres._version import __version__
from movie_genres.data.text import clean_overview, has_surrogates
from movie_genres.evaluation.calibration import Calibrator
from movie_genres.features.inputs import Problems
from movie_genres.features.posters import PosterError, open_poster
from movie_genres.models.inference import predict_proba_arrays
from movie_genres.runs import Run, RunError, resolve_run

__all__ = ["Answers", "Predictor", "RunError", "resolve_run"]  # RunError, resolve_run: from movie_genres.runs

MODALITIES = ("poster", "overview")  # the order inputs are named in answers and statuses
SURROGATES = "the overview held characters that are not text (undecodable bytes); they were read as U+FFFD"


@dataclass
class Answers:
    """The answer for a batch of films, row ``i`` for film ``i``.

    ``probs`` (n, genres) float32 (NaN rows: skipped films; calibrated where the run calibrates, ``raw`` the model's
    own), ``decided`` (n, genres) bool at the run's thresholds,
    ``usable`` (n,), ``problems`` (per film, which input it lacks and why; the decoder's notes), ``inputs_used``,
    ``status`` (``ok`` / ``partial: <reasons>`` / ``skipped: <reasons>``) and ``warnings`` per film.
    """

    genres: list[str]
    probs: np.ndarray
    decided: np.ndarray
    usable: np.ndarray
    problems: Problems
    inputs_used: list[list[str]]
    status: list[str]
    warnings: list[list[str]]
    model: str
    version: str
    raw: np.ndarray | None = None  # the model's own probabilities (``probs`` are calibrated where the run calibrates)

    def __len__(self) -> int:
        return len(self.usable)

    def decided_genres(self, i: int) -> list[str]:
        return [g for g, d in zip(self.genres, self.decided[i]) if d]

    def film(self, i: int) -> dict:
        """Film ``i``'s answer as one-film ``predict``, ``--explain`` and the service give it."""
        if not self.usable[i]:
            raise ValueError(f"film {i + 1} was not answered ({self.status[i]})")
        out = {
            "probabilities": {g: round(float(p), 4) for g, p in zip(self.genres, self.probs[i])},
            "genres": self.decided_genres(i),
            "inputs_used": list(self.inputs_used[i]),
            "status": self.status[i],
            "model": self.model,
            "version": self.version,
        }
        if self.warnings[i]:
            out["warnings"] = list(self.warnings[i])
        return out


class Predictor:
    """A trained run, loaded once: model, preprocessing and thresholds.

    Example:
        >>> p = Predictor.load("runs/main")  # doctest: +SKIP
        >>> p.predict_one(poster=None, overview="A detective hunts a killer.")["genres"]  # doctest: +SKIP
        ['Crime', 'Drama', 'Thriller']
    """

    def __init__(self, run: Run, model, featurizer):
        self.run, self.model, self.featurizer = run, model, featurizer
        self.run_dir = run.path
        self.genres = run.genres
        self.trained = run.trained
        self.calibrator = Calibrator(self.genres, run.calibration())
        self.thresholds_ = self.calibrator.thresholds(run.thresholds)  # where the reported probabilities are decided
        self.config = run.config
        self.model_name = run.model_name
        self.version = self.config.get("version", __version__)
        self.modalities = set(featurizer.modalities)
        self.reads = [m for m in MODALITIES if m in self.modalities]
        self._graph = None  # the traced single-film graph, built by load() (False: not available)

    @classmethod
    def load(cls, run_dir: str | Path) -> "Predictor":
        import keras

        from movie_genres.features.inputs import load_featurizer
        from movie_genres.models.cnn import with_input_scaling
        from movie_genres.models.registry import register_layers

        register_layers()
        run = Run(run_dir)
        model = with_input_scaling(keras.saving.load_model(run.model_file, compile=False))
        pred = cls(run, model, load_featurizer(run.path))
        pred._single_film_graph()  # traced now, so no request pays for it
        return pred

    def with_decisions(self, threshold=None, top_k: int | None = None) -> "Predictor":
        """This predictor deciding another way, without retraining (see :meth:`movie_genres.runs.Run.with_decisions`):
        ``threshold`` a number, ``"f1"``, ``"precision:P"`` or ``"recall:R"``; ``top_k`` at most K labels a film."""
        if threshold is None and top_k is None:
            return self
        import copy

        out = copy.copy(self)
        out.run = self.run.with_decisions(threshold, top_k)
        out.thresholds_ = self.calibrator.thresholds(out.run.thresholds)
        return out

    # -- scores
    def transform(self, posters: list, overviews: list, progress: bool = False, cache: bool | None = None):
        """Raw films -> (model inputs, usable mask, :class:`Problems`). ``cache=False``: never touch the disk caches."""
        overviews = [clean_overview(o) for o in overviews]  # lone surrogates would crash the tokenizers
        return self.featurizer.transform(list(posters), overviews, progress=progress, cache=cache)

    def raw_scores(self, inputs: dict) -> np.ndarray:
        """The model's own probabilities (n, genres) for model inputs; genres too rare to learn are 0."""
        n = len(next(iter(inputs.values())))
        fast = self._single_film_graph() if n == 1 else None
        probs = fast(inputs) if fast is not None else predict_proba_arrays(self.model, inputs)
        probs[:, ~self.trained] = 0.0  # genres too rare to learn are never scored
        return probs

    def scores(self, inputs: dict) -> np.ndarray:
        """Probabilities (n, genres) as answers report them: the model's, calibrated where the run calibrates."""
        return self.calibrator(self.raw_scores(inputs))

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """0/1 decisions for reported probabilities: the run's thresholds (:meth:`movie_genres.runs.Run.decide`) on the
        model's own probabilities (calibration moves no threshold decision), the top label by the reported ones."""
        return self.run.decide(self.calibrator.invert(probs), rank=probs)

    def _single_film_graph(self):
        """One film through the model as a traced TorchScript graph (torch backend, fixed-size inputs only).

        Keras' per-layer call overhead dominates one film's forward pass (about 9 ms for the ensemble); the traced
        graph runs the same torch operations without it. It is checked against the Keras model once, on random
        inputs, and not used if it differs (or cannot be traced); the Keras model then answers as before.
        """
        if self._graph is None:
            self._graph = _trace_single_film(self.model) or False
        return self._graph or None

    # -- the one answer
    def answer(self, posters: list, overviews: list, known: list[dict] | None = None, progress: bool = False,
               cache: bool | None = None) -> Answers:
        """Answer films: ``posters`` (paths, bytes, PIL images or None) and ``overviews`` (text or None), aligned.

        ``known``: per film, reasons the caller already has for an input (``{"poster": "poster truncated"}`` for a
        poster it could not read and passes as None, ``{"overview": "overview not UTF-8"}``); they name the problem
        where the featurizer finds the input unusable. Films with no usable input are skipped (status, NaN
        probabilities), never an error: the strict one-film methods below raise instead.
        """
        n = len(posters)
        texts = [o if isinstance(o, str) else None for o in overviews]
        warnings = [[SURROGATES] if t and has_surrogates(t) else [] for t in texts]
        inputs, usable, problems = self.transform(posters, [t or "" for t in texts], progress=progress, cache=cache)
        for i, why in enumerate(known or ()):
            for m, reason in (why or {}).items():
                if m in problems.per_film[i] and reason:
                    problems.per_film[i][m] = reason
        raw = np.full((n, len(self.genres)), np.nan, dtype=np.float32)
        decided = np.zeros(raw.shape, dtype=bool)
        if usable.any():
            raw[usable] = self.raw_scores({k: v[usable] for k, v in inputs.items()})
        probs = self.calibrator(raw)
        if usable.any():
            decided[usable] = self.run.decide(raw[usable], rank=probs[usable]).astype(bool)
        used, status = [], []
        for i in range(n):
            why = problems.per_film[i]
            text = "; ".join(why[m] for m in self.reads if m in why)
            if not usable[i]:
                used.append([])
                status.append(f"skipped: {text or 'unusable input'}")
                continue
            used.append([m for m in self.reads if m not in why])
            status.append(f"partial: {text}" if text else "ok")
            if "poster" in why and posters[i] is not None:  # a fusion model answered from the overview alone
                warnings[i].append(f"the poster was not used ({why['poster']}); the genres come from the overview alone")
        return Answers(self.genres, probs, decided, usable, problems, used, status, warnings, self.model_name, self.version, raw)

    def _strict(self, posters: list, overviews: list) -> Answers:
        """:meth:`answer`, raising where a film cannot be answered as given: a poster given that cannot be used
        (:class:`PosterError`), or no usable input at all (``ValueError``)."""
        for i, poster in enumerate(posters):
            if isinstance(poster, (str, os.PathLike)) and not Path(poster).is_file():
                raise PosterError("poster missing", f"film {i + 1}: no file at {poster}")
            if poster is not None and "poster" not in self.modalities:
                open_poster(poster)  # checked all the same: a poster the caller names must be one
        answers = self.answer(posters, overviews)
        for i, poster in enumerate(posters):
            reason = answers.problems.per_film[i].get("poster")
            if poster is not None and reason and "poster" in self.modalities:
                where = f" ({poster})" if isinstance(poster, (str, os.PathLike)) else ""
                raise PosterError(reason, f"film {i + 1}'s poster{where} cannot be used; give a readable image, or no poster")
            if not answers.usable[i]:
                need = " or ".join(self.reads)
                why = ", ".join(answers.problems.per_film[i].values()) or "no input"
                raise ValueError(f"model '{self.model_name}' needs a usable {need}; film {i + 1} has none ({why})")
        return answers

    def predict_proba(self, posters: list, overviews: list) -> np.ndarray:
        """Probabilities (n, genres); raises as :meth:`predict_many` does for a film it cannot answer."""
        return self._strict(list(posters), list(overviews)).probs

    def predict(self, posters: list, overviews: list) -> np.ndarray:
        """0/1 decisions (n, genres) at the run's thresholds; raises as :meth:`predict_many` does."""
        return self._strict(list(posters), list(overviews)).decided.astype(np.int8)

    # -- one film at a time (CLI, service)
    def predict_many(self, films: list[tuple]) -> list[dict]:
        """``films``: (poster path/bytes/PIL image or None, overview or None) pairs -> one answer dict each.

        A poster given that cannot be used raises :class:`PosterError`; a film with no usable input ``ValueError``.
        """
        answers = self._strict([p for p, _ in films], [o for _, o in films])
        return [answers.film(i) for i in range(len(films))]

    def predict_one(self, poster=None, overview: str | None = None) -> dict:
        return self.predict_many([(poster, overview)])[0]


def _trace_single_film(model):
    """A function (inputs dict of one film -> (1, n_genres) probabilities) running ``model`` as a traced graph, or
    None where that is not possible or not exact. Only for the torch backend and fixed-size inputs (a BiLSTM's
    sequence length varies per film, and a traced loop would not)."""
    import logging
    import warnings

    import keras

    if keras.backend.backend() != "torch":
        return None
    shapes = {t.name: tuple(t.shape) for t in model.inputs}
    if any(d is None for shape in shapes.values() for d in shape[1:]):
        return None
    import torch

    names = list(shapes)

    class Positional(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *xs):
            return self.inner({n: x for n, x in zip(names, xs)} if len(names) > 1 else xs[0], training=False)

    rng = np.random.default_rng(0)
    example = [torch.from_numpy(rng.random((1, *shapes[n][1:]), dtype=np.float32)) for n in names]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # shapes become constants in the graph: intended, as it only ever sees one film of fixed-size inputs
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            graph = torch.jit.trace(Positional(model).eval(), tuple(example), check_trace=False)
            for _ in range(2):  # a traced graph must agree with the model on inputs it was not traced on
                probe = [torch.from_numpy(rng.random((1, *shapes[n][1:]), dtype=np.float32)) for n in names]
                expected = np.asarray(model.predict_on_batch({n: x.numpy() for n, x in zip(names, probe)} if len(names) > 1 else probe[0].numpy()))
                if not np.allclose(graph(*probe).numpy(), expected, atol=1e-5, rtol=0):
                    return None
    except Exception as exc:  # tracing is an optimisation: any failure means the Keras path answers
        logging.getLogger(__name__).debug("no traced graph for %s: %s", model.name, exc)
        return None

    def run(inputs: dict) -> np.ndarray:
        with torch.no_grad():
            xs = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)) for n in names]
            return graph(*xs).numpy()

    return run
