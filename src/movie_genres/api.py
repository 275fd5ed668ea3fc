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
    from movie_genres.io import available_cores
    from movie_genres.models.registry import check_model_name
    from movie_genres.training.parallel import TrainingFailed, default_jobs, train_parallel

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
        data = data if data and Path(data).exists() else None
    explanations = _sample_explanations(explain, expanded, data) if explain is not None and data is not None else None
    return write_report(expanded, output, data_dir=data, explanations=explanations)


def _sample_explanations(run_dir, run_dirs, data, n: int = 24, seed: int = 0) -> dict[str, dict]:
    """``{Id: explanation}`` for the films the report's samples section shows (the same ``n`` and ``seed``), each for
    ``run_dir``'s most probable genre; a film it cannot explain is left without one (logged)."""
    import numpy as np

    from movie_genres.data.dataset import load_dataset
    from movie_genres.explanation import explain as _explain
    from movie_genres.features.posters import PosterError, open_poster
    from movie_genres.predictor import Predictor
    from movie_genres.reporting import load_run, pick_sample_ids

    t0 = time.perf_counter()
    predictor = Predictor.load(runs.resolve_run(run_dir))
    shown = [r for r in map(load_run, run_dirs) if r.probs is not None]
    ds = load_dataset(data)
    row_of = {fid: i for i, fid in enumerate(ds.ids)}
    ids = [fid for fid in pick_sample_ids(shown, None, n, seed) if fid in row_of]
    posters = []
    for fid in ids:  # the report shows these films as the model sees them: a poster it cannot read is left out
        try:
            posters.append(open_poster(ds.poster_paths[row_of[fid]]) if ds.poster_paths[row_of[fid]] else None)
        except PosterError:
            posters.append(None)
    overviews = [ds.overviews[row_of[fid]] for fid in ids]
    answers = predictor.answer(posters, overviews)
    out = {}
    for k, fid in enumerate(ids):
        if not answers.usable[k]:
            log.warning("report: film %s not explained (%s)", fid, answers.status[k])
            continue
        probs = np.where(predictor.trained, answers.probs[k], -np.inf)
        genre = predictor.genres[int(np.argmax(probs))]
        try:
            e = _explain(predictor, posters[k], overviews[k], [genre])
        except (ValueError, OSError) as err:
            log.warning("report: film %s not explained (%s)", fid, err)
            continue
        out[fid] = {**e, "genre": genre, "label": predictor.run_dir.name, "warnings": answers.warnings[k]}
    log.info("report: explained %d sample films with %s in %.0fs", len(out), predictor.run_dir.name, time.perf_counter() - t0)
    return out


def _one_film(run_dir, poster, overview):
    """(predictor, decoded poster or None) for one film given to ``predict`` / ``explain``.

    The poster policy of every one-film surface (the CLI, this API, ``GenreClassifier``, HTTP): a poster the caller
    names must be usable. A path with no file, or a file that will not decode, raises
    :class:`~movie_genres.features.posters.PosterError` with the reason, whatever the model reads."""
    from movie_genres.features.posters import PosterError, open_poster
    from movie_genres.predictor import Predictor

    if poster is None and not (overview or "").strip():
        raise ValueError("give a poster, an overview, or both")
    image = None
    if poster is not None:
        try:
            image = open_poster(poster)
        except PosterError as exc:
            where = f" ({poster})" if isinstance(poster, (str, Path)) else ""
            raise PosterError(exc.reason, f"{str(exc).split(': ', 1)[-1]}{where}; give a readable image, or no poster") from None
    pred = run_dir if isinstance(run_dir, Predictor) else Predictor.load(run_dir)
    return pred, image


def predict(run_dir, poster=None, overview: str | None = None, threshold=None, top_k: int | None = None) -> dict:
    """Genres of one film from a poster file and/or an overview.

    A poster that is named must be usable: a missing or undecodable file raises
    :class:`~movie_genres.features.posters.PosterError` (give a readable poster, or none). The answer has
    ``probabilities``, ``genres`` (decided at the run's thresholds), ``inputs_used``, ``status`` (``ok``, or
    ``partial: <reason>`` when a fusion model had one input), ``model``, ``version`` and any ``warnings``.
    ``threshold`` (a number, ``"f1"``, ``"precision:P"``, ``"recall:R"``) and ``top_k`` decide otherwise than the run's
    thresholds, without retraining.

    Example:
        >>> predict("runs/main", poster="poster.jpg", overview="Two friends rob a bank.")["genres"]  # doctest: +SKIP
    """
    pred, image = _one_film(run_dir, poster, overview)
    return pred.with_decisions(threshold, top_k).predict_one(image, overview)


