"""The run folder: its file names, reading what a run wrote, and finding runs (docs/ARCHITECTURE.md, "Run folder").

A run folder is written by ``movie-genres train``; a folder of runs (``train --model all``) holds one run per model,
``best.json`` naming the best. :func:`resolve_run` turns either into one finished run, :func:`expand_runs` a folder of
runs into its runs.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from movie_genres.config import decision_rule
from movie_genres.evaluation.metrics import decide
from movie_genres.features.inputs import FEATURIZER_FILE, VOCAB_FILE
from movie_genres.io import read_json, write_json
from movie_genres.models.registry import MODELS

# One run
CONFIG = "config.json"
FEATURIZER = FEATURIZER_FILE
VOCAB = VOCAB_FILE
GENRES = "genres.json"
THRESHOLDS = "thresholds.json"
CALIBRATION = "calibration.json"  # per-label Platt scaling, where it lowers the validation ECE
MODEL = "model.keras"
LAST = "last.keras"
HISTORY = "history.csv"
METRICS = "metrics.json"
SPLIT = "split.csv"
PREDICTIONS = "val_predictions.csv"
PLOTS = "plots"
SAMPLES = "samples.html"
CHECKPOINT = "checkpoint"  # what an interrupted run resumes from
MEMBERS = "members"  # late / ensemble: the runs they are composed of, members/<model>/
# A folder of runs (train --model all)
BEST = "best.json"
JOB = "job.json"
LOGS = "logs"
REPORT = "report.html"

FINISHED = (MODEL, FEATURIZER, GENRES, THRESHOLDS, CONFIG)  # what predicting needs
ANSWERS = (*FINISHED, VOCAB, CALIBRATION)  # the files whose bytes decide a run's answers (a catalogue output is stamped with them)


class RunError(ValueError):
    """A folder is not a complete run folder."""


def _read(run_dir: Path, name: str, required: bool):
    path = Path(run_dir) / name
    if not path.is_file():
        if required:
            raise RunError(f"{run_dir}: {name} is missing (not a run folder, or not a finished one)")
        return None
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is damaged ({exc}); train the run again") from None


def read_config(run_dir, required: bool = True) -> dict | None:
    """The run's full Config plus ``data_dir``, ``version``."""
    return _read(run_dir, CONFIG, required)


def read_genres(run_dir, required: bool = True) -> dict | None:
    """``{"genres": [...], "trained": [bool per genre], "excluded": [...]}``."""
    return _read(run_dir, GENRES, required)


def read_thresholds(run_dir, required: bool = True, genres: list | None = None) -> dict | None:
    """``{"genres": [...], "thresholds": [...]}``; given ``genres``, they must be the thresholds' genres."""
    thr = _read(run_dir, THRESHOLDS, required)
    if thr is not None and genres is not None and list(thr["genres"]) != list(genres):
        raise RunError(f"{run_dir}: {THRESHOLDS} and {GENRES} disagree on the genre list")
    return thr


def read_metrics(run_dir, required: bool = True) -> dict | None:
    return _read(run_dir, METRICS, required)


def write_genres(run_dir: Path, genres: list, trained: list, excluded: list) -> None:
    write_json(Path(run_dir) / GENRES, {"genres": list(genres), "trained": list(trained), "excluded": list(excluded)})


def write_thresholds(run_dir: Path, genres: list, thresholds: list, objective: str | None = None,
                     expected: dict | None = None) -> None:
    """thresholds.json: a threshold per genre (over 1: never decided), how they were tuned, and the validation
    precision and recall to expect at them (cross-fitted)."""
    out = {"genres": list(genres), "thresholds": list(thresholds)}
    if objective is not None:
        out["objective"] = objective
        out["never_decided"] = [g for g, t in zip(genres, thresholds) if 1.0 < t]
    if expected is not None:
        out["expected"] = {g: {k: expected[k][j] for k in ("precision", "recall", "support")} for j, g in enumerate(genres)}
    write_json(Path(run_dir) / THRESHOLDS, out)


