"""Deterministic multi-label stratified train/validation split (iterative stratification), saved as a manifest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from movie_genres.io import atomic_write


def stratified_split(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_index, val_index) with each genre's share kept close in both parts.

    Example:
        >>> tr, va = stratified_split(np.eye(3)[np.arange(30) % 3], 0.2, seed=0)
        >>> len(tr), len(va)
        (24, 6)
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n = len(labels)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros((n, 1)), labels))
    return np.sort(train_idx), np.sort(val_idx)


def save_split(path: str | Path, ids: list[str], train_idx: np.ndarray, val_idx: np.ndarray) -> Path:
    split = np.full(len(ids), "", dtype=object)
    split[train_idx] = "train"
    split[val_idx] = "val"
    frame = pd.DataFrame({"Id": ids, "split": split})
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def load_split(path: str | Path) -> dict[str, str]:
    frame = pd.read_csv(path, dtype=str)
    return dict(zip(frame["Id"], frame["split"]))