def predict_batch(run_dir, data=None, manifest=None, output=None, engine: str = "local", batch_size: int = 64,
                  actors: int | None = None, address: str | None = None, progress: bool = True, threshold=None,
                  top_k: int | None = None, review_band: float | None = None) -> dict:
    """Tag a whole catalogue: one row per film in ``output`` (.parquet or .csv); returns the summary.

    ``data``: a dataset-format folder (genre columns optional) or a folder of posters; ``manifest``: a CSV or Parquet
    file with ``Id``, ``poster``, ``overview``. Run again, the same call continues where it stopped. ``engine="ray"``
    runs on Ray actors (a local Ray, or the cluster at ``address``); see docs/CLUSTER.md. ``threshold`` / ``top_k``
    decide otherwise than the run's thresholds; the ``review`` column lists labels within ``review_band`` of theirs.

    Example:
        >>> predict_batch("runs/main", manifest="films.parquet", output="tags.parquet")["ok"]  # doctest: +SKIP
    """
    from movie_genres.catalogue.job import predict_catalogue

    return predict_catalogue(run_dir, data, manifest, output, engine, batch_size, actors, address, progress,
                             threshold=threshold, top_k=top_k, **({} if review_band is None else {"review_band": review_band}))


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

    predictor, image = _one_film(run_dir, poster, overview)
    result = _explain(predictor, image, overview, genres)
    if result.get("warnings") == []:
        del result["warnings"]
    return result


def evaluate(run_dir, data=None, output=None, include_training_films: bool = False, label_column: str | None = None) -> dict:
    """Score ``run_dir`` honestly; JSON to ``output``.

    With no ``data``, it scores the run's own validation split (the films its ``split.csv`` held out, on the dataset
    it was trained on), with the thresholds cross-fitted on those films as training reported them
    (``"source": "validation split"``). On any ``data`` it scores every usable film the run did not train on: films
    in the run's training split are excluded and counted (``excluded_training_films``); ``include_training_films``
    keeps them, and the answer says so (``"includes_training_films": true``).

    ``data`` is a dataset folder or a CSV / Parquet manifest (its labels in ``label_column``, default the run's). The
    source's labels are matched to the run's by name: labels the run does not know are counted by film and named
    (``unknown_labels``), never silently dropped; a run label a folder has no column for is not scored
    (``unscored_labels``), while a manifest's label lists are complete, so a label they never name is scored absent.

    ``output`` is checked first, so a path that cannot be written fails before any work. The top-level metrics use
    the run's tuned thresholds, ``at_0_5`` uses 0.5. Films the model cannot read are not scored: ``n_skipped`` /
    ``skipped`` count them by reason. Films scored with one of the model's inputs missing or unusable (a fusion
    model given a broken poster) are counted in ``n_partial`` / ``partial`` by reason, and ``notes`` counts rows with
    a missing poster or an empty overview and the posters converted to RGB or not JPEG.

    Example:
        >>> m = evaluate("runs/main", "/data/heldout", "heldout.json")  # doctest: +SKIP
        >>> m["micro_f1"], m["n_skipped"], m["excluded_training_films"]  # doctest: +SKIP
    """
    import sys
    from collections import Counter

    import numpy as np

    from movie_genres.config import decision_rule
    from movie_genres.data.dataset import DataError, load_dataset
    from movie_genres.evaluation.metrics import full_metrics
    from movie_genres.io import check_writable
    from movie_genres.predictor import Predictor

    if output:
        check_writable(output)
    pred = Predictor.load(run_dir)
    own_split = data is None
    if own_split:
        data = pred.run.data_dir
        if not data or not Path(data).is_dir():
            raise DataError(f"{pred.run_dir} was trained on {data or 'an unrecorded dataset'}, which is not here; "
                            "give --data to score the run on a dataset")
    ds = load_dataset(data, label_column=label_column or pred.config.get("label_column", "genres"))
    trained_on = pred.run.training_ids()
    n_excluded = 0
    if own_split:
        keep = pred.run.validation_ids()
        if not keep:
            raise ValueError(f"{pred.run_dir} has no validation split ({runs.SPLIT}); give --data to score it")
        ds = ds.subset(np.array([i for i, fid in enumerate(ds.ids) if fid in keep], dtype=int))
        source = "validation split"
    else:
        seen = np.array([fid in trained_on for fid in ds.ids], dtype=bool)
        n_excluded = int(seen.sum())
        if n_excluded and not include_training_films:
            ds = ds.subset(np.flatnonzero(~seen))
            print(f"evaluate: {n_excluded} of {len(seen)} films in {ds.root} are films {pred.run_dir.name} was trained "
                  "on; they are not scored (--include-training-films keeps them)", file=sys.stderr)
        elif n_excluded:
            print(f"evaluate: {n_excluded} of {len(seen)} films in {ds.root} are films {pred.run_dir.name} was trained on; "
                  "they are scored (--include-training-films), so the scores are optimistic", file=sys.stderr)
        source = "data"
    if len(ds) == 0:
        raise ValueError(f"no film in {ds.root} is left to score: all {n_excluded} are films the run was trained on "
                         "(--include-training-films scores them anyway)")
    answers = pred.answer(ds.poster_paths, ds.overviews, progress=True)
    usable = answers.usable
    if not usable.any():
        raise ValueError(f"no film in {ds.root} is usable by model '{pred.model_name}' ({dict(answers.problems.counts())})")
    y_all, scorable, unknown = _source_labels(ds, pred.genres)
    if unknown:
        log.warning("evaluate: %d label(s) of %s are not the run's and are not scored: %s", len(unknown), ds.root,
                    ", ".join(f"{g} ({n} films)" for g, n in unknown.items()))
    y = y_all[usable]
    m = full_metrics(pred.genres, y, answers.raw[usable].astype(np.float64), pred.run.thresholds, pred.trained & scorable,
                     pred.run.min_one_genre, objective=decision_rule(pred.config)[0], cross_fit=own_split,
                     rank=answers.probs[usable].astype(np.float64))
    from movie_genres.evaluation.calibration import ece

    learned = pred.trained & scorable
    calibration = {"ece_model": round(ece(y[:, learned], answers.raw[usable][:, learned]), 4),
                   "ece_reported": round(ece(y[:, learned], answers.probs[usable][:, learned]), 4)}
    skipped = Counter(ds.skipped) + answers.problems.skipped(usable)
    partial = answers.problems.partial(usable)
    notes = Counter(ds.notes) + answers.problems.notes
    dropped = int((~usable).sum())
    out = {
        **m["tuned"],
        "n_films": int(usable.sum()),
        "n_skipped": int(ds.n_skipped + dropped),
        "n_partial": int(sum(1 for ok, why in zip(usable, answers.problems.per_film) if ok and why)),
        "at_0_5": m["at_0_5"],
        "per_genre": m["per_genre"],
        "baselines": m["baselines"],
        "skipped": dict(skipped),
        "partial": dict(partial),
        "notes": dict(notes),
        "model": pred.model_name,
        "run": str(pred.run_dir),
        "data": str(ds.root),
        "source": source,
        "calibration": calibration,
        "unknown_labels": unknown,
        "unscored_labels": [g for g, ok in zip(pred.genres, scorable) if not ok],
        "excluded_training_films": 0 if include_training_films else n_excluded,
        "includes_training_films": bool(include_training_films and n_excluded),
    }
    if own_split:
        out["thresholds_note"] = "the run's validation split: thresholds cross-fitted on 5 folds of these films, as training reported"
    what = "its validation split" if own_split else str(ds.root)
    summary = f"{pred.model_name} on {what}: {out['n_films']} films scored"
    for key, text in (("skipped", "skipped"), ("partial", "scored without an input"), ("notes", "notes")):
        if out[key]:
            summary += f"; {text}: " + ", ".join(f"{v} {k}" for k, v in sorted(out[key].items()))
    (log.warning if dropped or partial else log.info)("%s", summary)
    if output:
        write_json(output, out)
    return out


