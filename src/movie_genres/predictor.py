"""Load a run folder once and predict genres for raw films (poster image and/or overview text).

Scores and decisions stay separate, in the scikit-learn spirit: :meth:`Predictor.predict_proba` gives a probability
per genre, :meth:`Predictor.predict` the decisions at the run's tuned thresholds (every film gets at least one genre).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from movie_genres import runs
from movie_genres._version import __version__
from movie_genres.data.text import clean_overview
from movie_genres.evaluation.metrics import decide
from movie_genres.models.inference import predict_proba_arrays
from movie_genres.runs import RunError, resolve_run

__all__ = ["Predictor", "RunError", "resolve_run"]  # RunError, resolve_run: from movie_genres.runs


class Predictor:
    """A trained run, loaded once: model, preprocessing and thresholds.

    Example:
        >>> p = Predictor.load("runs/main")  # doctest: +SKIP
        >>> p.predict_one(poster=None, overview="A detective hunts a killer.")["genres"]  # doctest: +SKIP
        ['Crime', 'Drama', 'Thriller']
    """

    def __init__(self, run_dir: Path, model, featurizer, genres, trained, thresholds, config):
        self.run_dir, self.model, self.featurizer = run_dir, model, featurizer
        self.genres = list(genres)
        self.trained = np.asarray(trained, dtype=bool)
        self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.config = config
        self.model_name = config.get("model", "?")
        self.version = config.get("version", __version__)
        self.modalities = set(featurizer.modalities)
        self._graph = None  # the traced single-film graph, built by load() (False: not available)

    @classmethod
    def load(cls, run_dir: str | Path) -> "Predictor":
        import keras

        from movie_genres.features.inputs import load_featurizer
        from movie_genres.models.cnn import with_input_scaling
        from movie_genres.models.registry import register_layers

        register_layers()

        run_dir = resolve_run(run_dir)
        model = with_input_scaling(keras.saving.load_model(run_dir / runs.MODEL, compile=False))
        g = runs.read_genres(run_dir)
        thr = runs.read_thresholds(run_dir, genres=g["genres"])
        pred = cls(run_dir, model, load_featurizer(run_dir), g["genres"], g["trained"], thr["thresholds"], runs.read_config(run_dir))
        pred._single_film_graph()  # traced now, so no request pays for it
        return pred

    # -- scores
    def transform(self, posters: list, overviews: list, progress: bool = False, cache: bool | None = None):
        """Raw films -> (model inputs, usable mask, problem counts). ``cache=False``: never touch the disk caches."""
        overviews = [clean_overview(o) for o in overviews]  # lone surrogates would crash the tokenizers
        return self.featurizer.transform(list(posters), overviews, progress=progress, cache=cache)

    def scores(self, inputs: dict) -> np.ndarray:
        n = len(next(iter(inputs.values())))
        fast = self._single_film_graph() if n == 1 else None
        probs = fast(inputs) if fast is not None else predict_proba_arrays(self.model, inputs)
        probs[:, ~self.trained] = 0.0  # genres too rare to learn are never scored
        return probs

    def _single_film_graph(self):
        """One film through the model as a traced TorchScript graph (torch backend, fixed-size inputs only).

        Keras' per-layer call overhead dominates one film's forward pass (about 9 ms for the ensemble); the traced
        graph runs the same torch operations without it. It is checked against the Keras model once, on random
        inputs, and not used if it differs (or cannot be traced); the Keras model then answers as before.
        """
        if self._graph is None:
            self._graph = _trace_single_film(self.model) or False
        return self._graph or None

    def predict_proba(self, posters: list, overviews: list) -> np.ndarray:
        """Probabilities (n, 25); rows of films this model cannot read are NaN."""
        inputs, usable, _ = self.transform(posters, overviews)
        probs = np.full((len(usable), len(self.genres)), np.nan)
        if usable.any():
            probs[usable] = self.scores({k: v[usable] for k, v in inputs.items()})
        return probs

    def predict(self, posters: list, overviews: list) -> np.ndarray:
        """0/1 decisions (n, 25) at the run's thresholds; films it cannot read get all zeros."""
        probs = self.predict_proba(posters, overviews)
        ok = ~np.isnan(probs).any(axis=1)
        out = np.zeros(probs.shape, dtype=np.int8)
        if ok.any():
            out[ok] = decide(probs[ok], self.thresholds_, self.config.get("min_one_genre", True), self.trained)
        return out

    # -- one film at a time (CLI, service)
    def predict_many(self, films: list[tuple]) -> list[dict]:
        """``films``: (poster PIL image/path or None, overview or None) pairs -> one result dict each."""
        posters = [p for p, _ in films]
        overviews = [(o or "").strip() or None for _, o in films]
        used = []
        for p, o in zip(posters, overviews):
            u = []
            if p is not None and "poster" in self.modalities:
                u.append("poster")
            if o and "overview" in self.modalities:
                u.append("overview")
            used.append(u)
        inputs, usable, problems = self.transform(posters, [o or "" for o in overviews])
        poster_ok = inputs["has_poster"][:, 0] > 0 if "has_poster" in inputs else usable
        results = []
        probs = np.full((len(films), len(self.genres)), np.nan)
        if usable.any():
            probs[usable] = self.scores({k: v[usable] for k, v in inputs.items()})
        for i in range(len(films)):
            if not usable[i]:
                need = " or ".join(sorted(self.modalities))
                raise ValueError(f"model '{self.model_name}' needs a usable {need}; film {i + 1} has none ({', '.join(problems) or 'no input'})")
            decided = decide(probs[i : i + 1], self.thresholds_, self.config.get("min_one_genre", True), self.trained)[0]
            results.append(
                {
                    "probabilities": {g: round(float(p), 4) for g, p in zip(self.genres, probs[i])},
                    "genres": [g for g, d in zip(self.genres, decided) if d],
                    "inputs_used": used[i],
                    "model": self.model_name,
                    "version": self.version,
                }
            )
            if "poster" in used[i] and not poster_ok[i]:  # a fusion model answered from the overview alone
                results[-1]["inputs_used"].remove("poster")
                results[-1]["warnings"] = ["the poster could not be used; the genres come from the overview alone"]
        return results

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
