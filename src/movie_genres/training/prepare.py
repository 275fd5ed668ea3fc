"""Films -> split -> fitted featurizer -> model inputs (:class:`Prepared`), with the films each part cannot use counted."""
from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from movie_genres import runs
from movie_genres.config import MIN_FILMS, Config
from movie_genres.data.dataset import DataError, Dataset, load_dataset
from movie_genres.data.split import load_split, save_split, stratified_split
from movie_genres.models.registry import make_featurizer

log = logging.getLogger(__name__)


class Prepared:
    """A dataset turned into model inputs and split, with the films each part cannot use counted."""

    def __init__(self, cfg: Config, ds: Dataset, featurizer, train_idx, val_idx, inputs, usable, problems):
        self.cfg, self.ds, self.featurizer = cfg, ds, featurizer
        self.inputs, self.usable, self.problems = inputs, usable, problems
        self.train_idx = train_idx[usable[train_idx]]
        self.val_idx = val_idx[usable[val_idx]]
        self.skipped = Counter(ds.skipped) + problems.skipped(usable)
        counts = ds.labels[self.train_idx].sum(axis=0)
        self.trained = counts >= cfg.min_positives
        self.excluded = [g for g, t in zip(ds.genres, self.trained) if not t]

    def inputs_of(self, idx: np.ndarray) -> dict:
        """The model inputs of the films ``idx``."""
        return {k: v[idx] for k, v in self.inputs.items()}

    def save(self, run_dir: Path) -> None:
        """The fitted preprocessing and the genre list, as a run folder keeps them."""
        self.featurizer.save(run_dir)
        runs.write_genres(run_dir, self.ds.genres, self.trained.tolist(), self.excluded)


def load_films(cfg: Config, data_dir) -> Dataset:
    """The source's usable films (the first ``cfg.limit`` of them when set); too few to split and score is a DataError."""
    ds = load_dataset(data_dir, label_column=cfg.label_column)
    ds = ds.subset(np.arange(min(cfg.limit, len(ds)))) if cfg.limit else ds
    if len(ds) < MIN_FILMS:
        raise DataError(f"{ds.root}: {len(ds)} usable film(s); training needs at least {MIN_FILMS} (a validation split and its "
                        f"metrics){'; skipped: ' + str(dict(ds.skipped)) if ds.skipped else ''}")
    return ds


def prepare(cfg: Config, data_dir, run_dir: Path, resume: bool = False, ds: Dataset | None = None) -> Prepared:
    """Split (or, resuming, read the run's split back), fit the featurizer on the training films, transform all."""
    ds = ds if ds is not None else load_films(cfg, data_dir)
    split_file = run_dir / runs.SPLIT
    if resume and split_file.exists():
        split = load_split(split_file)
        train_idx = np.array([i for i, f in enumerate(ds.ids) if split.get(f) == "train"])
        val_idx = np.array([i for i, f in enumerate(ds.ids) if split.get(f) == "val"])
    else:
        train_idx, val_idx = stratified_split(ds.labels, cfg.val_fraction, cfg.seed)
        save_split(split_file, ds.ids, train_idx, val_idx)
    featurizer = make_featurizer(cfg)
    featurizer.fit([ds.poster_paths[i] for i in train_idx], [ds.overviews[i] for i in train_idx])
    # progress bars on a terminal only: in a log file (a worker's) each redraw would be one more line
    inputs, usable, problems = featurizer.transform(ds.poster_paths, ds.overviews, progress=cfg.verbose > 0 and sys.stderr.isatty())
    prep = Prepared(cfg, ds, featurizer, train_idx, val_idx, inputs, usable, problems)
    if len(prep.train_idx) == 0 or len(prep.val_idx) == 0:
        raise ValueError(f"not enough usable films to train {cfg.model}: {len(prep.train_idx)} train, {len(prep.val_idx)} validation ({dict(prep.skipped)})")
    log.info("%s: %d train / %d validation films; skipped %s", cfg.model, len(prep.train_idx), len(prep.val_idx), dict(prep.skipped))
    return prep
