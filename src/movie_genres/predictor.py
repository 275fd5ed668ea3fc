"""Load a run folder once and predict genres for raw films (poster image and/or overview text).

Scores and decisions stay separate, in the scikit-learn spirit: :meth:`Predictor.predict_proba` gives a probability
per genre, :meth:`Predictor.predict` the decisions at the run's tuned thresholds (every film gets at least one genre).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from movie_genres import __version__
from movie_genres.evaluation.metrics import decide
from movie_genres.io import read_json


class RunError(ValueError):
    """A folder is not a complete run folder."""


def resolve_run(run_dir: str | Path) -> Path:
    """A run folder, or a folder of runs written by ``train --model all`` (its ``best.json`` names the best run)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist")
    if (run_dir / "best.json").exists() and not (run_dir / "model.keras").exists():
        return run_dir / read_json(run_dir / "best.json")["run"]
    missing = [f for f in ("model.keras", "featurizer.json", "genres.json", "thresholds.json", "config.json") if not (run_dir / f).exists()]
    if missing:
        hint = " (an interrupted run: continue it with movie-genres train --resume)" if (run_dir / "checkpoint").exists() else ""
        raise RunError(f"{run_dir} is not a finished run folder: missing {', '.join(missing)}{hint}")
    return run_dir


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

    @classmethod
    def load(cls, run_dir: str | Path) -> "Predictor":
        import keras

        import movie_genres.models.heads  # noqa: F401  (registers custom layers)
        import movie_genres.models.losses  # noqa: F401
        from movie_genres.features.inputs import load_featurizer

        run_dir = resolve_run(run_dir)
        model = keras.saving.load_model(run_dir / "model.keras", compile=False)
        g = read_json(run_dir / "genres.json")
        thr = read_json(run_dir / "thresholds.json")
        if thr["genres"] != g["genres"]:
            raise RunError(f"{run_dir}: thresholds.json and genres.json disagree on the genre list")
        return cls(run_dir, model, load_featurizer(run_dir), g["genres"], g["trained"], thr["thresholds"], read_json(run_dir / "config.json"))

    # -- scores
    def transform(self, posters: list, overviews: list, progress: bool = False):
        """Raw films -> (model inputs, usable mask, problem counts)."""
        inputs, usable, problems = self.featurizer.transform(list(posters), list(overviews), progress=progress)
        if "poster" in inputs:
            inputs["poster"] = inputs["poster"].astype(np.float32) / 255.0
        return inputs, usable, problems

    def scores(self, inputs: dict) -> np.ndarray:
        from movie_genres.training.train import predict_proba_arrays

        probs = predict_proba_arrays(self.model, inputs)
        probs[:, ~self.trained] = 0.0  # genres too rare to learn are never scored
        return probs

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
        return results

    def predict_one(self, poster=None, overview: str | None = None) -> dict:
        return self.predict_many([(poster, overview)])[0]
