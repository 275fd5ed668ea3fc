"""The run folder: its file names, reading what a run wrote, and finding runs (docs/ARCHITECTURE.md, "Run folder").

A run folder is written by ``movie-genres train``; a folder of runs (``train --model all``) holds one run per model,
``best.json`` naming the best. :func:`resolve_run` turns either into one finished run, :func:`expand_runs` a folder of
runs into its runs.
"""
from __future__ import annotations

import json
from pathlib import Path

from movie_genres.features.inputs import FEATURIZER_FILE, VOCAB_FILE
from movie_genres.io import read_json, write_json
from movie_genres.models.registry import MODELS

# One run
CONFIG = "config.json"
FEATURIZER = FEATURIZER_FILE
VOCAB = VOCAB_FILE
GENRES = "genres.json"
THRESHOLDS = "thresholds.json"
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


def write_thresholds(run_dir: Path, genres: list, thresholds: list) -> None:
    write_json(Path(run_dir) / THRESHOLDS, {"genres": list(genres), "thresholds": list(thresholds)})


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
