"""The Python API: one function per CLI verb, plus a scikit-learn style estimator."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from movie_genres import runs
from movie_genres.estimator import GenreClassifier  # noqa: F401 - re-exported: the scikit-learn estimator lives in estimator.py
from movie_genres.io import new_run_dir, write_json
from movie_genres.models.registry import MODELS
from movie_genres.training.train import train

log = logging.getLogger(__name__)

# The models `train --model all` trains, in the registry's order: the original two, the pretrained heads, the fusions.
ALL_MODELS = MODELS


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
        done, failed = train_parallel(models, kwargs, root / runs.LOGS, jobs, overrides["threads"])
        for name, (_, seconds) in done.items():
            job[name] = {"seconds": round(seconds, 1)}
    done_runs = [root / n for n in models if n in job]
    scores = {}
    for run in done_runs:
        metrics = runs.read_metrics(run)
        job[run.name]["reused"] = "reused" in metrics
        scores[run.name] = metrics["tuned"]["micro_f1"]
        log.info("=== %s: %.0fs%s, validation micro-F1 %.3f", run.name, job[run.name]["seconds"],
                 " (reused from the run cache)" if job[run.name]["reused"] else "", scores[run.name])
    if done_runs:
        best = max(scores, key=scores.get)
        write_json(root / runs.BEST, {"run": best, "chosen_by": "validation micro-F1 (tuned thresholds)", "validation_micro_f1": scores})
        t0 = time.perf_counter()
        report(done_runs, root / runs.REPORT, data=data_dir, explain=root / best)
        job["report"] = {"seconds": round(time.perf_counter() - t0, 1)}
    write_json(root / runs.JOB, {"seconds": round(time.perf_counter() - started, 1), "jobs": jobs,
                                   "threads": overrides.get("threads", 0), "steps": job, "failed": failed})
    if failed:
        raise TrainingFailed(failed, root)
    log.info("=== done in %.0fs; best on validation: %s", time.perf_counter() - started, best)
    return root


def report(run_dirs, output="report.html", data=None, explain=None) -> Path:
    """One HTML report comparing run folders (a folder from ``train --model all`` expands to its runs).

    ``explain``: a run folder (or a folder of runs: its best); the sample films' cards then show why it gives each its
    most probable genre (words and poster regions, as ``explain`` computes them; about a second a film)."""
    from movie_genres.reporting import write_report

    expanded = runs.expand_runs(run_dirs)
    if data is None and expanded:
        data = runs.read_config(expanded[0]).get("data_dir")
        data = data if data and Path(data).is_dir() else None
    explanations = _sample_explanations(explain, expanded, data) if explain is not None and data is not None else None
    return write_report(expanded, output, data_dir=data, explanations=explanations)


def _sample_explanations(run_dir, run_dirs, data, n: int = 24, seed: int = 0) -> dict[str, dict]:
    """``{Id: explanation}`` for the films the report's samples section shows (the same ``n`` and ``seed``), each for
    ``run_dir``'s most probable genre; a film it cannot explain is left without one (logged)."""
    import numpy as np

    from movie_genres.data.dataset import load_dataset
    from movie_genres.explanation import explain as _explain
    from movie_genres.predictor import Predictor
    from movie_genres.reporting import load_run, pick_sample_ids

    t0 = time.perf_counter()
    predictor = Predictor.load(runs.resolve_run(run_dir))
    shown = [r for r in map(load_run, run_dirs) if r.probs is not None]
    ds = load_dataset(data)
    row_of = {fid: i for i, fid in enumerate(ds.ids)}
    trained = np.asarray(predictor.trained, dtype=bool)
    out = {}
    for fid in pick_sample_ids(shown, None, n, seed):
        i = row_of.get(fid)
        if i is None:
            continue
        try:
            pred, image, warnings = _one_film(predictor, ds.poster_paths[i], ds.overviews[i])
            probs = pred.predict_one(image, ds.overviews[i])["probabilities"]
            genre = max((g for g, t in zip(pred.genres, trained) if t), key=lambda g: probs[g])
            e = _explain(pred, image, ds.overviews[i], [genre])
        except (ValueError, OSError) as err:
            log.warning("report: film %s not explained (%s)", fid, err)
            continue
        out[fid] = {**e, "genre": genre, "label": predictor.run_dir.name, "warnings": warnings}
    log.info("report: explained %d sample films with %s in %.0fs", len(out), predictor.run_dir.name, time.perf_counter() - t0)
    return out


