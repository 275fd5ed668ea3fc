"""Callbacks that make a run survive: atomic best/last weights, history.csv each epoch, a resumable checkpoint."""
from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path

import keras

from movie_genres import runs
from movie_genres.io import atomic_write, read_json, write_json, write_text

# In the run folder's checkpoint/: the model with its optimizer, the optimizer's variables, the loop's state.
CKPT_MODEL, CKPT_OPTIMIZER, CKPT_STATE = "ckpt.keras", "optimizer.npz", "state.json"


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: append to ``history.csv``, save ``last.keras``, ``model.keras`` when validation loss
    improves, and ``checkpoint/`` (model with optimizer state + ``state.json``) to resume from."""

    def __init__(self, run_dir: Path, history: list[dict] | None = None, best: float = math.inf, early=None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.history = list(history or [])
        self.best = best
        self.early = early

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append({"epoch": epoch + 1, **logs})
        buf = io.StringIO()
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        write_text(self.run_dir / runs.HISTORY, buf.getvalue())
        val_loss = logs.get("val_loss", logs.get("loss", math.inf))
        if val_loss < self.best:
            self.best = val_loss
            atomic_write(self.run_dir / runs.MODEL, lambda tmp: self.model.save(tmp))
        atomic_write(self.run_dir / runs.LAST, lambda tmp: self.model.save(tmp))
        # The resume checkpoint is written last: if it exists, everything above is at least as new.
        ckpt = self.run_dir / runs.CHECKPOINT
        atomic_write(ckpt / CKPT_OPTIMIZER, lambda tmp: save_optimizer(self.model.optimizer, tmp))
        atomic_write(ckpt / CKPT_MODEL, lambda tmp: self.model.save(tmp))
        early = self.early
        write_json(
            ckpt / CKPT_STATE,
            {"epochs_done": epoch + 1, "best": self.best, "history": self.history, "early_stopping": early.state() if early else None},
        )


class EpochLine(keras.callbacks.Callback):
    """One line per epoch on standard output (``Epoch 3/12 - 4s - loss: 0.2817 - val_loss: 0.3012 ...``): what a log
    file or a pipe gets instead of Keras' progress bar, whose redraws fill a log with carriage returns."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = " - ".join(f"{k}: {float(v):.4f}" for k, v in (logs or {}).items())
        print(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')} - {time.perf_counter() - self.started:.0f}s - {values}", flush=True)


def keras_progress(verbose: int, stream=None) -> tuple[int, list]:
    """Keras' ``verbose`` for ``fit`` and the callbacks to add: ``verbose=1`` is a progress bar on a terminal and
    :class:`EpochLine` anywhere else (a worker's log, a redirected run); 0 and 2 are Keras' own."""
    stream = sys.stdout if stream is None else stream
    if verbose == 1 and not (hasattr(stream, "isatty") and stream.isatty()):
        return 0, [EpochLine()]
    return verbose, []


class ReseedEachEpoch(keras.callbacks.Callback):
    """Set every dropout/random layer's seed state from (seed, epoch) when an epoch begins.

    Keras does not save seed-generator state in ``.keras`` files, so without this a resumed run would draw other
    dropout masks than a straight run from the first resumed epoch on.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        # Unseeded dropout on the torch backend draws from the global generator; seeded layers from their own state.
        keras.utils.set_random_seed(self.seed * 1000 + epoch)
        states = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        for i, var in enumerate(states):
            var.assign(keras.ops.convert_to_tensor([self.seed * 1000 + i, epoch * 100_003], dtype=var.dtype))


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras early stopping whose counters survive a resume."""

    def __init__(self, *args, restored: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.restored = restored

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.restored:
            self.wait = self.restored["wait"]
            self.best = self.restored["best"]

    def state(self) -> dict:
        return {"wait": int(self.wait), "best": float(self.best) if self.best is not None else None}


def save_optimizer(optimizer, path: Path) -> None:
    """Optimizer variables (step count, Adam moments) as plain arrays, so a resume continues the same trajectory."""
    import numpy as np

    arrays = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def restore_optimizer(model, path: Path) -> None:
    import numpy as np

    model.optimizer.build(model.trainable_variables)
    with np.load(path) as saved:
        if len(saved.files) != len(model.optimizer.variables):
            raise ValueError(f"{path} holds {len(saved.files)} optimizer variables, the model needs {len(model.optimizer.variables)}")
        for i, var in enumerate(model.optimizer.variables):
            var.assign(saved[f"v{i}"])


def load_state(run_dir: Path) -> dict | None:
    """The saved loop state of an interrupted run, or None when it has no checkpoint to resume from."""
    ckpt = Path(run_dir) / runs.CHECKPOINT
    if not (ckpt / CKPT_STATE).exists() or not (ckpt / CKPT_MODEL).exists():
        return None
    return read_json(ckpt / CKPT_STATE)