def _source_labels(ds, run_labels: list[str]):
    """``(y, scorable, unknown)``: the source's labels as 0/1 columns in the run's label order; which run labels the
    source can score (all for a manifest, whose lists are complete; a folder's own columns otherwise); and the
    source's labels the run does not know, with how many films carry each."""
    import numpy as np

    column = {g: j for j, g in enumerate(ds.genres)}
    y = np.zeros((len(ds), len(run_labels)), dtype=np.int8)
    for j, g in enumerate(run_labels):
        if g in column:
            y[:, j] = ds.labels[:, column[g]]
    complete = ds.root.is_file()  # a manifest names every label a film has
    scorable = np.array([complete or g in column for g in run_labels], dtype=bool)
    unknown = {g: int(ds.labels[:, j].sum()) for g, j in column.items() if g not in set(run_labels)}
    if not any(g in column for g in run_labels):
        raise ValueError(f"{ds.root} shares no label with the run ({', '.join(run_labels[:5])}, ...)")
    return y, scorable, unknown


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, **limits) -> None:
    """Serve a run folder (the API and the web page) until interrupted.

    ``limits``: ``max_upload_bytes``, ``max_overview_chars``, ``max_batch``, ``max_image_pixels``, ``max_batch_bytes``,
    ``max_batch_pixels`` (:class:`movie_genres.service.limits.Limits`), ``limit_concurrency``, ``log_level``;
    ``threshold`` / ``top_k`` decide otherwise than the run's thresholds.

    Example:
        >>> serve("runs/main", port=8000, max_batch=8, max_upload_bytes=2 * 1024 * 1024)  # doctest: +SKIP
    """
    from movie_genres.service.app import serve as _serve

    _serve(run_dir, host=host, port=port, **limits)