def _one_film(run_dir, poster, overview):
    """(predictor, decoded poster or None, warnings) for one film: a poster that cannot be used is left out with a
    warning when the model also reads the overview, and raises :class:`PosterError` when it does not."""
    from PIL import Image

    from movie_genres.data.text import has_surrogates
    from movie_genres.features.posters import PosterError, open_poster
    from movie_genres.predictor import Predictor

    if poster is None and not (overview or "").strip():
        raise ValueError("give a poster, an overview, or both")
    warnings = []
    if overview and has_surrogates(overview):
        warnings.append("the overview held characters that are not text (undecodable bytes); they were read as U+FFFD")
    image = problem = None
    if poster is not None:
        try:
            image = open_poster(poster)
        except PosterError as exc:
            problem = exc
        except Image.DecompressionBombError as exc:  # over Pillow's pixel limit: as unusable as any broken poster
            problem = PosterError("poster too large", str(exc))
    if problem is not None and not (overview or "").strip():
        raise problem
    pred = run_dir if isinstance(run_dir, Predictor) else Predictor.load(run_dir)
    if problem is not None:
        if "overview" not in pred.modalities:
            detail = str(problem).split(": ", 1)[-1] + (f" ({poster})" if isinstance(poster, (str, Path)) else "")
            raise PosterError(problem.reason, f"{detail}; model '{pred.model_name}' reads only the poster")
        warnings.append(f"the poster was not used ({problem}); the genres come from the overview alone")
    return pred, image, warnings


def predict(run_dir, poster=None, overview: str | None = None) -> dict:
    """Genres of one film from a poster file and/or an overview.

    A poster that cannot be used (unreadable, truncated, too large, ...) does not stop a model that also reads the
    overview: it answers from the overview, and the answer's ``warnings`` say why the poster was left out. A model that
    reads only posters raises :class:`~movie_genres.features.posters.PosterError`.

    Example:
        >>> predict("runs/main", poster="poster.jpg", overview="Two friends rob a bank.")["genres"]  # doctest: +SKIP
    """
    pred, image, warnings = _one_film(run_dir, poster, overview)
    result = pred.predict_one(image, overview)
    if warnings:
        result["warnings"] = warnings + result.get("warnings", [])
    return result


def predict_batch(run_dir, data=None, manifest=None, output=None, engine: str = "local", batch_size: int = 64,
                  actors: int | None = None, address: str | None = None, progress: bool = True) -> dict:
    """Tag a whole catalogue: one row per film in ``output`` (.parquet or .csv); returns the summary.

    ``data``: a dataset-format folder (genre columns optional) or a folder of posters; ``manifest``: a CSV or Parquet
    file with ``Id``, ``poster``, ``overview``. Run again, the same call continues where it stopped. ``engine="ray"``
    runs on Ray actors (a local Ray, or the cluster at ``address``); see docs/CLUSTER.md.

    Example:
        >>> predict_batch("runs/main", manifest="films.parquet", output="tags.parquet")["ok"]  # doctest: +SKIP
    """
    from movie_genres.catalogue.job import predict_catalogue

    return predict_catalogue(run_dir, data, manifest, output, engine, batch_size, actors, address, progress)


def encode(data=None, manifest=None, encoders=None, engine: str = "local", batch_size: int = 64,
           actors: int | None = None, address: str | None = None, progress: bool = True) -> dict:
    """Fill the feature cache that ``train`` reads with a catalogue's encoder features (default: the default
    config's encoders); returns what was encoded, found cached, or could not be read.

    Example:
        >>> encode("../shared/data/multimodal-imdb", engine="ray")["encoders"]  # doctest: +SKIP
    """
    from movie_genres.catalogue.encode import encode_catalogue

    return encode_catalogue(data, manifest, encoders, engine, batch_size, actors, address, progress)


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

    predictor, image, warnings = _one_film(run_dir, poster, overview)
    result = _explain(predictor, image, overview, genres)
    if warnings:
        result["warnings"] = warnings
    return result


