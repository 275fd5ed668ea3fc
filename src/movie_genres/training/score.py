"""Writing up a trained run: validation scores, tuned thresholds, metrics, predictions, plots, samples page."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from movie_genres import runs
from movie_genres.config import Config, decision_rule
from movie_genres.evaluation.calibration import Calibrator, fit_calibration
from movie_genres.evaluation.metrics import expected_rates, full_metrics, tune_thresholds
from movie_genres.io import atomic_write, write_json
from movie_genres.models.inference import predict_proba_arrays
from movie_genres.training.prepare import Prepared

log = logging.getLogger(__name__)


def finish_run(cfg: Config, prep: Prepared, run_dir: Path, model, train_seconds: float) -> dict:
    """Score validation, tune thresholds, write metrics, predictions, plots and the samples page."""
    genres = prep.ds.genres
    va = prep.val_idx
    vi = prep.inputs_of(va)
    t0 = time.perf_counter()
    probs = predict_proba_arrays(model, vi)
    infer_ms = (time.perf_counter() - t0) * 1000 / max(len(va), 1)
    probs[:, ~prep.trained] = 0.0
    y = prep.ds.labels[va].astype(np.int8)
    objective, min_one = decision_rule(cfg)
    thresholds = tune_thresholds(y, probs, prep.trained, objective)
    calibration = None
    if cfg.calibration == "platt":
        calibration = fit_calibration(genres, y, probs, prep.trained)
        write_json(run_dir / runs.CALIBRATION, calibration)
    rank = Calibrator(genres, calibration)(probs)  # a film's top label, where none passes: by the reported probabilities
    rates = expected_rates(y, probs, prep.trained, objective, min_one, rank=rank)
    runs.write_thresholds(run_dir, genres, thresholds.round(4).tolist(), objective=objective, expected=rates)
    metrics = {
        "model": cfg.model,
        "split": "validation",
        **full_metrics(genres, y, probs, thresholds, prep.trained, min_one, objective=objective, rank=rank),
        "n_skipped": int(sum(prep.skipped.values())),
        "skipped": dict(prep.skipped),
        "notes": dict(prep.ds.notes),
        "n_train": int(len(prep.train_idx)),
        "excluded_genres": prep.excluded,
        "train_seconds": round(train_seconds, 1),
        "inference_ms_per_film": round(infer_ms, 3),
        "calibration": None if calibration is None else {
            k: calibration[k] for k in ("method", "ece_before", "ece_after")} | {
            "labels_calibrated": sum(v is not None for v in calibration["labels"].values())},
        "thresholds_note": f"tuned = per-genre thresholds ({objective} objective) cross-fitted on 5 folds of the validation films",
    }
    if "has_overview" in vi and "text_features" in vi and "image_features" in vi:
        metrics["by_modality"] = by_modality(prep, model, thresholds)
    write_json(run_dir / runs.METRICS, metrics)
    write_predictions(run_dir, [prep.ds.ids[i] for i in va], genres, y, probs)
    try:
        from movie_genres.reporting import write_run_plots, write_samples_page

        write_run_plots(run_dir)
        write_samples_page(run_dir / runs.SAMPLES, prep.ds, [run_dir])
    except ImportError:  # report package not available: the run itself is complete
        log.warning("report module unavailable; plots skipped")
    log.info("%s: validation micro-F1 %.3f (tuned), precision@0.5 %.3f", cfg.model, metrics["tuned"]["micro_f1"], metrics["at_0_5"]["micro_precision"])
    return metrics


def write_predictions(run_dir: Path, ids: list[str], genres: list[str], y: np.ndarray, probs: np.ndarray) -> None:
    """``val_predictions.csv``: ``Id``, then ``true_<genre>`` (0/1) and ``prob_<genre>`` for every genre."""
    import pandas as pd

    frame = pd.DataFrame({"Id": ids})
    for g, name in enumerate(genres):
        frame[f"true_{name}"] = y[:, g]
    for g, name in enumerate(genres):
        frame[f"prob_{name}"] = probs[:, g].astype(np.float32)  # float32 in full: rounding ties near-equal scores (mAP)
    atomic_write(run_dir / runs.PREDICTIONS, lambda tmp: frame.to_csv(tmp, index=False))


def by_modality(prep: Prepared, model, thresholds) -> dict:
    """Quality on the validation films when they have both inputs, only the poster, or only the overview."""
    va = prep.val_idx
    vi = prep.inputs_of(va)
    both = (vi["has_overview"][:, 0] > 0) & (vi["has_poster"][:, 0] > 0)
    out = {}
    if not both.any():  # no validation film has both inputs (a catalogue without posters): nothing to compare
        return out
    for case, hide in (("poster + overview", None), ("poster only", "overview"), ("overview only", "poster")):
        x = {k: v[both].copy() for k, v in vi.items()}
        if hide == "overview":
            x["has_overview"][:] = 0
            x["text_features"][:] = 0
        elif hide == "poster":
            x["has_poster"][:] = 0
            x["image_features"][:] = 0
        probs = predict_proba_arrays(model, x)
        objective, min_one = decision_rule(prep.cfg)
        m = full_metrics(prep.ds.genres, prep.ds.labels[va][both], probs, thresholds, prep.trained, min_one, objective=objective)
        out[case] = {**m["tuned"], "n_films": int(both.sum())}
    return out
