"""What a folder of runs keeps: no resume checkpoints once finished, composed runs' members as links to the runs beside
them, and per-model logs with one line per epoch instead of progress-bar redraws."""
from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from movie_genres import train_all
from movie_genres.data.dataset import load_dataset
from movie_genres.predictor import Predictor

COMPOSED = {"late": ("image", "text"), "ensemble": ("early", "gmu", "image", "text")}


def _validation_probs(run, data) -> tuple[np.ndarray, np.ndarray]:
    """(what the reloaded run predicts, what training wrote) for the run's validation films."""
    saved = pd.read_csv(run / "val_predictions.csv")
    ds = load_dataset(data)
    row = {fid: i for i, fid in enumerate(ds.ids)}
    idx = [row[fid] for fid in saved["Id"]]
    pred = Predictor.load(run)
    probs = pred.predict_proba([ds.poster_paths[i] for i in idx], [ds.overviews[i] for i in idx])
    return probs, saved[[f"prob_{g}" for g in pred.genres]].to_numpy()


@pytest.mark.slow
def test_composed_runs_link_their_members_and_reload_anywhere(tmp_path, tiny_data, tiny_config, cache_dir):
    root = train_all(tiny_data, tmp_path / "job", models=("text", "image", "early", "gmu", "late", "ensemble"), jobs=1,
                     **{**tiny_config, "cache_dir": cache_dir})
    assert not list(root.rglob("checkpoint"))  # every run finished: no resume checkpoint anywhere
    for composed, names in COMPOSED.items():
        members = root / composed / "members"
        assert sorted(p.name for p in members.iterdir()) == list(names)
        for name in names:
            assert (members / name).is_symlink() and os.readlink(members / name) == f"../../{name}"
            assert (members / name / "model.keras").samefile(root / name / "model.keras")
    probs, written = _validation_probs(root / "ensemble", tiny_data)
    np.testing.assert_allclose(probs, written, atol=1e-5)  # reloads with the outputs training wrote
    copied = shutil.copytree(root, tmp_path / "copy" / "job", symlinks=True)  # the whole folder: links still resolve
    assert (copied / "ensemble" / "members" / "gmu" / "model.keras").samefile(copied / "gmu" / "model.keras")
    alone = shutil.copytree(root / "ensemble", tmp_path / "alone" / "ensemble", symlinks=True)  # its links point nowhere
    assert not (alone / "members" / "gmu").exists()
    for run in (copied / "ensemble", alone, copied / "late"):
        np.testing.assert_allclose(_validation_probs(run, tiny_data)[0], _validation_probs(root / run.name, tiny_data)[0], atol=1e-6)


def test_keras_progress_bars_only_on_a_terminal():
    from movie_genres.training.callbacks import EpochLine, keras_progress

    class Terminal:
        def isatty(self):
            return True

    assert keras_progress(1, Terminal()) == (1, [])
    verbose, extra = keras_progress(1, open(os.devnull, "w"))
    assert verbose == 0 and [type(c) for c in extra] == [EpochLine]
    assert keras_progress(2, open(os.devnull, "w")) == (2, []) and keras_progress(0, Terminal()) == (0, [])


def test_training_off_a_terminal_prints_one_line_per_epoch(tmp_path, tiny_data, tiny_config, cache_dir, capfd):
    from movie_genres import train

    run = train("bilstm", tiny_data, tmp_path / "run", reuse=False, cache_dir=cache_dir, embedding_init="random",
                **{**tiny_config, "verbose": 1, "epochs": 3})
    out, err = capfd.readouterr()
    assert "\r" not in out + err and "\x1b[" not in out  # no redraws, no colour codes
    lines = [line for line in out.splitlines() if line.startswith("Epoch ")]
    history = pd.read_csv(run / "history.csv")
    assert len(lines) == len(history) == 3
    assert lines[0].startswith("Epoch 1/3 - ") and f"val_loss: {history['val_loss'][0]:.4f}" in lines[0]


@pytest.mark.slow
def test_worker_logs_hold_one_line_per_epoch(tmp_path, tiny_data, tiny_config, cache_dir, caplog):
    caplog.set_level(logging.INFO, logger="movie_genres")  # workers log at the caller's level, as the CLI's default
    root = train_all(tiny_data, tmp_path / "job", models=("cnn", "bilstm"), jobs=2, reuse=False,
                     **{**tiny_config, "cache_dir": cache_dir, "verbose": 1, "epochs": 3, "threads": 1})
    for name in ("cnn", "bilstm"):
        log = (root / "logs" / f"{name}.log").read_text()
        assert "\r" not in log and "\x1b[" not in log, name  # progress bars went nowhere: this is not a terminal
        epochs = [line for line in log.splitlines() if line.startswith("Epoch ")]
        assert len(epochs) == len(pd.read_csv(root / name / "history.csv")) == 3, log
        assert f"{name}: validation micro-F1" in log and len(log) < 20_000