def evaluate(run_dir, data=None, output=None) -> dict:
    """Score ``run_dir`` on every usable film of ``data`` (for example one it has never seen); JSON to ``output``.

    ``output`` is checked first, so a path that cannot be written fails before any work. The top-level metrics use
    the run's tuned thresholds (chosen on its validation split), ``at_0_5`` uses 0.5. Films the model cannot read are
    not scored: ``n_skipped`` / ``skipped`` count them by reason. Films scored with one of the model's inputs missing
    or unusable (a fusion model given a broken poster) are counted in ``n_partial`` / ``partial`` by reason, and
    ``notes`` counts rows with a missing poster or an empty overview and the posters converted to RGB or not JPEG.

    Example:
        >>> m = evaluate("runs/main", "/data/heldout", "heldout.json")  # doctest: +SKIP
        >>> m["micro_f1"], m["n_skipped"], m["partial"]  # doctest: +SKIP
    """
    from collections import Counter

    import numpy as np

    from movie_genres.data.dataset import load_dataset
    from movie_genres.evaluation.metrics import full_metrics
    from movie_genres.io import check_writable
    from movie_genres.predictor import Predictor

    if output:
        check_writable(output)
    pred = Predictor.load(run_dir)
    ds = load_dataset(data)
    if ds.genres != pred.genres:
        raise ValueError(f"dataset genres {ds.genres} differ from the run's {pred.genres}")
    inputs, usable, problems = pred.transform(ds.poster_paths, ds.overviews, progress=True)
    if not usable.any():
        raise ValueError(f"no film in {ds.root} is usable by model '{pred.model_name}' ({dict(problems)})")
    probs = pred.scores({k: v[usable] for k, v in inputs.items()})
    y = ds.labels[usable].astype(np.int8)
    m = full_metrics(pred.genres, y, probs, pred.thresholds_, pred.trained, pred.config.get("min_one_genre", True), cross_fit=False)
    missing, notes = _unread_inputs(pred, ds, inputs, usable)
    skipped, partial, n_partial = Counter(ds.skipped), Counter(), 0
    for scored, reasons in zip(usable, missing):
        if scored:
            partial.update(reasons)
            n_partial += bool(reasons)
        elif len(reasons) == 1:
            skipped[reasons[0]] += 1
        else:
            skipped[f"no usable input ({', '.join(reasons)})" if reasons else "unusable input"] += 1
    dropped = int((~usable).sum())
    out = {
        **m["tuned"],
        "n_films": int(usable.sum()),
        "n_skipped": int(ds.n_skipped + dropped),
        "n_partial": n_partial,
        "at_0_5": m["at_0_5"],
        "per_genre": m["per_genre"],
        "baselines": m["baselines"],
        "skipped": dict(skipped),
        "partial": dict(partial),
        "notes": dict(notes),
        "model": pred.model_name,
        "run": str(pred.run_dir),
        "data": str(ds.root),
    }
    summary = f"{pred.model_name} on {ds.root}: {out['n_films']} films scored"
    for key, text in (("skipped", "skipped"), ("partial", "scored without an input"), ("notes", "notes")):
        if out[key]:
            summary += f"; {text}: " + ", ".join(f"{v} {k}" for k, v in sorted(out[key].items()))
    (log.warning if dropped or partial else log.info)("%s", summary)
    if output:
        write_json(output, out)
    return out


def _unread_inputs(pred, ds, inputs: dict, usable) -> tuple[list[list[str]], dict[str, int]]:
    """Per film, why each input the model reads was not used ("poster truncated", "empty overview", ...); and the
    dataset's notes plus the poster conversions (greyscale, CMYK, not JPEG) the decoder made."""
    from collections import Counter

    from movie_genres.features.posters import PosterError, decode_posters, open_poster

    n = len(ds)
    has = {m: inputs[f"has_{m}"][:, 0] > 0 if f"has_{m}" in inputs else usable for m in pred.modalities}
    notes = Counter(ds.notes)
    if "poster" in pred.modalities:
        paths = [p for p in ds.poster_paths if p is not None]
        notes.update(decode_posters(paths, 64, None, pred.config.get("workers", 2), progress=False)[3])
    missing: list[list[str]] = [[] for _ in range(n)]
    for i in range(n):
        if "poster" in has and not has["poster"][i]:
            path, reason = ds.poster_paths[i], "poster missing"
            if path is not None:
                try:
                    open_poster(path, 64)
                    reason = "poster unusable"
                except PosterError as exc:
                    reason = exc.reason
            missing[i].append(reason)
        if "overview" in has and not has["overview"][i]:
            missing[i].append("empty overview")
    return missing, notes


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, **limits) -> None:
    """Serve a run folder (the API and the web page) until interrupted.

    ``limits``: ``max_upload_bytes``, ``max_overview_chars``, ``max_batch``, ``max_image_pixels``, ``max_batch_bytes``,
    ``max_batch_pixels`` (:class:`movie_genres.service.limits.Limits`), ``limit_concurrency``, ``log_level``.

    Example:
        >>> serve("runs/main", port=8000, max_batch=8, max_upload_bytes=2 * 1024 * 1024)  # doctest: +SKIP
    """
    from movie_genres.service.app import serve as _serve

    _serve(run_dir, host=host, port=port, **limits)

