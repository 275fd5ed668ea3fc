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


def train_all(data=None, out="runs/main", epochs: int | None = None, models=ALL_MODELS, reuse: bool = True,
              jobs: int | None = None, **overrides) -> Path:
    """Train every model into ``out/<model>``, pick the best on validation micro-F1, write ``out/report.html``.

    A model whose identical finished run is in the run cache is copied, not retrained (``reuse=False`` retrains);
    ``late`` and ``ensemble`` are composed of the text, poster, early and GMU runs of the same job.

    ``jobs`` models train at once, each in its own process with ``cores // jobs`` threads (default: 2 jobs where
    there are 2 cores; see :mod:`movie_genres.training.parallel`); their output goes to ``out/logs/<model>.log``.
    ``jobs=1`` trains them one after another in this process. The thread count is part of each run's config
    (``threads``), as it can change a result in its last digits. Workers are started the "spawn" way, so a script
    that calls this with ``jobs > 1`` needs the usual ``if __name__ == "__main__":`` guard.

    ``out/best.json`` names the best run, so ``evaluate out``, ``predict out`` and ``serve out`` use it.

    Example:
        >>> train_all("../shared/data/multimodal-imdb", "runs/main")  # doctest: +SKIP
    """
    from movie_genres.config import MODEL_DEFAULTS, make_config
    from movie_genres.data.dataset import resolve_data_dir
    from movie_genres.models.registry import check_model_name
    from movie_genres.training.parallel import TrainingFailed, available_cores, default_jobs, train_parallel

    models = [check_model_name(m) for m in models]
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    jobs = min(jobs, len(models))
    if jobs > 1:
        overrides = {**overrides, "threads": overrides.get("threads") or max(1, available_cores() // jobs)}
    for name in models:  # a bad setting fails here, before any worker starts
        make_config(model=name, **{**MODEL_DEFAULTS.get(name, {}), **overrides})
    data_dir = resolve_data_dir(data)
    root = new_run_dir(out)
    started = time.perf_counter()
    job, failed = {}, {}
    if jobs == 1:
        for name in models:
            log.info("=== training %s", name)
            t0 = time.perf_counter()
            train(name, data_dir, root / name, epochs=epochs, reuse=reuse, reuse_members=True, **overrides)
            job[name] = {"seconds": round(time.perf_counter() - t0, 1)}
            log.info("=== %s: %.0fs", name, job[name]["seconds"])
    else:
        log.info("=== training %d models, %d at a time with %d thread(s) each", len(models), jobs, overrides["threads"])
        kwargs = {n: dict(data=data_dir, out=root / n, epochs=epochs, reuse=reuse, reuse_members=True, **overrides) for n in models}
        done, failed = train_parallel(models, kwargs, root / "logs", jobs, overrides["threads"])
        for name, (_, seconds) in done.items():
            job[name] = {"seconds": round(seconds, 1)}
    runs = [root / n for n in models if n in job]
    scores = {}
    for run in runs:
        metrics = read_json(run / "metrics.json")
        job[run.name]["reused"] = "reused" in metrics
        scores[run.name] = metrics["tuned"]["micro_f1"]
        log.info("=== %s: %.0fs%s, validation micro-F1 %.3f", run.name, job[run.name]["seconds"],
                 " (reused from the run cache)" if job[run.name]["reused"] else "", scores[run.name])
    if runs:
        best = max(scores, key=scores.get)
        write_json(root / "best.json", {"run": best, "chosen_by": "validation micro-F1 (tuned thresholds)", "validation_micro_f1": scores})
        t0 = time.perf_counter()
        report(runs, root / "report.html", data=data_dir)
        job["report"] = {"seconds": round(time.perf_counter() - t0, 1)}
    write_json(root / "job.json", {"seconds": round(time.perf_counter() - started, 1), "jobs": jobs,
                                   "threads": overrides.get("threads", 0), "steps": job, "failed": failed})
    if failed:
        raise TrainingFailed(failed, root)
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


def explain(run_dir, poster=None, overview: str | None = None, genres=None) -> dict:
    """Why one film gets its genres: overview words and poster regions by how much they move each genre, and each
    genre's probability from the poster alone, the overview alone and both (see :mod:`movie_genres.explanation`).

    ``run_dir``: a run folder or a loaded :class:`~movie_genres.predictor.Predictor`; ``genres``: the genres to explain
    (default: the decided ones).

    Example:
        >>> explain("runs/main", overview="A ghost haunts a family.")["explanations"]["Horror"]["words"][0]  # doctest: +SKIP
        {'i': 1, 'text': 'ghost', 'weight': 0.21}
    """
    from movie_genres.explanation import explain as _explain
    from movie_genres.features.posters import open_poster
    from movie_genres.predictor import Predictor

    if poster is None and not (overview or "").strip():
        raise ValueError("give a poster, an overview, or both")
    image = open_poster(poster) if poster is not None else None
    predictor = run_dir if isinstance(run_dir, Predictor) else Predictor.load(run_dir)
    return _explain(predictor, image, overview, genres)


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
