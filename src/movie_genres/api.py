"""The Python API: one function per CLI verb, plus a scikit-learn style estimator."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from movie_genres.io import new_run_dir, read_json, write_json
from movie_genres.training.train import train

log = logging.getLogger(__name__)

# The order `train --model all` trains in: the original two, then the pretrained heads and the fusions.
ALL_MODELS = ("cnn", "bilstm", "text", "image", "early", "gmu", "late", "ensemble")


def train_all(data=None, out="runs/main", epochs: int | None = None, models=ALL_MODELS, reuse: bool = True, **overrides) -> Path:
    """Train every model into ``out/<model>``, pick the best on validation micro-F1, write ``out/report.html``.

    A model whose identical finished run is in the run cache is copied, not retrained (``reuse=False`` retrains);
    ``late`` and ``ensemble`` are composed from the text, poster, early and GMU runs trained just before them.

    ``out/best.json`` names the best run, so ``evaluate out``, ``predict out`` and ``serve out`` use it.

    Example:
        >>> train_all("../shared/data/multimodal-imdb", "runs/main")  # doctest: +SKIP
    """
    from movie_genres.data.dataset import resolve_data_dir

    data_dir = resolve_data_dir(data)
    root = new_run_dir(out)
    runs, job = [], {}
    started = time.perf_counter()
    for name in models:
        log.info("=== training %s", name)
        t0 = time.perf_counter()
        runs.append(train(name, data_dir, root / name, epochs=epochs, reuse=reuse, reuse_members=True, **overrides))
        job[name] = {"seconds": round(time.perf_counter() - t0, 1), "reused": "reused" in read_json(runs[-1] / "metrics.json")}
        log.info("=== %s: %.0fs%s", name, job[name]["seconds"], " (reused from the run cache)" if job[name]["reused"] else "")
    scores = {r.name: read_json(r / "metrics.json")["tuned"]["micro_f1"] for r in runs}
    best = max(scores, key=scores.get)
    write_json(root / "best.json", {"run": best, "chosen_by": "validation micro-F1 (tuned thresholds)", "validation_micro_f1": scores})
    t0 = time.perf_counter()
    report(runs, root / "report.html", data=data_dir)
    job["report"] = {"seconds": round(time.perf_counter() - t0, 1)}
    write_json(root / "job.json", {"seconds": round(time.perf_counter() - started, 1), "steps": job})
    log.info("=== done in %.0fs; best on validation: %s", time.perf_counter() - started, best)
    return root


def report(runs, output="report.html", data=None) -> Path:
    """One HTML report comparing run folders (a folder from ``train --model all`` expands to its runs)."""
    from movie_genres.reporting import write_report

    expanded = []
    for r in runs:
        r = Path(r)
        if (r / "best.json").exists() and not (r / "model.keras").exists():
            expanded += sorted((p for p in r.iterdir() if (p / "metrics.json").exists()), key=lambda p: ALL_MODELS.index(p.name) if p.name in ALL_MODELS else 99)
        else:
            expanded.append(r)
    if data is None and expanded:
        data = read_json(expanded[0] / "config.json").get("data_dir")
        data = data if data and Path(data).is_dir() else None
    return write_report(expanded, output, data_dir=data)


def predict(run_dir, poster=None, overview: str | None = None) -> dict:
    """Genres of one film from a poster file and/or an overview.

    Example:
        >>> predict("runs/main", poster="poster.jpg", overview="Two friends rob a bank.")["genres"]  # doctest: +SKIP
    """
    from movie_genres.features.posters import open_poster
    from movie_genres.predictor import Predictor

    if poster is None and not (overview or "").strip():
        raise ValueError("give a poster, an overview, or both")
    image = open_poster(poster) if poster is not None else None
    return Predictor.load(run_dir).predict_one(image, overview)


def evaluate(run_dir, data=None, output=None) -> dict:
    from movie_genres.evaluation.evaluate import evaluate as _evaluate

    return _evaluate(run_dir, data, output)


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, **limits) -> None:
    from movie_genres.service.app import serve as _serve

    _serve(run_dir, host=host, port=port, **limits)


class GenreClassifier:
    """scikit-learn style wrapper: ``fit`` trains a run folder, ``predict_proba`` / ``predict`` score raw films.

    Example:
        >>> clf = GenreClassifier("text", epochs=5).fit("../shared/data/multimodal-imdb", out="runs/text")  # doctest: +SKIP
        >>> clf.predict_proba([None], ["A haunted house."]).shape  # doctest: +SKIP
        (1, 25)
    """

    def __init__(self, model: str = "cnn", **config):
        self.model = model
        self.config = config

    def fit(self, data=None, out=None) -> "GenreClassifier":
        from movie_genres.predictor import Predictor

        self.run_dir_ = train(self.model, data, out, **self.config)
        self.predictor_ = Predictor.load(self.run_dir_)
        self.genres_ = self.predictor_.genres
        self.thresholds_ = self.predictor_.thresholds_
        return self

    @classmethod
    def from_run(cls, run_dir) -> "GenreClassifier":
        from movie_genres.predictor import Predictor

        self = cls.__new__(cls)
        self.predictor_ = Predictor.load(run_dir)
        self.run_dir_ = self.predictor_.run_dir
        self.model, self.config = self.predictor_.model_name, {}
        self.genres_, self.thresholds_ = self.predictor_.genres, self.predictor_.thresholds_
        return self

    def predict_proba(self, posters, overviews):
        return self.predictor_.predict_proba(posters, overviews)

    def predict(self, posters, overviews):
        return self.predictor_.predict(posters, overviews)
