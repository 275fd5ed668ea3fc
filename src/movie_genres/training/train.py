"""Train one model into a run folder: data -> split -> features -> fit (or compose) -> thresholds -> metrics -> plots.

The run folder alone is enough to reload, evaluate and serve the model (docs/ARCHITECTURE.md lists its files).
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from movie_genres import runs
from movie_genres._version import __version__
from movie_genres.config import MODEL_DEFAULTS, make_config
from movie_genres.data.dataset import resolve_data_dir
from movie_genres.io import new_run_dir, write_json
from movie_genres.models.registry import COMPOSED, PRETRAINED, check_model_name
from movie_genres.training import run_cache
from movie_genres.training.compose import compose, link_members
from movie_genres.training.fit import fit_keras, set_threads
from movie_genres.training.prepare import load_films, prepare
from movie_genres.training.score import finish_run

log = logging.getLogger(__name__)


def train(model: str = "cnn", data=None, out=None, epochs: int | None = None, resume=None, reuse: bool = True,
          reuse_members: bool | None = None, **overrides) -> Path:
    """Train one model and write its run folder; returns the folder.

    Args:
        model: a name from :data:`movie_genres.models.registry.MODELS` (cnn, bilstm, text, ...).
        data: dataset folder (default: the shared development copy).
        out: run folder; an existing non-empty folder is never overwritten (``out2``, ``out3``, ... are used).
        epochs: upper bound on epochs (early stopping may end sooner).
        resume: an interrupted run folder to continue; its saved config is used.
        reuse: copy the identical finished run from the run cache when there is one (same config, films, posters
            and code; see :mod:`movie_genres.training.run_cache`); False trains anyway.
        reuse_members: the same for the runs ``late`` and ``ensemble`` are composed of (default: ``reuse``);
            ``train_all`` sets it, as it has just trained them.
        **overrides: any :class:`~movie_genres.config.Config` key.

    A new run that fails before it has a checkpoint to resume from leaves no folder behind; a finished run keeps no
    resume checkpoint (``checkpoint/`` exists only while a run is unfinished). ``late`` / ``ensemble``: a member
    identical to the run of the same name beside this one (a folder of runs) is a link to it, not a copy.

    Example:
        >>> run = train("cnn", "../shared/data/multimodal-imdb", "runs/cnn", epochs=10)  # doctest: +SKIP
    """
    import keras

    from movie_genres.training.callbacks import load_state

    if resume:
        run_dir = Path(resume)
        if (run_dir / runs.METRICS).exists():
            log.info("%s already finished; nothing to resume", run_dir)
            drop_checkpoint(run_dir)
            return run_dir
        saved = runs.read_config(run_dir)
        cfg = make_config({k: v for k, v in saved.items() if k not in ("data_dir", "version")}, **({"epochs": epochs} if epochs is not None else {}))
        data_dir = resolve_data_dir(data or saved["data_dir"])
        state, keep_folder = load_state(run_dir), True
    else:
        name = check_model_name(model)
        if epochs is None and name in PRETRAINED:
            epochs = overrides.pop("head_epochs", None) or make_config().head_epochs
        cfg = make_config(model=name, **{**MODEL_DEFAULTS.get(name, {}), **overrides, **({"epochs": epochs} if epochs is not None else {})})
        data_dir = resolve_data_dir(data)  # fail before creating anything
        wanted = Path(out or f"runs/{cfg.model}")
        existed = wanted.is_dir()
        run_dir = new_run_dir(wanted)
        state, keep_folder = None, existed and run_dir == wanted
    run_config = {**cfg.to_dict(), "data_dir": str(data_dir), "version": __version__}

    with _removed_unless_resumable(run_dir, new=not resume, keep_folder=keep_folder):
        if not resume:
            write_json(run_dir / runs.CONFIG, run_config)
        started = time.perf_counter()
        ds = load_films(cfg, data_dir)
        key = run_cache.run_key(cfg, ds)
        if not resume and reuse and run_cache.reuse(cfg, key, run_dir, run_config, started):
            link_members(run_dir)
            return run_dir

        keras.utils.set_random_seed(cfg.seed)
        set_threads(cfg)
        prep = prepare(cfg, data_dir, run_dir, resume=bool(resume), ds=ds)
        prep.save(run_dir)
        member_seconds = 0.0
        if cfg.model in COMPOSED:
            best, member_seconds = compose(cfg, prep, run_dir, data_dir, reuse if reuse_members is None else reuse_members, train)
        else:
            best = fit_keras(cfg, prep, run_dir, state=state)
        finish_run(cfg, prep, run_dir, best, time.perf_counter() - started + member_seconds)
        drop_checkpoint(run_dir)  # finished: metrics.json is written, nothing is left to resume
        run_cache.store(run_dir, cfg, key)
        link_members(run_dir)
    return run_dir


def drop_checkpoint(run_dir: Path) -> None:
    """Remove a finished run's resume checkpoint (about a third of a ``train --model all`` folder)."""
    shutil.rmtree(Path(run_dir) / runs.CHECKPOINT, ignore_errors=True)


@contextlib.contextmanager
def _removed_unless_resumable(run_dir: Path, new: bool, keep_folder: bool):
    """A new run that fails with nothing to resume from is removed, so the next try uses the same folder name; one
    with a checkpoint is kept, and an interrupt says how to continue it."""
    from movie_genres.training.callbacks import load_state

    try:
        yield
    except BaseException as exc:
        if load_state(run_dir) is not None:
            if isinstance(exc, KeyboardInterrupt):
                raise SystemExit(f"interrupted; the last finished epoch is saved. Continue with: movie-genres train --resume {run_dir}") from None
            raise
        if new:
            _remove_run(run_dir, keep_folder)
            log.info("%s removed: the run failed before it had anything to resume from", run_dir)
        raise


def _remove_run(run_dir: Path, keep_folder: bool) -> None:
    if not keep_folder:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for item in run_dir.iterdir():  # the folder was there (empty) before: leave it as it was
        shutil.rmtree(item, ignore_errors=True) if item.is_dir() and not item.is_symlink() else item.unlink(missing_ok=True)