def is_job(path) -> bool:
    """A folder of runs written by ``train --model all`` (not itself a run)."""
    path = Path(path)
    return (path / BEST).exists() and not (path / MODEL).exists()


def resolve_run(run_dir) -> Path:
    """A finished run folder, or the run a folder of runs' ``best.json`` names."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist")
    if is_job(run_dir):
        best = _read(run_dir, BEST, True)
        return resolve_run(run_dir / best["run"])
    missing = [f for f in FINISHED if not (run_dir / f).exists()]
    if missing:
        hint = " (an interrupted run: continue it with movie-genres train --resume)" if (run_dir / CHECKPOINT).exists() else ""
        raise RunError(f"{run_dir} is not a finished run folder: missing {', '.join(missing)}{hint}")
    return run_dir


def expand_runs(paths) -> list[Path]:
    """Run folders, a folder of runs expanding to its finished runs (those with metrics) in the registry's order."""
    rank = {name: i for i, name in enumerate(MODELS)}
    out = []
    for path in map(Path, paths):
        if is_job(path):
            found = [p for p in path.iterdir() if (p / METRICS).exists()]
            out += sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))
        else:
            out.append(path)
    return out


class Run:
    """One finished run folder, read through one object: what the predictor, the report, the catalogue's stamp and
    the Ray engine know of a run comes from here (the file names stay in this module).

    Example:
        >>> run = Run("runs/main")  # doctest: +SKIP
        >>> run.model_name, run.genres[:2], run.training_ids() & {"tt0086425"}  # doctest: +SKIP
    """

    def __init__(self, path, finished: bool = True):
        self.path = resolve_run(path) if finished else Path(path)
        self._min_one: bool | None = None  # set by with_decisions
        self.top_k: int | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @cached_property
    def config(self) -> dict:
        """The run's full Config plus ``data_dir``, ``model``, ``version``."""
        return read_config(self.path)

    @cached_property
    def _genres(self) -> dict:
        return read_genres(self.path)

    @property
    def genres(self) -> list[str]:
        """The run's genre names, in the order of its outputs."""
        return [str(g) for g in self._genres["genres"]]

    @property
    def trained(self) -> np.ndarray:
        """Per genre: learned (True) or too rare in training to learn (never decided, scored 0)."""
        return np.asarray(self._genres.get("trained", [True] * len(self.genres)), dtype=bool)

    @property
    def excluded(self) -> list[str]:
        return [str(g) for g in self._genres.get("excluded", [g for g, t in zip(self.genres, self.trained) if not t])]

    @cached_property
    def thresholds(self) -> np.ndarray:
        """Per genre, the decision threshold tuned on the validation split (over 1: never decided)."""
        return np.asarray(read_thresholds(self.path, genres=self.genres)["thresholds"], dtype=np.float64)

    def with_decisions(self, threshold=None, top_k: int | None = None) -> "Run":
        """This run deciding another way, without retraining: ``threshold`` a number (every label), ``"f1"``,
        ``"precision:P"`` or ``"recall:R"`` (tuned now on the run's validation predictions), and/or ``top_k`` (at most
        the K most probable of the decided labels)."""
        import copy

        from movie_genres.config import _check_threshold
        from movie_genres.evaluation.metrics import tune_thresholds

        out = copy.copy(self)
        if threshold is not None:
            try:
                value = float(threshold)
            except (TypeError, ValueError):
                value = None
            if value is not None:
                if not 0 <= value <= 1:
                    raise ValueError(f"threshold {threshold!r}: a number must be between 0 and 1")
                thr = np.where(self.trained, value, 1.0)
                out._min_one = decision_rule(self.config)[1] if str(self.config.get("threshold", "f1")) == "f1" else False
            else:
                spec = _check_threshold(str(threshold).strip())
                objective, min_one = decision_rule({**self.config, "threshold": spec})
                found = self.validation_predictions()
                if found is None:
                    raise RunError(f"{self.path} has no {PREDICTIONS} to tune threshold={spec} on")
                _, y_true, probs = found
                thr = tune_thresholds(y_true, probs, self.trained, objective)
                out._min_one = min_one
            out.__dict__["thresholds"] = np.asarray(thr, dtype=np.float64)
        if top_k is not None:
            if int(top_k) < 1:
                raise ValueError(f"top-k must be at least 1, got {top_k}")
            out.top_k = int(top_k)
        return out

    @property
    def model_name(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def min_one_genre(self) -> bool:
        """Whether every film gets at least its top label (``threshold=f1`` with ``min_one_genre``)."""
        return self._min_one if self._min_one is not None else decision_rule(self.config)[1]

    @property
    def data_dir(self) -> str | None:
        """The dataset the run was trained on, as its config recorded it."""
        return self.config.get("data_dir")

    def calibration(self) -> dict | None:
        """The run's calibration (``evaluation.calibration.fit_calibration``'s dict), or None (older runs, or off)."""
        return _read(self.path, CALIBRATION, False)

    def metrics(self, required: bool = True) -> dict | None:
        return read_metrics(self.path, required)

    def featurizer_spec(self) -> dict:
        return read_json(self.path / FEATURIZER)

    @property
    def model_file(self) -> Path:
        return self.path / MODEL

    def answer_files(self) -> list[Path]:
        """The files whose bytes decide this run's answers (those it has)."""
        return [self.path / f for f in ANSWERS if (self.path / f).exists()]

    def split(self) -> dict[str, str]:
        """``{Id: "train" | "val"}`` from the run's split.csv (empty if the run has none)."""
        from movie_genres.data.split import load_split

        path = self.path / SPLIT
        return load_split(path) if path.is_file() else {}

    def training_ids(self) -> set[str]:
        """The Ids of the films this run was trained on (its split's training part)."""
        return {fid for fid, part in self.split().items() if part == "train"}

    def validation_ids(self) -> set[str]:
        return {fid for fid, part in self.split().items() if part == "val"}

    def history(self):
        """The per-epoch history (a DataFrame), or None when the run has none (composed runs) or it is empty."""
        import pandas as pd

        path = self.path / HISTORY
        if not path.is_file() or path.stat().st_size == 0:
            return None
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            return None
        return None if frame.empty else frame

    def validation_predictions(self):
        """``(ids, y_true, probs)`` from val_predictions.csv in the run's genre order, or None without the file."""
        import pandas as pd

        path = self.path / PREDICTIONS
        if not path.is_file():
            return None
        frame = pd.read_csv(path, dtype={"Id": str}, keep_default_na=False)
        missing = [c for g in self.genres for c in (f"true_{g}", f"prob_{g}") if c not in frame.columns]
        if missing:
            raise RunError(f"{path}: missing columns {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        return (frame["Id"].astype(str).tolist(), frame[[f"true_{g}" for g in self.genres]].to_numpy(dtype=int),
                frame[[f"prob_{g}" for g in self.genres]].to_numpy(dtype=float))

    def decide(self, probs: np.ndarray, thresholds=None, rank: np.ndarray | None = None) -> np.ndarray:
        """0/1 decisions for ``probs`` (n, genres) at the run's thresholds (or ``thresholds``), by the run's rule:
        only learned genres, and at least the top one (by ``rank`` where given: the calibrated probabilities) where
        ``min_one_genre``."""
        thr = self.thresholds if thresholds is None else thresholds
        out = decide(probs, thr, self.min_one_genre, self.trained, rank)
        if self.top_k is not None:
            ranked = np.argsort(-np.where(out > 0, probs, -np.inf), axis=1, kind="stable")[:, self.top_k :]
            np.put_along_axis(out, ranked, 0, axis=1)
        return out
